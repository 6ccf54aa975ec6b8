package accesslog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"gatehouse/internal/journey"
	"gatehouse/internal/syncbuf"
)

// slogLine is the line log/slog's JSON handler writes for rec, with the
// same attributes in the same order: the shape the access log keeps.
func slogLine(rec *journey.Record) string {
	var b bytes.Buffer
	r := slog.NewRecord(rec.Start.Add(rec.Duration), slog.LevelInfo, "request", 0)
	r.AddAttrs(
		slog.String("client", rec.Client.String()),
		slog.String("host", rec.Host),
		slog.String("method", rec.Method),
		slog.String("path", rec.Path),
		slog.Int("status", rec.Status),
		slog.Int64("bytes", rec.Bytes),
		slog.Duration("duration", rec.Duration),
		slog.String("site", rec.Site),
		slog.String("route", rec.Route),
		slog.String("handler", rec.Handler),
	)
	if rec.TLS != "" {
		r.AddAttrs(slog.String("tls", rec.TLS))
	}
	if rec.Upstream != "" {
		r.AddAttrs(slog.String("upstream", rec.Upstream), slog.Duration("upstream_time", rec.UpstreamTime))
	}
	if rec.UpstreamErr != "" {
		r.AddAttrs(slog.String("upstream_error", rec.UpstreamErr))
	}
	slog.NewJSONHandler(&b, nil).Handle(context.Background(), r)
	return b.String()
}

func sampleRecord() journey.Record {
	return journey.Record{
		Start:  time.Date(2026, 12, 7, 4, 18, 3, 392510786, time.UTC),
		Client: netip.MustParseAddr("2001:db8::7"), Host: "example.org", Method: "GET", Path: "/api/x",
		Status: 200, Bytes: 1024, Duration: 1405282 * time.Nanosecond,
		Site: "example.org", Route: "/api", Handler: "proxy",
	}
}

func TestLineIsSlogs(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*journey.Record)
	}{
		{"plain", func(*journey.Record) {}},
		{"tls and upstream", func(r *journey.Record) {
			r.Client = netip.MustParseAddr("192.0.2.1")
			r.TLS, r.Upstream, r.UpstreamTime = "TLS 1.3", "http://127.0.0.1:5000", 1385917
		}},
		{"upstream error", func(r *journey.Record) {
			r.Status, r.Upstream, r.UpstreamErr = 502, "http://127.0.0.1:5000", `dial tcp 127.0.0.1:5000: connect: connection refused`
		}},
		{"error without upstream", func(r *journey.Record) { r.UpstreamErr = "no upstream" }},
		{"escapes", func(r *journey.Record) {
			r.Path = "/a\"b\\c\n\r\t\x00\x1f\x7f<>&é😀\u2028\u2029\xff\xc3(end"
			r.Host = "ünïcode.example"
		}},
		{"zone with quotes", func(r *journey.Record) {
			r.Client = netip.MustParseAddr("fe80::1%\"}{\"msg\":\"\xff")
		}},
		{"zone and offset", func(r *journey.Record) {
			r.Client = netip.MustParseAddr("fe80::1%eth0")
			r.Start = time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("CET", 3600))
		}},
		{"nothing known", func(r *journey.Record) { *r = journey.Record{Start: r.Start} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := sampleRecord()
			tc.edit(&rec)
			got := string(appendLine(nil, &rec))
			want := slogLine(&rec)
			if !rec.Client.IsValid() {
				// slog would have written "invalid IP"; nothing is the truth.
				want = strings.Replace(want, `"client":"invalid IP"`, `"client":""`, 1)
			}
			if got != want {
				t.Errorf("line\n%s\nwant\n%s", got, want)
			}
			if !json.Valid([]byte(got)) {
				t.Errorf("not JSON: %s", got)
			}
		})
	}
}

func FuzzLine(f *testing.F) {
	f.Add("/a\"b\\c\n\x00\xff\u2028é", "example.org", "eth0")
	f.Add("", "", "")
	f.Add("/", "x", "\"}{\"msg\":\"\xff")
	f.Fuzz(func(t *testing.T, path, host, zone string) {
		rec := sampleRecord()
		rec.Path, rec.Host = path, host
		if zone != "" {
			// A zone is any text X-Forwarded-For carried that ParseAddr took.
			if a, err := netip.ParseAddr("fe80::1%" + zone); err == nil {
				rec.Client = a
			}
		}
		got := appendLine(nil, &rec)
		if want := slogLine(&rec); string(got) != want {
			t.Fatalf("line\n%s\nwant\n%s", got, want)
		}
		var v struct{ Path string }
		if err := json.Unmarshal(got, &v); err != nil {
			t.Fatalf("not JSON: %v: %s", err, got)
		}
	})
}

