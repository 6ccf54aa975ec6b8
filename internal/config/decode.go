package config

import (
	"fmt"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// The decoder walks yaml.Node trees into the plain structs of this package by
// reflection. yaml.v3's own Decode stops at the first type error and drops
// columns; walking the nodes ourselves lets every error carry file:line:col,
// lets us collect all of them in one pass, and records where every value came
// from so that later validation can point at it too.
//
// Struct tags: `yaml:"name"` names the key; `yaml:"name,short"` marks the one
// field that a scalar (or a sequence) fills when the whole struct is written in
// its short form, e.g. `proxy: http://127.0.0.1:5000` for `proxy: {to: [...]}`.

type decoder struct {
	file   string
	errs   *ErrorList
	pos    map[any]Pos
	lookup func(string) (string, bool)
	// secrets lists the ${VAR} names expanded into values, for redaction.
	secrets map[string]bool
}

// Unmarshaler is implemented by config types that decode a node themselves.
type unmarshaler interface {
	decodeNode(d *decoder, n *yaml.Node)
}

var durationType = reflect.TypeOf(Duration(0))

func (d *decoder) at(n *yaml.Node) Pos {
	return Pos{File: d.file, Line: n.Line, Col: n.Column}
}

func (d *decoder) errorf(n *yaml.Node, format string, args ...any) {
	d.errs.Add(d.at(n), fmt.Sprintf(format, args...))
}

// decode fills v (a pointer) from n.
func (d *decoder) decode(n *yaml.Node, v reflect.Value) {
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return
		}
		n = n.Content[0]
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if v.CanAddr() {
		d.pos[v.Addr().Interface()] = d.at(n)
	}
	if v.CanAddr() {
		if u, ok := v.Addr().Interface().(unmarshaler); ok {
			u.decodeNode(d, n)
			return
		}
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // `key:` with nothing after it keeps the default
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem())
	case reflect.Struct:
		d.decodeStruct(n, v)
	case reflect.Slice:
		d.decodeSlice(n, v)
	case reflect.Map:
		d.decodeMap(n, v)
	case reflect.String:
		if s, ok := d.scalar(n, "a string"); ok {
			v.SetString(s)
		}
	case reflect.Bool:
		s, ok := d.scalar(n, "true or false")
		if !ok {
			return
		}
		switch strings.ToLower(s) {
		case "true", "yes", "on":
			v.SetBool(true)
		case "false", "no", "off":
			v.SetBool(false)
		default:
			d.errorf(n, "%q is not a boolean: write true or false", s)
		}
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uint8:
		if v.Type() == durationType {
			d.decodeDuration(n, v)
			return
		}
		s, ok := d.scalar(n, "a number")
		if !ok {
			return
		}
		if v.CanUint() {
			u, err := strconv.ParseUint(s, 10, v.Type().Bits())
			if err != nil {
				d.errorf(n, "%q is not a whole number from 0 to %d", s, uint64(1)<<v.Type().Bits()-1)
				return
			}
			v.SetUint(u)
			return
		}
		i, err := strconv.ParseInt(s, 10, v.Type().Bits())
		if err != nil {
			d.errorf(n, "%q is not a whole number", s)
			return
		}
		v.SetInt(i)
	case reflect.Float64:
		s, ok := d.scalar(n, "a number")
		if !ok {
			return
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			d.errorf(n, "%q is not a number", s)
			return
		}
		v.SetFloat(f)
	default:
		panic("config: unsupported field kind " + v.Kind().String())
	}
}

