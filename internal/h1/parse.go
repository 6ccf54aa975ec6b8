package h1

import (
	"bytes"
	"errors"
)

// span is a byte range of a buffer: heads are parsed in place, never
// copied into strings.
type span struct{ off, end int32 }

func (s span) of(b []byte) []byte { return b[s.off:s.end] }

// fieldKind marks the header fields the proxy treats specially.
type fieldKind uint8

const (
	fieldOther fieldKind = iota
	fieldHost
	fieldContentLength
	fieldTransferEncoding
	fieldConnection
	fieldDate
	// fieldHop are hop-by-hop fields, dropped on forwarding (RFC 9110 §7.6.1).
	fieldHop
	// fieldForwarded are what a client claims about earlier hops; replaced
	// by what the edge saw.
	fieldForwarded
	// fieldConditional are request fields (Range, If-*) that make an
	// answer depend on validators: static files then go to the full server.
	fieldConditional
	fieldAcceptEncoding
	// fieldForeign are fields whose meaning the loop does not implement
	// (Expect, Upgrade, Transfer-Encoding on requests, the trace token):
	// a request carrying one goes to the full server.
	fieldForeign
)

type field struct {
	name, value span
	kind        fieldKind
}

// kindOf classifies a field name, case-insensitively.
func kindOf(name []byte, request bool) fieldKind {
	switch len(name) {
	case 2:
		if eqFold(name, "te") {
			return fieldHop
		}
	case 5:
		if eqFold(name, "range") && request {
			return fieldConditional
		}
	case 4:
		if eqFold(name, "host") {
			return fieldHost
		}
		if eqFold(name, "date") {
			return fieldDate
		}
	case 6:
		if eqFold(name, "expect") && request {
			return fieldForeign
		}
	case 8:
		if (eqFold(name, "if-match") || eqFold(name, "if-range")) && request {
			return fieldConditional
		}
	case 13:
		if eqFold(name, "if-none-match") && request {
			return fieldConditional
		}
	case 18:
		if eqFold(name, "proxy-authenticate") {
			return fieldHop
		}
	case 19:
		if eqFold(name, "if-unmodified-since") && request {
			return fieldConditional
		}
		if eqFold(name, "proxy-authorization") {
			return fieldHop
		}
	case 7:
		if eqFold(name, "upgrade") {
			if request {
				return fieldForeign
			}
			return fieldHop
		}
		if eqFold(name, "trailer") && request {
			return fieldHop
		}
	case 9:
		if eqFold(name, "forwarded") {
			return fieldForwarded
		}
		if eqFold(name, "x-real-ip") {
			return fieldForwarded
		}
	case 10:
		if eqFold(name, "connection") {
			return fieldConnection
		}
		if eqFold(name, "keep-alive") {
			return fieldHop
		}
	case 14:
		if eqFold(name, "content-length") {
			return fieldContentLength
		}
		if eqFold(name, "http2-settings") && request {
			return fieldForeign
		}
	case 15:
		if eqFold(name, "x-forwarded-for") {
			return fieldForwarded
		}
		if eqFold(name, "gatehouse-trace") && request {
			return fieldForeign
		}
		if eqFold(name, "accept-encoding") && request {
			return fieldAcceptEncoding
		}
	case 16:
		if eqFold(name, "x-forwarded-host") {
			return fieldForwarded
		}
		if eqFold(name, "proxy-connection") {
			return fieldHop
		}
	case 17:
		if eqFold(name, "x-forwarded-proto") {
			return fieldForwarded
		}
		if eqFold(name, "transfer-encoding") {
			return fieldTransferEncoding
		}
		if eqFold(name, "if-modified-since") && request {
			return fieldConditional
		}
	}
	return fieldOther
}

// eqFold compares b with the lower-case ASCII s, ignoring case.
func eqFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// tchar is RFC 9110's token alphabet.
var tchar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return
}()

// valueOK accepts field-value bytes: visible ASCII, SP, HTAB and obs-text.
var valueOK = func() (t [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = true
	}
	for c := 0x80; c <= 0xff; c++ {
		t[c] = true
	}
	t['\t'] = true
	return
}()