func TestWriterGathersLines(t *testing.T) {
	var out bytes.Buffer // the timer never fires: nothing writes at once
	w := NewWriter(&out, time.Hour)
	rec := sampleRecord()
	w.Log(&rec)
	w.Log(&rec)
	if out.Len() != 0 {
		t.Fatalf("written before the buffer filled or its time came: %q", out.String())
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	line := string(appendLine(nil, &rec))
	if out.String() != line+line {
		t.Fatalf("flushed %q", out.String())
	}

	// A full buffer goes out at once, and nothing is lost or reordered.
	out.Reset()
	n := 2*bufferSize/len(line) + 1
	for i := range n {
		rec.Bytes = int64(i)
		w.Log(&rec)
	}
	if out.Len() == 0 {
		t.Fatal("a full buffer was not written")
	}
	w.Flush()
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != n {
		t.Fatalf("%d lines, want %d", len(lines), n)
	}
	for i, l := range lines {
		var v struct{ Bytes int }
		if err := json.Unmarshal([]byte(l), &v); err != nil || v.Bytes != i {
			t.Fatalf("line %d: %s (%v)", i, l, err)
		}
	}

	// A line longer than the buffer still goes out whole, after those
	// before it.
	out.Reset()
	w.Log(&rec)
	rec.Path = "/" + strings.Repeat("x", bufferSize)
	w.Log(&rec)
	w.Flush()
	if got := strings.Count(out.String(), "\n"); got != 2 || !strings.HasSuffix(out.String(), rec.Path+`","status":200,`+strings.SplitN(string(appendLine(nil, &rec)), `,"status":200,`, 2)[1]) {
		t.Fatalf("%d lines, ending %q", got, out.String()[max(0, out.Len()-80):])
	}
}

func TestWriterFlushesInTime(t *testing.T) {
	var out syncbuf.Buffer
	w := NewWriter(&out, 20*time.Millisecond)
	rec := sampleRecord()
	w.Log(&rec)
	deadline := time.Now().Add(5 * time.Second)
	for out.String() == "" {
		if time.Now().After(deadline) {
			t.Fatal("a lone line was never written")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if out.String() != string(appendLine(nil, &rec)) {
		t.Fatalf("wrote %q", out.String())
	}
}

func TestWriterUnbuffered(t *testing.T) {
	var out bytes.Buffer
	w := NewWriter(&out, 0)
	rec := sampleRecord()
	w.Log(&rec)
	if out.String() != string(appendLine(nil, &rec)) {
		t.Fatalf("wrote %q", out.String())
	}
}

func TestWriterAllocatesNothing(t *testing.T) {
	var out bytes.Buffer
	out.Grow(1 << 20)
	w := NewWriter(&out, time.Hour)
	rec := sampleRecord()
	rec.Upstream, rec.TLS = "http://127.0.0.1:5000", "TLS 1.3"
	if n := testing.AllocsPerRun(1000, func() { w.Log(&rec) }); n != 0 {
		t.Errorf("%v allocations per line", n)
	}
}

func TestWriterClose(t *testing.T) {
	var out bytes.Buffer
	w := NewWriter(&out, time.Hour)
	rec := sampleRecord()
	w.Log(&rec)
	w.Close()
	line := string(appendLine(nil, &rec))
	if out.String() != line {
		t.Fatalf("Close wrote %q", out.String())
	}
	w.Log(&rec) // a request that outlived the shutdown
	if out.String() != line+line {
		t.Fatalf("a line after Close: %q", out.String())
	}
}

// failing takes the first n bytes of each write, then fails it, while
// fail is set.
type failing struct {
	bytes.Buffer
	fail bool
	n    int
}

func (f *failing) Write(p []byte) (int, error) {
	if f.fail {
		k := min(f.n, len(p))
		f.Buffer.Write(p[:k])
		return k, errors.New("no space left on device")
	}
	return f.Buffer.Write(p)
}

func TestWriterFailures(t *testing.T) {
	out := &failing{fail: true, n: 10}
	w := NewWriter(out, time.Hour)
	var errs []error
	w.OnError = func(err error) { errs = append(errs, err) }
	rec := sampleRecord()
	w.Log(&rec)
	w.Flush()
	w.Log(&rec)
	w.Flush()
	if len(errs) != 1 {
		t.Errorf("%d errors told for one run of failures, want 1", len(errs))
	}
	out.fail = false
	w.Log(&rec)
	w.Flush()
	line := string(appendLine(nil, &rec))
	// Each cut-short line is ended before anything else is written
	// (this output takes the newline even while failing), so the next
	// whole line starts on its own.
	if want := line[:10] + "\n" + line[:10] + "\n" + line; out.String() != want {
		t.Fatalf("wrote %q, want %q", out.String(), want)
	}
	out.fail = true
	w.Log(&rec)
	w.Flush()
	if len(errs) != 2 {
		t.Errorf("a new run of failures: %d errors told in all, want 2", len(errs))
	}
}
