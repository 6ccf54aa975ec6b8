package nginx

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Pos is where a directive was written.
type Pos struct {
	File string
	Line int
}

func (p Pos) String() string { return fmt.Sprintf("%s:%d", p.File, p.Line) }

// Error is a syntax or include error at a position.
type Error struct {
	Pos Pos
	Msg string
}

func (e *Error) Error() string { return e.Pos.String() + ": " + e.Msg }

// Directive is one nginx directive: a name, its arguments, and for block
// directives (server, location, if…) the directives inside.
type Directive struct {
	Name string
	Args []string
	// Quoted tells, per argument, whether it was written in quotes.
	Quoted []bool
	// Block is nil for simple directives and non-nil (possibly empty) for
	// block directives.
	Block []*Directive
	Pos   Pos
}

// Arg returns argument i, or "" when there are fewer.
func (d *Directive) Arg(i int) string {
	if i < len(d.Args) {
		return d.Args[i]
	}
	return ""
}

// IsBlock reports whether d was written with braces.
func (d *Directive) IsBlock() bool { return d.Block != nil }

// Limits keep a hostile or broken config from exhausting the parser.
const (
	maxDepth    = 64   // nested blocks
	maxIncludes = 1000 // files read through include, in all
)

// parser reads a file and the files it includes. readFile and glob are
// fields so tests and the fuzz target can parse from memory.
type parser struct {
	readFile func(string) ([]byte, error)
	glob     func(string) ([]string, error)
	mainDir  string
	stack    []string // files being parsed, for include cycles
	files    int
}

func newParser() *parser {
	return &parser{readFile: os.ReadFile, glob: filepath.Glob}
}

// ParseFile parses the nginx config at path, following include directives:
// a relative pattern is looked up beside the including file first, then in
// the directory of the main file (nginx's prefix for nginx.conf). A pattern
// with wildcards may match nothing; a plain file must exist.
//
// Includes of certbot's options-ssl-nginx.conf stay unexpanded include
// directives: their content (ssl_protocols, ciphers, session cache) is
// known and covered by gatehouse's TLS defaults, and the file is often not
// present on the machine that converts.
func ParseFile(path string) ([]*Directive, error) {
	return newParser().parseMain(path)
}

// ParseBytes parses src as the main file named file.
func ParseBytes(file string, src []byte) ([]*Directive, error) {
	p := newParser()
	p.mainDir = filepath.Dir(file)
	return p.parseSource(file, src)
}

func (p *parser) parseMain(path string) ([]*Directive, error) {
	src, err := p.readFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading nginx config: %w", err)
	}
	p.mainDir = filepath.Dir(path)
	return p.parseSource(path, src)
}

func (p *parser) parseSource(file string, src []byte) ([]*Directive, error) {
	p.stack = append(p.stack, file)
	defer func() { p.stack = p.stack[:len(p.stack)-1] }()
	lx := newLexer(file, src)
	return p.block(lx, 0, 0)
}

// block reads directives up to the closing brace (open > 0 is the line of
// the opening one) or the end of the file (open == 0).
func (p *parser) block(lx *lexer, depth, open int) ([]*Directive, error) {
	if depth > maxDepth {
		return nil, lx.errorf(open, "blocks nested more than %d deep", maxDepth)
	}
	list := []*Directive{}
	for {
		t, err := lx.next()
		if err != nil {
			return nil, err
		}
		switch t.kind {
		case tokEOF:
			if open > 0 {
				return nil, lx.errorf(t.line, `unexpected end of file: the block opened at line %d needs a closing "}"`, open)
			}
			return list, nil
		case tokClose:
			if open == 0 {
				return nil, lx.errorf(t.line, `unexpected "}": no block is open here`)
			}
			return list, nil
		case tokSemi, tokOpen:
			return nil, lx.errorf(t.line, "unexpected %q: a directive name must come first", map[tokKind]string{tokSemi: ";", tokOpen: "{"}[t.kind])
		}
		d := &Directive{Name: t.text, Pos: Pos{File: lx.file, Line: t.line}}
	args:
		for {
			a, err := lx.next()
			if err != nil {
				return nil, err
			}
			switch a.kind {
			case tokWord:
				d.Args = append(d.Args, a.text)
				d.Quoted = append(d.Quoted, a.quoted)
			case tokSemi:
				break args
			case tokOpen:
				inner, err := p.block(lx, depth+1, a.line)
				if err != nil {
					return nil, err
				}
				d.Block = inner
				break args
			case tokClose:
				return nil, lx.errorf(a.line, `unexpected "}": directive %q at line %d needs a ";" first`, d.Name, d.Pos.Line)
			case tokEOF:
				return nil, lx.errorf(a.line, `unexpected end of file: directive %q at line %d needs a ";" or a block`, d.Name, d.Pos.Line)
			}
		}
		if d.Name == "include" && d.Block == nil {
			inc, err := p.include(d)
			if err != nil {
				return nil, err
			}
			list = append(list, d)
			list = append(list, inc...)
			continue
		}
		list = append(list, d)
	}
}

// isCertbotOptions reports whether path names certbot's shared TLS options.
func isCertbotOptions(path string) bool {
	return strings.HasSuffix(path, "options-ssl-nginx.conf")
}

// include expands an include directive into the directives of the files
// it names, in name order as nginx reads them.
func (p *parser) include(d *Directive) ([]*Directive, error) {
	if len(d.Args) != 1 {
		return nil, &Error{Pos: d.Pos, Msg: fmt.Sprintf("include takes one file or pattern, got %d arguments", len(d.Args))}
	}
	pattern := d.Args[0]
	if isCertbotOptions(pattern) {
		return nil, nil
	}
	hasGlob := strings.ContainsAny(pattern, "*?[")
	var bases []string
	if filepath.IsAbs(pattern) {
		bases = []string{""}
	} else {
		bases = []string{filepath.Dir(d.Pos.File)}
		if p.mainDir != bases[0] {
			bases = append(bases, p.mainDir)
		}
	}
	var files []string
	for _, base := range bases {
		full := pattern
		if base != "" {
			full = filepath.Join(base, pattern)
		}
		if !hasGlob {
			if _, err := p.readFile(full); err == nil {
				files = []string{full}
				break
			}
			continue
		}
		m, err := p.glob(full)
		if err != nil {
			return nil, &Error{Pos: d.Pos, Msg: fmt.Sprintf("include %q: %v", pattern, err)}
		}
		if len(m) > 0 {
			sort.Strings(m)
			files = m
			break
		}
	}
	if len(files) == 0 && !hasGlob {
		where := ""
		if bases[0] != "" {
			where = " (looked in " + strings.Join(bases, " and ") + ")"
		}
		return nil, &Error{Pos: d.Pos, Msg: fmt.Sprintf("include %q: no such file%s", pattern, where)}
	}
	var out []*Directive
	for _, f := range files {
		for _, open := range p.stack {
			if open == f {
				return nil, &Error{Pos: d.Pos, Msg: fmt.Sprintf("include %q: %s includes itself", pattern, f)}
			}
		}
		if p.files++; p.files > maxIncludes {
			return nil, &Error{Pos: d.Pos, Msg: fmt.Sprintf("more than %d included files", maxIncludes)}
		}
		src, err := p.readFile(f)
		if err != nil {
			return nil, &Error{Pos: d.Pos, Msg: fmt.Sprintf("include %q: %v", f, err)}
		}
		ds, err := p.parseSource(f, src)
		if err != nil {
			return nil, err
		}
		out = append(out, ds...)
	}
	return out, nil
}
