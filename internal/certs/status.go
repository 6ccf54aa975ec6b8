package certs

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"gatehouse/internal/atomicfile"
)

// statusFile, in <data>/acme, keeps what storage does not: the last error
// per name and the renewal window, so `gatehouse certs` can show them from
// the data directory alone.
const statusFile = "gatehouse-status.json"

type statusData struct {
	Window float64                `json:"window"`
	Names  map[string]*nameStatus `json:"names"`
}

type nameStatus struct {
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	LastSuccess time.Time `json:"last_success,omitzero"`
}

// statusBook records issuance outcomes and writes them through to disk.
type statusBook struct {
	path string
	mu   sync.Mutex
	data statusData
}

func openStatus(dir string) *statusBook {
	b := &statusBook{path: filepath.Join(dir, statusFile)}
	b.data = readStatus(b.path)
	return b
}

func readStatus(path string) statusData {
	var d statusData
	if raw, err := os.ReadFile(path); err == nil {
		_ = json.Unmarshal(raw, &d) // a damaged file only loses old errors
	}
	if d.Names == nil {
		d.Names = map[string]*nameStatus{}
	}
	for n, s := range d.Names {
		if s == nil {
			delete(d.Names, n)
		}
	}
	return d
}

func (b *statusBook) update(f func(*statusData)) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	f(&b.data)
	raw, err := json.MarshalIndent(&b.data, "", "  ")
	if err == nil {
		err = atomicfile.Write(b.path, raw, 0o600)
	}
	_ = err // status is advisory; issuance does not depend on it
}

func (b *statusBook) entry(d *statusData, name string) *nameStatus {
	s := d.Names[name]
	if s == nil {
		s = &nameStatus{}
		d.Names[name] = s
	}
	return s
}

func (b *statusBook) setWindow(w float64) {
	b.update(func(d *statusData) { d.Window = w })
}

func (b *statusBook) failed(name, msg string) {
	b.update(func(d *statusData) {
		s := b.entry(d, name)
		s.LastError, s.LastErrorAt = msg, time.Now().UTC()
	})
}

func (b *statusBook) succeeded(name string) {
	b.update(func(d *statusData) {
		s := b.entry(d, name)
		s.LastError, s.LastErrorAt, s.LastSuccess = "", time.Time{}, time.Now().UTC()
	})
}

// CertInfo describes one certificate gatehouse holds.
type CertInfo struct {
	Names       []string  `json:"names"`
	Source      string    `json:"source"` // acme or internal
	Issuer      string    `json:"issuer"`
	CA          string    `json:"ca,omitempty"` // the ACME directory's storage key
	NotAfter    time.Time `json:"not_after,omitzero"`
	NextRenewal time.Time `json:"next_renewal,omitzero"`
	// RenewalFromARI is true when NextRenewal is the CA's choice (ARI).
	RenewalFromARI bool      `json:"renewal_from_ari,omitempty"`
	LastError      string    `json:"last_error,omitempty"`
	LastErrorAt    time.Time `json:"last_error_at,omitzero"`
}

// Status lists the certificates in the Manager's data directory.
func (m *Manager) Status() ([]CertInfo, error) { return Inventory(m.DataDir) }