// targetOK accepts the bytes of an origin-form target the loop serves
// as-is. '%' in the path (the route table matches decoded paths; the query
// may have it), '#', '\' and non-ASCII are left to the full server.
var targetOK = func() (t [256]bool) {
	for c := 0x21; c < 0x7f; c++ {
		t[c] = true
	}
	t['%'], t['#'], t['\\'] = false, false, false
	return
}()

// hostOK accepts the bytes of a Host value: a reg-name or IP literal with
// an optional port, lower or upper case.
var hostOK = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "-._:[]" {
		t[c] = true
	}
	return
}()

// maxFields bounds the fields of one head; more go to the full server,
// which applies its own limits.
const maxFields = 100

// head is a parsed request or response head, as spans of the buffer it
// was read into.
type head struct {
	fields []field
	// request
	method, target, path span
	host                 span
	// response
	status int
	// both
	contentLength int64 // -1 when absent
	chunked       bool
	close         bool // Connection: close, or HTTP/1.0 without keep-alive
	conditional   bool // Range or If-* (requests)
	// acceptEncoding is the request's one Accept-Encoding; acceptEncodings
	// counts them.
	acceptEncoding  span
	acceptEncodings int
	http10          bool
	hasDate         bool
	// connTokens are field names listed in Connection (other than close
	// and keep-alive), hop-by-hop for this message only.
	connTokens []span
	size       int // bytes of the head, including the empty line
}

func (h *head) reset() {
	fields, tokens := h.fields[:0], h.connTokens[:0]
	*h = head{fields: fields, connTokens: tokens, contentLength: -1}
}

// parse outcomes besides a parsed head.
var (
	errIncomplete = errors.New("incomplete head")
	// errForeign means the loop does not serve this request itself; the
	// connection goes, with every byte read, to the full server, which
	// answers it (or its error: 400, 431, 501) as it always has.
	errForeign = errors.New("request for the full server")
	// errBadResponse is an upstream response that breaks RFC 9112.
	errBadResponse = errors.New("malformed response head from the upstream")
)

var crlfcrlf = []byte("\r\n\r\n")

// headEnd returns the length of the head at the start of b, or 0 if b
// does not hold it all yet.
func headEnd(b []byte) int {
	if i := bytes.Index(b, crlfcrlf); i >= 0 {
		return i + 4
	}
	return 0
}

// parseRequest parses a request head at the start of b. It accepts a strict
// subset of RFC 9112: origin-form targets, HTTP/1.1, CRLF line ends, no
// obs-fold, one Host, at most one Content-Length and no Transfer-Encoding.
// Anything else is errForeign, never a guess.
func parseRequest(b []byte, h *head) error {
	h.reset()
	n := headEnd(b)
	if n == 0 {
		if bytes.Contains(b, []byte("\n\n")) {
			return errForeign // bare LF line ends
		}
		return errIncomplete
	}
	h.size = n
	line, rest := cutLine(b[:n-2], 0)
	if line.end < 0 {
		return errForeign
	}
	// request-line = method SP request-target SP HTTP-version
	i := line.off
	for i < line.end && tchar[b[i]] {
		i++
	}
	if i == line.off || i >= line.end || b[i] != ' ' {
		return errForeign
	}
	h.method = span{line.off, i}
	i++
	t := i
	q := int32(-1)
	for i < line.end && (targetOK[b[i]] || b[i] == '%' && q >= 0) {
		if b[i] == '?' && q < 0 {
			q = i
		}
		i++
	}
	if i == t || b[t] != '/' || i >= line.end || b[i] != ' ' {
		return errForeign
	}
	h.target = span{t, i}
	h.path = h.target
	if q >= 0 {
		h.path.end = q
	}
	if string(b[i+1:line.end]) != "HTTP/1.1" {
		return errForeign
	}
	if err := parseFields(b, rest, n-2, h, true); err != nil {
		return err
	}
	if h.host.end == 0 || h.chunked {
		return errForeign
	}
	return nil
}

