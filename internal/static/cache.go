package static

import (
	"io/fs"
	"sync"
)

// maxCachedFile is the largest file kept in memory; larger files are sent
// from disk by sendfile, which is cheaper for them.
const maxCachedFile = 64 << 10

// maxCacheBytes bounds the memory one static route keeps.
const maxCacheBytes = 32 << 20

type cached struct {
	data []byte
	fi   fs.FileInfo
}

// fileCache keeps small files' contents. An entry is used only while the
// file's size and modification time are what they were when it was read,
// so an edited file is served fresh on the next request.
type fileCache struct {
	mu    sync.RWMutex
	m     map[string]*cached
	bytes int
}

func newFileCache() *fileCache { return &fileCache{m: map[string]*cached{}} }

func (c *fileCache) get(name string, fi fs.FileInfo) *cached {
	c.mu.RLock()
	e := c.m[name]
	c.mu.RUnlock()
	if e == nil || e.fi.Size() != fi.Size() || !e.fi.ModTime().Equal(fi.ModTime()) {
		return nil
	}
	return e
}

func (c *fileCache) put(name string, e *cached) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.m[name]; old != nil {
		c.bytes -= len(old.data)
	}
	if c.bytes+len(e.data) > maxCacheBytes {
		// Simple and bounded: start over rather than track recency.
		clear(c.m)
		c.bytes = 0
	}
	c.m[name] = e
	c.bytes += len(e.data)
}