func (d *decoder) decodeDuration(n *yaml.Node, v reflect.Value) {
	s, ok := d.scalar(n, "a duration such as 30s or 5m")
	if !ok {
		return
	}
	if s == "0" {
		v.SetInt(0)
		return
	}
	t, err := time.ParseDuration(s)
	if err != nil || t < 0 {
		d.errorf(n, "%q is not a duration: write a number with a unit, such as 500ms, 30s or 5m", s)
		return
	}
	v.SetInt(int64(t))
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}`)

// scalar returns the node's value with ${VAR} and ${VAR:-default} expanded.
// A missing variable is an error that names it; its value is never printed.
func (d *decoder) scalar(n *yaml.Node, want string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, "expected %s, found %s", want, kindName(n))
		return "", false
	}
	s := n.Value
	if !strings.Contains(s, "${") {
		return s, true
	}
	ok := true
	s = envRef.ReplaceAllStringFunc(s, func(ref string) string {
		m := envRef.FindStringSubmatch(ref)
		val, found := d.lookup(m[1])
		if !found || val == "" {
			if strings.Contains(ref, ":-") {
				return m[2]
			}
			if !found {
				d.errorf(n, "environment variable %s is not set: export it, or write ${%s:-default}", m[1], m[1])
				ok = false
				return ""
			}
		}
		d.secrets[m[1]] = true
		return val
	})
	return s, ok
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping (key: value)"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "nothing"
}

type fieldInfo struct {
	name  string
	index int
	short bool
}

func structFields(t reflect.Type) []fieldInfo {
	var fs []fieldInfo
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		if tag == "-" || !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		fs = append(fs, fieldInfo{name: name, index: i, short: opts == "short"})
	}
	return fs
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value) {
	fields := structFields(v.Type())
	if n.Kind != yaml.MappingNode {
		for _, f := range fields {
			if f.short {
				d.decode(n, v.Field(f.index))
				return
			}
		}
		d.errorf(n, "expected a mapping (key: value) here, found %s", kindName(n))
		return
	}
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Value == "<<" {
			d.errorf(k, "merge keys (<<) are not supported: write the keys out")
			continue
		}
		if prev, dup := seen[k.Value]; dup {
			d.errorf(k, "key %q given twice (first at line %d): keep one", k.Value, prev.Line)
			continue
		}
		seen[k.Value] = k
		f, ok := findField(fields, k.Value)
		if !ok {
			d.errorf(k, "unknown key %q%s", k.Value, suggest(k.Value, fields))
			continue
		}
		d.decode(val, v.Field(f.index))
	}
}

func findField(fs []fieldInfo, name string) (fieldInfo, bool) {
	for _, f := range fs {
		if f.name == name {
			return f, true
		}
	}
	return fieldInfo{}, false
}

// suggest names the closest known key, or lists them all when none is close.
func suggest(got string, fs []fieldInfo) string {
	names := make([]string, len(fs))
	best, bestDist := "", 3
	for i, f := range fs {
		names[i] = f.name
		if dd := editDistance(strings.ToLower(got), f.name); dd < bestDist {
			best, bestDist = f.name, dd
		}
	}
	if best != "" {
		return fmt.Sprintf(": did you mean %q?", best)
	}
	sort.Strings(names)
	return ": known keys here are " + strings.Join(names, ", ")
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func (d *decoder) decodeSlice(n *yaml.Node, v reflect.Value) {
	if n.Kind != yaml.SequenceNode {
		// A single value where a list is expected is a list of one.
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		d.decode(n, v.Index(0))
		return
	}
	v.Set(reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content)))
	for i, c := range n.Content {
		d.decode(c, v.Index(i))
	}
}

func (d *decoder) decodeMap(n *yaml.Node, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "expected a mapping (key: value), found %s", kindName(n))
		return
	}
	if v.Type().Key().Kind() != reflect.String {
		panic("config: map keys must be strings")
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(v.Type()))
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		key, ok := d.scalar(k, "a key")
		if !ok {
			continue
		}
		if line, dup := seen[key]; dup {
			d.errorf(k, "key %q given twice (first at line %d): keep one", key, line)
			continue
		}
		seen[key] = k.Line
		// Map values are not addressable: decode into a fresh value, then store
		// it, recording the key's position for the entry.
		e := reflect.New(v.Type().Elem())
		d.decode(val, e.Elem())
		v.SetMapIndex(reflect.ValueOf(key).Convert(v.Type().Key()), e.Elem())
	}
}

// decodeYAML parses src and fills out, collecting every error.
func decodeYAML(file string, src []byte, out any, errs *ErrorList, pos map[any]Pos, secrets map[string]bool) {
	var root yaml.Node
	if err := yaml.Unmarshal(src, &root); err != nil {
		errs.Add(Pos{File: file, Line: yamlErrLine(err)}, "not valid YAML: "+strings.TrimPrefix(err.Error(), "yaml: "))
		return
	}
	d := &decoder{file: file, errs: errs, pos: pos, lookup: os.LookupEnv, secrets: secrets}
	d.decode(&root, reflect.ValueOf(out).Elem())
}

var yamlLine = regexp.MustCompile(`line (\d+)`)

func yamlErrLine(err error) int {
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		l, _ := strconv.Atoi(m[1])
		return l
	}
	return 0
}
