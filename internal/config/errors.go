package config

import (
	"fmt"
	"sort"
	"strings"
)

// Pos is where a value was written: file, line and column (1-based).
type Pos struct {
	File string
	Line int
	Col  int
}

func (p Pos) String() string {
	switch {
	case p.Line == 0:
		return p.File
	case p.Col == 0:
		return fmt.Sprintf("%s:%d", p.File, p.Line)
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
}

// Error is one problem in a config, positioned where it was written. Its
// message says what is wrong and how to fix it.
type Error struct {
	Pos     Pos
	Msg     string
	Warning bool
}

func (e *Error) Error() string {
	if e.Warning {
		return e.Pos.String() + ": warning: " + e.Msg
	}
	return e.Pos.String() + ": " + e.Msg
}

// ErrorList is every problem found in a config, in file order. It is an error
// only when it holds at least one Error that is not a warning.
type ErrorList []*Error

// Add records a problem at p.
func (l *ErrorList) Add(p Pos, msg string) { *l = append(*l, &Error{Pos: p, Msg: msg}) }

// Warn records something that works but is likely not what was meant.
func (l *ErrorList) Warn(p Pos, msg string) {
	*l = append(*l, &Error{Pos: p, Msg: msg, Warning: true})
}

func (l ErrorList) sort() {
	sort.SliceStable(l, func(i, j int) bool {
		a, b := l[i].Pos, l[j].Pos
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
}

// Errors returns only the entries that are not warnings.
func (l ErrorList) Errors() ErrorList {
	var out ErrorList
	for _, e := range l {
		if !e.Warning {
			out = append(out, e)
		}
	}
	return out
}

// Warnings returns only the warnings.
func (l ErrorList) Warnings() ErrorList {
	var out ErrorList
	for _, e := range l {
		if e.Warning {
			out = append(out, e)
		}
	}
	return out
}

func (l ErrorList) Error() string {
	var b strings.Builder
	for i, e := range l {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Err returns l as an error when it holds an error, and nil otherwise.
func (l ErrorList) Err() error {
	if len(l.Errors()) == 0 {
		return nil
	}
	return l
}
