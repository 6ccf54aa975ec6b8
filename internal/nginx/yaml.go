package nginx

import (
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// A small YAML writer of our own rather than yaml.v3's encoder: the output
// is meant to be read and edited by people, so it keeps short lists in flow
// style, puts comments exactly above the line they are about, and never
// reorders keys. yaml.v3 is still used to decide whether a string needs
// quotes, so what is written reads back as the same string.

// ynode is a YAML value: a scalar, a flow list of scalars, a mapping or a
// list of mappings.
type ynode struct {
	scalar  string // already quoted as needed
	isScal  bool
	flow    []string // quoted items of a flow list
	isFlow  bool
	entries []*yentry // a mapping
	items   []*ymap   // a block list of mappings
	isList  bool
}

type yentry struct {
	key  string
	val  *ynode
	head []string // comment lines above
	line string   // comment at the end of the line
}

// ymap is a mapping with comments above it (for list items).
type ymap struct {
	head      []string
	entries   []*yentry
	commented bool // written as comment lines only
}

func (m *ymap) add(key string, val *ynode) *yentry {
	e := &yentry{key: key, val: val}
	m.entries = append(m.entries, e)
	return e
}

func str(s string) *ynode    { return &ynode{scalar: quote(s, false), isScal: true} }
func raw(s string) *ynode    { return &ynode{scalar: s, isScal: true} }
func num(n int) *ynode       { return raw(strconv.Itoa(n)) }
func mapping(m *ymap) *ynode { return &ynode{entries: m.entries} }

func flow(items []string) *ynode {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = quote(s, true)
	}
	return &ynode{flow: q, isFlow: true}
}

func list(items []*ymap) *ynode { return &ynode{items: items, isList: true} }

// quote returns s as a YAML scalar: plain when yaml.v3 would write it plain
// (and, inside a flow list, when it has no flow punctuation), otherwise
// double-quoted with Go escapes, which are valid YAML escapes.
func quote(s string, inFlow bool) string {
	out, err := yaml.Marshal(s)
	plain := err == nil && !strings.ContainsAny(s, "\n\t") && strings.TrimSuffix(string(out), "\n") == s
	if plain && inFlow && strings.ContainsAny(s, ",[]{}#&*!|>'\"%@`:") {
		plain = false
	}
	if plain {
		return s
	}
	return strconv.Quote(s)
}

type ywriter struct {
	sb strings.Builder
}

func (w *ywriter) comments(indent int, lines []string) {
	for _, l := range lines {
		w.sb.WriteString(strings.Repeat(" ", indent))
		w.sb.WriteString("# ")
		w.sb.WriteString(commentText(l))
		w.sb.WriteByte('\n')
	}
}

// commentText keeps a comment on one line.
func commentText(s string) string {
	return strings.NewReplacer("\n", `\n`, "\r", `\r`).Replace(s)
}

func (w *ywriter) lineEnd(comment string) {
	if comment != "" {
		w.sb.WriteString("  # ")
		w.sb.WriteString(commentText(comment))
	}
	w.sb.WriteByte('\n')
}

// mapping writes entries at indent; first, when not empty, is written in
// place of the indentation of the first entry (the "- " of a list item).
func (w *ywriter) mapping(indent int, entries []*yentry, first string) {
	for i, e := range entries {
		if i > 0 || first == "" {
			w.comments(indent, e.head)
			w.sb.WriteString(strings.Repeat(" ", indent))
		} else {
			w.sb.WriteString(first)
		}
		w.sb.WriteString(e.key)
		w.sb.WriteByte(':')
		w.value(indent, e.val, e.line)
	}
}

func (w *ywriter) value(indent int, v *ynode, comment string) {
	switch {
	case v.isScal:
		w.sb.WriteByte(' ')
		w.sb.WriteString(v.scalar)
		w.lineEnd(comment)
	case v.isFlow:
		w.sb.WriteString(" [")
		w.sb.WriteString(strings.Join(v.flow, ", "))
		w.sb.WriteByte(']')
		w.lineEnd(comment)
	case v.isList:
		w.lineEnd(comment)
		for _, it := range v.items {
			w.item(indent+2, it)
		}
	default:
		w.lineEnd(comment)
		w.mapping(indent+2, v.entries, "")
	}
}

// item writes one list item; the comments above its first entry go above
// the dash.
func (w *ywriter) item(indent int, m *ymap) {
	if m.commented {
		var inner ywriter
		inner.item(0, &ymap{head: m.head, entries: m.entries})
		for _, l := range strings.Split(strings.TrimSuffix(inner.sb.String(), "\n"), "\n") {
			w.sb.WriteString(strings.Repeat(" ", indent))
			if strings.HasPrefix(strings.TrimSpace(l), "#") {
				w.sb.WriteString(l + "\n")
				continue
			}
			w.sb.WriteString("# " + l + "\n")
		}
		return
	}
	w.comments(indent, m.head)
	if len(m.entries) > 0 {
		w.comments(indent, m.entries[0].head)
	}
	w.mapping(indent+2, m.entries, strings.Repeat(" ", indent)+"- ")
}
