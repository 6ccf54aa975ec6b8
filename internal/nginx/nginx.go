// Package nginx reads nginx configuration files and converts their server
// blocks into gatehouse YAML, so that an nginx + certbot setup can be run or
// migrated unchanged.
//
// The parser follows nginx's grammar (quotes, escapes, comments, variables,
// include with globs) and positions every directive at file:line. The
// converter carries over what gatehouse can express, says in a comment on
// the output — and in a Warning — what it cannot and why, and never drops a
// directive silently.
package nginx

import "regexp"

var identRE = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// Detect reports whether src reads as an nginx config rather than gatehouse
// YAML: its first directive is a bare lowercase name (a YAML key ends in
// ':') followed by arguments and ended by ';' or a block. Syntax errors
// further on are left for ParseFile to report with their line.
func Detect(src []byte) bool {
	lx := newLexer("", src)
	first, err := lx.next()
	if err != nil || first.kind != tokWord || first.quoted || !identRE.MatchString(first.text) {
		return false
	}
	for {
		t, err := lx.next()
		if err != nil {
			return false
		}
		switch t.kind {
		case tokSemi, tokOpen:
			return true
		case tokClose, tokEOF:
			return false
		}
	}
}