// parseResponse parses an upstream response head at the start of b.
func parseResponse(b []byte, h *head) error {
	h.reset()
	n := headEnd(b)
	if n == 0 {
		return errIncomplete
	}
	h.size = n
	line, rest := cutLine(b[:n-2], 0)
	if line.end < 0 {
		return errBadResponse
	}
	l := line.of(b)
	// status-line = HTTP-version SP status-code SP [ reason-phrase ]
	if len(l) < 12 || string(l[:7]) != "HTTP/1." || (l[7] != '1' && l[7] != '0') || l[8] != ' ' {
		return errBadResponse
	}
	h.http10 = l[7] == '0'
	for _, c := range l[9:12] {
		if c < '0' || c > '9' {
			return errBadResponse
		}
		h.status = h.status*10 + int(c-'0')
	}
	if h.status < 100 || h.status > 599 || (len(l) > 12 && l[12] != ' ') {
		return errBadResponse
	}
	for _, c := range l[12:] {
		if !valueOK[c] {
			return errBadResponse
		}
	}
	if err := parseFields(b, rest, n-2, h, false); err != nil {
		if err == errForeign {
			err = errBadResponse
		}
		return err
	}
	if h.chunked {
		h.contentLength = -1 // RFC 9112 §6.3: Transfer-Encoding wins, and Content-Length is not forwarded
	}
	if h.http10 {
		h.close = true
	}
	return nil
}

// cutLine returns the line starting at off within b (which ends at a line
// end) and the offset after its CRLF.
func cutLine(b []byte, off int) (span, int) {
	i := bytes.IndexByte(b[off:], '\n')
	if i < 0 {
		return span{int32(off), int32(len(b))}, len(b)
	}
	end := off + i
	if end > off && b[end-1] == '\r' {
		return span{int32(off), int32(end - 1)}, end + 1
	}
	return span{int32(off), -1}, end + 1 // bare LF: rejected by the callers' checks
}

func parseFields(b []byte, off, end int, h *head, request bool) error {
	for off < end {
		line, next := cutLine(b[:end], off)
		off = next
		if line.end < 0 {
			return errForeign
		}
		l := line.of(b)
		if len(h.fields) == maxFields {
			return errForeign
		}
		// field-line = field-name ":" OWS field-value OWS; no space before
		// the colon (RFC 9112 §5.1) and no obs-fold.
		i := 0
		for i < len(l) && tchar[l[i]] {
			i++
		}
		if i == 0 || i == len(l) || l[i] != ':' {
			return errForeign
		}
		name := span{line.off, line.off + int32(i)}
		v0, v1 := i+1, len(l)
		for v0 < v1 && (l[v0] == ' ' || l[v0] == '\t') {
			v0++
		}
		for v1 > v0 && (l[v1-1] == ' ' || l[v1-1] == '\t') {
			v1--
		}
		for _, c := range l[v0:v1] {
			if !valueOK[c] {
				return errForeign
			}
		}
		f := field{name: name, value: span{line.off + int32(v0), line.off + int32(v1)}, kind: kindOf(name.of(b), request)}
		val := f.value.of(b)
		switch f.kind {
		case fieldForeign:
			return errForeign
		case fieldHost:
			if h.host.end != 0 || len(val) == 0 {
				return errForeign
			}
			for _, c := range val {
				if !hostOK[c] {
					return errForeign
				}
			}
			h.host = f.value
		case fieldContentLength:
			n, ok := parseLength(val)
			if !ok || (h.contentLength >= 0 && h.contentLength != n) || (request && h.contentLength >= 0) {
				return errForeign
			}
			h.contentLength = n
		case fieldTransferEncoding:
			if request || h.chunked || !eqFold(val, "chunked") {
				return errForeign
			}
			h.chunked = true
		case fieldConnection:
			if err := h.connection(b, f.value, request); err != nil {
				return err
			}
		case fieldDate:
			h.hasDate = true
		case fieldConditional:
			h.conditional = true
		case fieldAcceptEncoding:
			h.acceptEncoding = f.value
			h.acceptEncodings++
		}
		h.fields = append(h.fields, f)
	}
	return nil
}

