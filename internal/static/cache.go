package static

import (
	"io/fs"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// maxCachedFile is the largest file kept in memory; larger files are sent
// from disk by sendfile, which is cheaper for them.
const maxCachedFile = 64 << 10

// maxCacheBytes and maxCacheEntries bound the memory one static route keeps.
const (
	maxCacheBytes   = 32 << 20
	maxCacheEntries = 16 << 10
)

// entry is what a file's response needs, worked out once per version of the
// file: its validators and length as header values, and its bytes when it
// is small. The header slices are shared by every response that uses them
// and must never be written through.
type entry struct {
	size    int64
	mtime   time.Time
	data    []byte // the whole file when small; nil when it is sent from disk
	etag    []string
	lastMod []string
	length  []string
	// plain is the header block Plain answers with, made on first use.
	plain atomic.Pointer[plainFields]
}

// plainFields is an entry's header block for one content type and
// encoding (the same file may be asked for as itself or as a sibling).
type plainFields struct {
	contentType, encoding string
	fields                []byte
}

func newEntry(fi fs.FileInfo, data []byte) *entry {
	mt := fi.ModTime()
	return &entry{
		size:    fi.Size(),
		mtime:   mt,
		data:    data,
		etag:    []string{etag(fi.Size(), mt)},
		lastMod: []string{mt.UTC().Format(http.TimeFormat)},
		length:  []string{strconv.FormatInt(fi.Size(), 10)},
	}
}

// current reports whether e still describes the file fi was just read from.
func (e *entry) current(fi fs.FileInfo) bool {
	return e.size == fi.Size() && e.mtime.Equal(fi.ModTime())
}

// etag is strong and cheap: modification time and size, as nginx makes it.
// A file rewritten in place changes its modification time, so a client
// never keeps bytes that differ under the same tag.
func etag(size int64, mtime time.Time) string {
	return `"` + strconv.FormatInt(mtime.UnixNano(), 36) + "-" + strconv.FormatInt(size, 36) + `"`
}

// fileCache keeps entries by name inside the root. An entry is used only
// while the file's size and modification time are what they were when it
// was read, so an edited file is served fresh on the next request.
type fileCache struct {
	mu    sync.RWMutex
	m     map[string]*entry
	bytes int
	// absent holds precompressed siblings found missing, with when to look
	// again. Browsers offer gzip and br on every request and most files
	// have no sibling: without this each request would pay two failed
	// stats (a syscall each) to learn it again.
	absent  map[sibling]time.Time
	recheck time.Duration // siblingRecheck; shorter in tests
}

// sibling names a precompressed file by the file it stands for and the
// index of its encoding, so looking one up builds no string.
type sibling struct {
	name string
	enc  int
}

// siblingRecheck bounds how long a missing .br or .gz is believed missing:
// a sibling added beside a file is served within this time.
const siblingRecheck = time.Second

func newFileCache() *fileCache {
	return &fileCache{m: map[string]*entry{}, absent: map[sibling]time.Time{}, recheck: siblingRecheck}
}

// knownAbsent reports whether s was found missing less than recheck ago.
func (c *fileCache) knownAbsent(s sibling, now time.Time) bool {
	c.mu.RLock()
	until, ok := c.absent[s]
	c.mu.RUnlock()
	return ok && now.Before(until)
}

func (c *fileCache) markAbsent(s sibling, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.absent) >= maxCacheEntries {
		clear(c.absent)
	}
	c.absent[s] = now.Add(c.recheck)
}

// get returns the entry for name if it still matches fi.
func (c *fileCache) get(name string, fi fs.FileInfo) *entry {
	c.mu.RLock()
	e := c.m[name]
	c.mu.RUnlock()
	if e == nil || !e.current(fi) {
		return nil
	}
	return e
}

func (c *fileCache) put(name string, e *entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.m[name]; old != nil {
		c.bytes -= len(old.data)
		delete(c.m, name)
	}
	if c.bytes+len(e.data) > maxCacheBytes || len(c.m) >= maxCacheEntries {
		// Simple and bounded: start over rather than track recency. A site
		// whose small files outgrow the cache rereads them, as it would
		// with no cache at all.
		clear(c.m)
		c.bytes = 0
	}
	c.m[name] = e
	c.bytes += len(e.data)
}
