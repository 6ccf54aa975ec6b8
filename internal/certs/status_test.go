package certs

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestWriteInventoryGolden pins the `gatehouse certs` table.
func TestWriteInventoryGolden(t *testing.T) {
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	infos := []CertInfo{
		{Names: []string{"example.org", "www.example.org"}, Source: "acme", Issuer: "R11", NotAfter: at("2026-02-01T00:00:00Z"), NextRenewal: at("2026-01-02T00:00:00Z")},
		{Names: []string{"*.example.net"}, Source: "acme", Issuer: "R11", NotAfter: at("2026-01-10T00:00:00Z"), NextRenewal: at("2026-01-05T12:00:00Z"), RenewalFromARI: true,
			LastError: "HTTP 400 urn:ietf:params:acme:error:connection -\n  connection refused", LastErrorAt: at("2026-01-06T00:00:00Z")},
		{Names: []string{"new.example.com"}, Source: "acme", LastError: "no such host", LastErrorAt: at("2026-01-06T00:00:00Z")},
		{Names: []string{"gatehouse local CA"}, Source: "internal", Issuer: "self-signed (local CA root)", NotAfter: at("2025-12-31T00:00:00Z")},
	}
	var got bytes.Buffer
	if err := WriteInventory(&got, infos, at("2026-01-07T00:00:00Z")); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "inventory.golden")
	if *update {
		os.WriteFile(golden, got.Bytes(), 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != string(want) {
		t.Errorf("got:\n%s\nwant:\n%s", got.String(), want)
	}
}

// writeStore lays out a data directory as certmagic and the Manager do.
func writeStore(t testing.TB, dir string, crt, meta, status []byte) {
	site := filepath.Join(dir, "acme", "certificates", "ca.example-dir", "example.org")
	if err := os.MkdirAll(site, 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(site, "example.org.crt"), crt, 0o600)
	os.WriteFile(filepath.Join(site, "example.org.json"), meta, 0o600)
	os.WriteFile(filepath.Join(dir, "acme", statusFile), status, 0o600)
}

func TestInventoryReadsStorage(t *testing.T) {
	ca, err := LoadOrCreateCA(filepath.Join(t.TempDir(), "ca"))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue([]string{"example.org"}, 90*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	crt, _ := encodePair(t, leaf)
	meta := []byte(`{"sans":["example.org"],"issuer_data":{"renewal_info":{"suggestedWindow":{"start":"2030-01-01T00:00:00Z","end":"2030-01-02T00:00:00Z"},"_selectedTime":"2030-01-01T06:00:00Z"}}}`)
	status := []byte(`{"window":0.5,"names":{"example.org":{"last_error":"HTTP 503 the CA is down","last_error_at":"2030-01-01T00:00:00Z"},"pending.example.org":{"last_error":"no such host","last_error_at":"2030-01-01T00:00:00Z"}}}`)

	cases := []struct {
		desc     string
		meta     []byte
		wantNext time.Time
		ari      bool
	}{
		{"ARI selected time wins", meta, time.Date(2030, 1, 1, 6, 0, 0, 0, time.UTC), true},
		{"lifetime fraction without ARI", []byte(`{}`), leaf.Leaf.NotAfter.Add(-leaf.Leaf.NotAfter.Sub(leaf.Leaf.NotBefore) / 2), false},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			dir := t.TempDir()
			writeStore(t, dir, crt, tc.meta, status)
			infos, err := Inventory(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(infos) != 2 {
				t.Fatalf("got %d entries, want the certificate and the pending name: %+v", len(infos), infos)
			}
			c := infos[0]
			if !c.NextRenewal.Equal(tc.wantNext) || c.RenewalFromARI != tc.ari {
				t.Errorf("next renewal: got %v (ARI %v), want %v (ARI %v)", c.NextRenewal, c.RenewalFromARI, tc.wantNext, tc.ari)
			}
			if c.LastError != "HTTP 503 the CA is down" || c.Issuer == "" || !c.NotAfter.Equal(leaf.Leaf.NotAfter) {
				t.Errorf("got %+v", c)
			}
			if p := infos[1]; p.Names[0] != "pending.example.org" || p.LastError != "no such host" {
				t.Errorf("pending name: got %+v", p)
			}
		})
	}
}

// FuzzInventory feeds damaged storage files to Inventory: it must report,
// never panic.
func FuzzInventory(f *testing.F) {
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), []byte(`{"issuer_data":{"renewal_info":{}}}`), []byte(`{"names":{"a":{}}}`)) // a PEM block that is not DER
	f.Add([]byte(""), []byte("{"), []byte("null"))                                                                                                               // empty and truncated JSON
	f.Add([]byte("not pem"), []byte(`{"issuer_data":{"renewal_info":{"_selectedTime":"yesterday"}}}`), []byte(`{"window":7,"names":{"x":null}}`))                // bad time, window out of range, null entry
	f.Fuzz(func(t *testing.T, crt, meta, status []byte) {
		dir := t.TempDir()
		writeStore(t, dir, crt, meta, status)
		infos, err := Inventory(dir)
		if err != nil {
			return
		}
		var out strings.Builder
		WriteInventory(&out, infos, time.Now())
	})
}