// connection reads the Connection field's tokens.
func (h *head) connection(b []byte, v span, request bool) error {
	for i := v.off; i < v.end; {
		j := i
		for j < v.end && b[j] != ',' {
			j++
		}
		s, e := i, j
		for s < e && (b[s] == ' ' || b[s] == '\t') {
			s++
		}
		for e > s && (b[e-1] == ' ' || b[e-1] == '\t') {
			e--
		}
		i = j + 1
		tok := b[s:e]
		switch {
		case len(tok) == 0:
		case eqFold(tok, "close"):
			h.close = true
		case eqFold(tok, "keep-alive"):
		case request:
			// Upgrade, HTTP2-Settings or a custom hop-by-hop field: the
			// full server knows what to do.
			return errForeign
		default:
			for _, c := range tok {
				if !tchar[c] {
					return errBadResponse
				}
			}
			h.connTokens = append(h.connTokens, span{s, e})
		}
	}
	return nil
}

// parseLength parses a Content-Length: 1*DIGIT, at most 18 digits.
func parseLength(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// hopByHop reports whether f is not forwarded: a hop-by-hop field, or one
// the message's Connection field names.
func (h *head) hopByHop(b []byte, f *field) bool {
	switch f.kind {
	case fieldHop, fieldConnection:
		return true
	}
	for _, t := range h.connTokens {
		if len(t.of(b)) == len(f.name.of(b)) && bytes.EqualFold(t.of(b), f.name.of(b)) {
			return true
		}
	}
	return false
}

// chunkScanner follows the framing of a chunked body (RFC 9112 §7.1) as it
// is forwarded byte for byte, to know where the message ends and to refuse
// a malformed one rather than pass it on.
type chunkScanner struct {
	state   uint8
	size    int64
	digits  int
	lineLen int
	data    int64 // chunk data seen: the body's length without its framing
}

const (
	csSize uint8 = iota
	csExt
	csSizeLF
	csData
	csDataCR
	csDataLF
	csTrailer
	csTrailerLF
	csDone
)

// maxChunkLine bounds a chunk-size line with extensions, or a trailer line.
const maxChunkLine = 4096

var errBadChunk = errors.New("malformed chunked body from the upstream")

// scan consumes b and returns how many bytes belong to the body (all of b,
// or fewer when the body ends inside b).
func (s *chunkScanner) scan(b []byte) (int, error) {
	i := 0
	for i < len(b) {
		c := b[i]
		switch s.state {
		case csSize:
			switch {
			case c >= '0' && c <= '9', c >= 'a' && c <= 'f', c >= 'A' && c <= 'F':
				if s.digits == 15 {
					return i, errBadChunk
				}
				s.size = s.size<<4 | int64(unhex(c))
				s.digits++
			case s.digits > 0 && (c == ';' || c == ' ' || c == '\t'):
				s.state, s.lineLen = csExt, 0
			case s.digits > 0 && c == '\r':
				s.state = csSizeLF
			default:
				return i, errBadChunk
			}
		case csExt:
			switch {
			case c == '\r':
				s.state = csSizeLF
			case c == '\t' || (c >= 0x20 && c != 0x7f):
				s.lineLen++
				if s.lineLen > maxChunkLine {
					return i, errBadChunk
				}
			default:
				return i, errBadChunk
			}
		case csSizeLF:
			if c != '\n' {
				return i, errBadChunk
			}
			if s.size == 0 {
				s.state, s.lineLen = csTrailer, 0
			} else {
				s.state = csData
			}
		case csData:
			n := int64(len(b) - i)
			if n > s.size {
				n = s.size
			}
			s.size -= n
			s.data += n
			i += int(n)
			if s.size == 0 {
				s.state = csDataCR
			}
			continue
		case csDataCR:
			if c != '\r' {
				return i, errBadChunk
			}
			s.state = csDataLF
		case csDataLF:
			if c != '\n' {
				return i, errBadChunk
			}
			s.state, s.digits = csSize, 0
		case csTrailer:
			switch {
			case c == '\r':
				s.state = csTrailerLF
			case c == '\t' || (c >= 0x20 && c != 0x7f) || c >= 0x80:
				s.lineLen++
				if s.lineLen > maxChunkLine {
					return i, errBadChunk
				}
			default:
				return i, errBadChunk
			}
		case csTrailerLF:
			if c != '\n' {
				return i, errBadChunk
			}
			if s.lineLen == 0 {
				s.state = csDone
				return i + 1, nil
			}
			s.state, s.lineLen = csTrailer, 0
		case csDone:
			return i, nil
		}
		i++
	}
	return i, nil
}

func (s *chunkScanner) done() bool { return s.state == csDone }

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}
