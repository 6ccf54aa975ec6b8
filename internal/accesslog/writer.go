package accesslog

import (
	"io"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"gatehouse/internal/journey"
)

// Writer writes the access log: one JSON object per request, in the shape
// of a log/slog JSON line (time, level, msg, then the request's fields), so
// the tools that read gatehouse's own log read this one too. It formats
// each line itself, with no allocation, into a buffer that goes out when
// it is full or a set time after its first line: a busy server makes one
// write for hundreds of requests, not one each.
type Writer struct {
	out   io.Writer
	every time.Duration

	// OnError, when set, hears of a failed write: the first of a run of
	// failures, not each one, so a full disk does not flood the log.
	OnError func(error)

	mu      sync.Mutex
	buf     []byte
	timer   *time.Timer // flushes a buffer that did not fill; nil when every is 0
	armed   bool        // the timer is running
	closed  bool        // each line is written at once
	failing bool        // the last write failed
	cut     bool        // the last write stopped inside a line
}

// bufferSize is how much the Writer gathers before it writes.
const bufferSize = 64 << 10

// NewWriter writes lines to out, at most every after the first line of a
// batch. An every of 0 writes each line at once.
func NewWriter(out io.Writer, every time.Duration) *Writer {
	w := &Writer{out: out, every: every, buf: make([]byte, 0, bufferSize)}
	if every > 0 {
		w.timer = time.AfterFunc(time.Hour, func() { w.Flush() })
		w.timer.Stop()
	}
	return w
}

// Log writes rec's line.
func (w *Writer) Log(rec *journey.Record) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = appendLine(w.buf, rec)
	if w.timer == nil || w.closed || len(w.buf) >= bufferSize {
		w.flushLocked()
		return
	}
	if !w.armed {
		w.armed = true
		w.timer.Reset(w.every)
	}
}

// Flush writes what is gathered. Call it before the output is reopened.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.flushLocked()
}

// Close writes what is gathered, and from then on each line at once: a
// request that outlives the shutdown still gets its line. The output
// stays open; its owner closes it.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	return w.flushLocked()
}

func (w *Writer) flushLocked() error {
	if w.armed {
		w.armed = false
		w.timer.Stop()
	}
	if len(w.buf) == 0 {
		return nil
	}
	if w.cut {
		// The line the last write cut short ends here, so that the
		// next one starts on a line of its own.
		if _, err := w.out.Write([]byte{'\n'}); err == nil {
			w.cut = false
		}
	}
	// A failed write drops the batch: the log must not grow without
	// bound while its disk is full.
	n, err := w.out.Write(w.buf)
	if err != nil {
		w.cut = w.cut || n > 0 && w.buf[n-1] != '\n'
		if !w.failing && w.OnError != nil {
			w.OnError(err)
		}
	}
	w.failing = err != nil
	w.buf = w.buf[:0]
	if cap(w.buf) > 2*bufferSize {
		w.buf = make([]byte, 0, bufferSize) // the room a huge line took is given back
	}
	return err
}

// appendLine appends rec's line, with its newline, to b. The time is the
// response's end; durations are nanoseconds, as slog writes them.
func appendLine(b []byte, rec *journey.Record) []byte {
	b = append(b, `{"time":"`...)
	b = rec.Start.Add(rec.Duration).AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","level":"INFO","msg":"request","client":"`...)
	// The address has nothing to escape, but a zone (fe80::1%eth0) is any
	// text an X-Forwarded-For from a trusted proxy carried.
	b = rec.Client.WithZone("").AppendTo(b)
	if zone := rec.Client.Zone(); zone != "" {
		b = append(b, '%')
		b = appendString(b, zone)
	}
	b = append(b, '"')
	b = appendStringField(b, "host", rec.Host)
	b = appendStringField(b, "method", rec.Method)
	b = appendStringField(b, "path", rec.Path)
	b = appendIntField(b, "status", int64(rec.Status))
	b = appendIntField(b, "bytes", rec.Bytes)
	b = appendIntField(b, "duration", int64(rec.Duration))
	b = appendStringField(b, "site", rec.Site)
	b = appendStringField(b, "route", rec.Route)
	b = appendStringField(b, "handler", rec.Handler)
	if rec.TLS != "" {
		b = appendStringField(b, "tls", rec.TLS)
	}
	if rec.Upstream != "" {
		b = appendStringField(b, "upstream", rec.Upstream)
		b = appendIntField(b, "upstream_time", int64(rec.UpstreamTime))
	}
	if rec.UpstreamErr != "" {
		b = appendStringField(b, "upstream_error", rec.UpstreamErr)
	}
	return append(b, "}\n"...)
}

// appendStringField appends ,"key":"value".
func appendStringField(b []byte, key, value string) []byte {
	b = append(b, `,"`...)
	b = append(b, key...)
	b = append(b, `":"`...)
	b = appendString(b, value)
	return append(b, '"')
}

// appendIntField appends ,"key":n.
func appendIntField(b []byte, key string, n int64) []byte {
	b = append(b, `,"`...)
	b = append(b, key...)
	b = append(b, `":`...)
	return strconv.AppendInt(b, n, 10)
}

const hex = "0123456789abcdef"

// appendString appends s escaped for a JSON string, without quotes, as
// encoding/json and slog do: invalid UTF-8 becomes U+FFFD, and U+2028 and
// U+2029 are escaped for the JavaScript that reads JSON as code.
func appendString(b []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(b, s[start:]...)
}