// Inventory lists every certificate kept in a data directory: ACME
// certificates with their next renewal and last error (names that have
// never been issued appear with their error only), and the local CA root.
func Inventory(dataDir string) ([]CertInfo, error) {
	var out []CertInfo
	acmeDir := filepath.Join(dataDir, "acme")
	status := readStatus(filepath.Join(acmeDir, statusFile))
	window := status.Window
	if window <= 0 || window >= 1 {
		window = DefaultRenewalWindow
	}
	seen := map[string]bool{}
	certsDir := filepath.Join(acmeDir, "certificates")
	cas, err := os.ReadDir(certsDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading %s: %w", certsDir, err)
	}
	for _, ca := range cas {
		sites, _ := os.ReadDir(filepath.Join(certsDir, ca.Name()))
		for _, site := range sites {
			dir := filepath.Join(certsDir, ca.Name(), site.Name())
			info, err := readStored(dir, site.Name(), window)
			if err != nil {
				out = append(out, CertInfo{Names: []string{site.Name()}, Source: "acme", CA: ca.Name(), LastError: err.Error()})
				continue
			}
			info.CA = ca.Name()
			for _, n := range info.Names {
				if s := status.Names[n]; s != nil && s.LastError != "" && s.LastErrorAt.After(info.LastErrorAt) {
					info.LastError, info.LastErrorAt = s.LastError, s.LastErrorAt
				}
				seen[n] = true
			}
			out = append(out, info)
		}
	}
	var pending []string
	for n, s := range status.Names {
		if !seen[n] && s.LastError != "" {
			pending = append(pending, n)
		}
	}
	sort.Strings(pending)
	for _, n := range pending {
		s := status.Names[n]
		out = append(out, CertInfo{Names: []string{n}, Source: "acme", LastError: s.LastError, LastErrorAt: s.LastErrorAt})
	}
	if raw, err := os.ReadFile(filepath.Join(dataDir, "ca", rootCertFile)); err == nil {
		if c := parseFirstCert(raw); c != nil {
			out = append(out, CertInfo{Names: []string{c.Subject.CommonName}, Source: "internal", Issuer: "self-signed (local CA root)", NotAfter: c.NotAfter})
		}
	}
	return out, nil
}

// storedMeta is the part of certmagic's <name>.json read here.
type storedMeta struct {
	IssuerData struct {
		RenewalInfo *struct {
			SuggestedWindow struct {
				Start time.Time `json:"start"`
				End   time.Time `json:"end"`
			} `json:"suggestedWindow"`
			SelectedTime time.Time `json:"_selectedTime"`
		} `json:"renewal_info"`
	} `json:"issuer_data"`
}

func readStored(dir, name string, window float64) (CertInfo, error) {
	raw, err := os.ReadFile(filepath.Join(dir, name+".crt"))
	if err != nil {
		return CertInfo{}, fmt.Errorf("reading certificate: %w", err)
	}
	leaf := parseFirstCert(raw)
	if leaf == nil {
		return CertInfo{}, errors.New("stored certificate does not parse")
	}
	info := CertInfo{
		Names:    leaf.DNSNames,
		Source:   "acme",
		Issuer:   leaf.Issuer.CommonName,
		NotAfter: leaf.NotAfter,
	}
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	info.NextRenewal = leaf.NotAfter.Add(-time.Duration(float64(life) * window))
	var meta storedMeta
	if raw, err := os.ReadFile(filepath.Join(dir, name+".json")); err == nil && json.Unmarshal(raw, &meta) == nil {
		if ri := meta.IssuerData.RenewalInfo; ri != nil {
			switch {
			case !ri.SelectedTime.IsZero():
				info.NextRenewal, info.RenewalFromARI = ri.SelectedTime, true
			case !ri.SuggestedWindow.Start.IsZero():
				info.NextRenewal, info.RenewalFromARI = ri.SuggestedWindow.Start, true
			}
		}
	}
	return info, nil
}

func parseFirstCert(raw []byte) *x509.Certificate {
	b, _ := pem.Decode(raw)
	if b == nil {
		return nil
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil
	}
	return c
}

// WriteInventory prints certificates as a table, the way `gatehouse certs`
// shows them.
func WriteInventory(w io.Writer, infos []CertInfo, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMES\tSOURCE\tISSUER\tNOT AFTER\tNEXT RENEWAL\tLAST ERROR")
	for _, c := range infos {
		issuer := c.Issuer
		if issuer == "" {
			issuer = "-"
		}
		notAfter, next := "-", "-"
		if !c.NotAfter.IsZero() {
			notAfter = c.NotAfter.UTC().Format(time.RFC3339)
			if c.NotAfter.Before(now) {
				notAfter += " (expired)"
			}
		}
		if !c.NextRenewal.IsZero() {
			next = c.NextRenewal.UTC().Format(time.RFC3339)
			if c.RenewalFromARI {
				next += " (ARI)"
			}
		}
		lastErr := "-"
		if c.LastError != "" {
			lastErr = c.LastErrorAt.UTC().Format(time.RFC3339) + " " + oneLine(c.LastError)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", strings.Join(c.Names, ","), c.Source, issuer, notAfter, next, lastErr)
	}
	return tw.Flush()
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
