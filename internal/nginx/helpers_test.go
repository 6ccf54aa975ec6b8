package nginx

import (
	"io/fs"
	"path"
	"sort"
)

// memParser returns a parser reading from files instead of the disk.
func memParser(files map[string]string) *parser {
	p := newParser()
	p.readFile = func(name string) ([]byte, error) {
		s, ok := files[path.Clean(name)]
		if !ok {
			return nil, fs.ErrNotExist
		}
		return []byte(s), nil
	}
	p.glob = func(pattern string) ([]string, error) {
		if _, err := path.Match(pattern, ""); err != nil {
			return nil, err
		}
		var out []string
		for name := range files {
			if ok, _ := path.Match(path.Clean(pattern), name); ok {
				out = append(out, name)
			}
		}
		sort.Strings(out)
		return out, nil
	}
	return p
}
