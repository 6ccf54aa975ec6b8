package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"gatehouse/internal/atomicfile"
)

// LocalCA is gatehouse's own certificate authority: an ECDSA P-256 root made
// once and kept in the data directory, which signs short-lived leaf
// certificates for sites whose TLS is internal. Users trust the root once
// (`gatehouse ca` prints it) and every internal site is then verified.
type LocalCA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	key     crypto.Signer
}

// LeafLifetime is how long internal leaf certificates are valid. Leaves are
// renewed in memory when a third of it is left.
const LeafLifetime = 90 * 24 * time.Hour

const (
	rootCertFile = "root.crt"
	rootKeyFile  = "root.key"
)

// LoadOrCreateCA reads the root from dir, creating it (and dir) when absent.
func LoadOrCreateCA(dir string) (*LocalCA, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, rootCertFile))
	if errors.Is(err, fs.ErrNotExist) {
		return createCA(dir)
	}
	if err != nil {
		return nil, fmt.Errorf("reading local CA: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, rootKeyFile))
	if err != nil {
		return nil, fmt.Errorf("reading local CA key: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("local CA in %s is damaged (%v): move the folder aside and a new CA is made", dir, err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("parsing local CA: %w", err)
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("local CA key in %s cannot sign", dir)
	}
	return &LocalCA{Cert: cert, CertPEM: certPEM, key: signer}, nil
}

func createCA(dir string) (*LocalCA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := randSerial()
	if err != nil {
		return nil, err
	}
	// The name carries a short fingerprint of the key, so roots made on
	// different machines are told apart in a trust store.
	pub, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	sum := sha256.Sum256(pub)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: fmt.Sprintf("Gatehouse Local CA %X", sum[:4]), Organization: []string{"Gatehouse"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, _ := x509.ParseCertificate(der)
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	if err := atomicfile.Write(filepath.Join(dir, rootKeyFile), keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := atomicfile.Write(filepath.Join(dir, rootCertFile), certPEM, 0o644); err != nil {
		return nil, err
	}
	return &LocalCA{Cert: cert, CertPEM: certPEM, key: key}, nil
}

// Issue signs a new leaf for names (DNS names or IP addresses).
func (ca *LocalCA) Issue(names []string, lifetime time.Duration) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := randSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	notAfter := now.Add(lifetime)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    now.Add(-5 * time.Minute), // tolerate small clock skew
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("signing leaf for %s: %w", names[0], err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return &tls.Certificate{
		Certificate: [][]byte{der, ca.Cert.Raw},
		PrivateKey:  key,
		Leaf:        leaf,
	}, nil
}

func randSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
}
