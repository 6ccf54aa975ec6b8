package nginx

import (
	"fmt"
	"strings"
)

// The tokenizer follows nginx's own (ngx_conf_read_token in
// src/core/ngx_conf_file.c) rule for rule, because nginx configs lean on its
// corners: a '#' starts a comment only where a word could start, a quote
// opens a string only at the start of a word, '}' inside a word is plain text
// (so ${var} and a}b are words), a closing quote must be followed by space,
// ';', '{' or ')', and a backslash keeps the next character from ending a
// word.

// tokKind tells words from the three punctuation marks of the grammar.
type tokKind uint8

const (
	tokWord  tokKind = iota
	tokSemi          // ;
	tokOpen          // {
	tokClose         // }
	tokEOF
)

type token struct {
	kind   tokKind
	text   string // the word, unescaped; empty for punctuation
	quoted bool   // the word was written in quotes
	line   int
}

type lexer struct {
	file string
	src  []byte
	off  int
	line int
}

func newLexer(file string, src []byte) *lexer {
	return &lexer{file: file, src: src, line: 1}
}

func (lx *lexer) errorf(line int, format string, args ...any) error {
	return &Error{Pos: Pos{File: lx.file, Line: line}, Msg: fmt.Sprintf(format, args...)}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// next returns the next token. After a quoted word it checks what follows,
// as nginx does, so "a"b is an error rather than two words.
func (lx *lexer) next() (token, error) {
	for lx.off < len(lx.src) {
		c := lx.src[lx.off]
		switch {
		case c == '\n':
			lx.line++
			lx.off++
		case isSpace(c):
			lx.off++
		case c == '#':
			for lx.off < len(lx.src) && lx.src[lx.off] != '\n' {
				lx.off++
			}
		case c == ';':
			lx.off++
			return token{kind: tokSemi, line: lx.line}, nil
		case c == '{':
			lx.off++
			return token{kind: tokOpen, line: lx.line}, nil
		case c == '}':
			lx.off++
			return token{kind: tokClose, line: lx.line}, nil
		case c == '"' || c == '\'':
			return lx.quotedWord(c)
		default:
			return lx.word()
		}
	}
	return token{kind: tokEOF, line: lx.line}, nil
}

func (lx *lexer) word() (token, error) {
	start, line := lx.off, lx.line
	variable := false
	for lx.off < len(lx.src) {
		c := lx.src[lx.off]
		if c == '{' && variable {
			lx.off++
			continue
		}
		variable = false
		switch {
		case c == '\\':
			lx.off++
			if lx.off < len(lx.src) {
				if lx.src[lx.off] == '\n' {
					lx.line++
				}
				lx.off++
			}
			continue
		case c == '$':
			variable = true
		case isSpace(c) || c == ';' || c == '{':
			return token{kind: tokWord, text: unescape(lx.src[start:lx.off]), line: line}, nil
		}
		lx.off++
	}
	return token{kind: tokWord, text: unescape(lx.src[start:lx.off]), line: line}, nil
}

func (lx *lexer) quotedWord(q byte) (token, error) {
	line := lx.line
	lx.off++ // the opening quote
	start := lx.off
	for lx.off < len(lx.src) {
		c := lx.src[lx.off]
		switch c {
		case '\n':
			lx.line++
		case '\\':
			lx.off++
			if lx.off < len(lx.src) && lx.src[lx.off] == '\n' {
				lx.line++
			}
		case q:
			text := unescape(lx.src[start:lx.off])
			lx.off++
			if lx.off < len(lx.src) {
				switch n := lx.src[lx.off]; {
				case isSpace(n), n == ';', n == '{':
				case n == ')':
					// nginx lets `if ($a = "b")` close right after a quote;
					// the ')' becomes a word of its own.
				default:
					return token{}, lx.errorf(lx.line, "unexpected %q after a quoted string: put a space between words", rune(n))
				}
			}
			return token{kind: tokWord, text: text, quoted: true, line: line}, nil
		}
		lx.off++
	}
	return token{}, lx.errorf(line, "unterminated %c-quoted string: it runs to the end of the file", q)
}

// unescape turns \" \' \\ \t \r \n into what they stand for and keeps any
// other backslash, which nginx passes on (regexes need \. and \d).
func unescape(b []byte) string {
	if strings.IndexByte(string(b), '\\') < 0 {
		return string(b)
	}
	var sb strings.Builder
	for i := 0; i < len(b); i++ {
		if b[i] == '\\' && i+1 < len(b) {
			switch b[i+1] {
			case '"', '\'', '\\':
				sb.WriteByte(b[i+1])
				i++
				continue
			case 't':
				sb.WriteByte('\t')
				i++
				continue
			case 'r':
				sb.WriteByte('\r')
				i++
				continue
			case 'n':
				sb.WriteByte('\n')
				i++
				continue
			}
		}
		sb.WriteByte(b[i])
	}
	return sb.String()
}
