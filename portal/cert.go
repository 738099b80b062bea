package portal

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"dsh/internal/diskio"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"time"

	"dsh/kv"
)

// certKey holds the portal's self-signed certificate and private key (PEM, one after the
// other) in the store's key-value database, which is encrypted at rest: the private key
// never lands on disk in plaintext.
var certKey = []byte("portal/tls")

// CertFile is the name, inside the data folder, of the public half of the self-signed
// certificate, written so that an operator can hand it to browsers to trust.
const CertFile = "portal-cert.pem"

// certValidity is how long a generated certificate is valid.
const certValidity = 5 * 365 * 24 * time.Hour

// NewSelfSigned returns a new self-signed ECDSA P-256 certificate for hosts (names or IP
// addresses) and its private key, both PEM-encoded.
func NewSelfSigned(hosts []string, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("portal certificate: generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("portal certificate: serial: %w", err)
	}
	tmpl := x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "dsh portal", Organization: []string{"dsh"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		// Not a CA: browsers are told to trust this certificate, and its key (in the
		// daemon's memory) must not be able to vouch for any other site.
		IsCA: false,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, &tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("portal certificate: sign: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("portal certificate: encode key: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	clear(kder)
	return certPEM, keyPEM, nil
}

// DefaultHosts are the names a generated certificate is valid for: the loopback addresses
// the portal listens on by default, and this host's name.
func DefaultHosts() []string {
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil && h != "" {
		hosts = append(hosts, h)
	}
	return hosts
}

// StoredCert returns the certificate kept in st, generating and storing one first when
// there is none (a store made by `dsh init`, or one made before the portal existed).
// created says it was generated now. The public half is returned as PEM for CertFile.
func StoredCert(ctx context.Context, st kv.Store, hosts []string) (cert tls.Certificate, certPEM []byte, created bool, err error) {
	var stored []byte
	err = st.View(ctx, func(tx kv.Txn) error {
		v, err := tx.Get(certKey)
		if errors.Is(err, kv.ErrNotFound) {
			return nil
		}
		stored = v
		return err
	})
	if err != nil {
		return tls.Certificate{}, nil, false, fmt.Errorf("read portal certificate: %w", err)
	}
	if stored == nil {
		c, k, err := NewSelfSigned(hosts, time.Now())
		if err != nil {
			return tls.Certificate{}, nil, false, err
		}
		fresh := append(c, k...)
		clear(k)
		err = st.Update(ctx, func(tx kv.Txn) error {
			// A racing unseal cannot happen (the daemon holds the folder's lock), but an
			// existing value is kept rather than overwritten all the same.
			v, err := tx.Get(certKey)
			if err == nil {
				stored, created = v, false
				return nil
			} else if !errors.Is(err, kv.ErrNotFound) {
				return err
			}
			stored, created = fresh, true
			return tx.Set(certKey, fresh)
		})
		if !created {
			clear(fresh)
		}
		if err != nil {
			clear(stored)
			return tls.Certificate{}, nil, false, fmt.Errorf("store portal certificate: %w", err)
		}
	}
	defer clear(stored)
	certPEM, keyPEM := splitPEM(stored)
	cert, err = tls.X509KeyPair(certPEM, keyPEM)
	clear(keyPEM)
	if err != nil {
		return tls.Certificate{}, nil, false, fmt.Errorf("portal certificate in the store: %w", err)
	}
	return cert, append([]byte(nil), certPEM...), created, nil
}

// splitPEM separates the certificate blocks from the key block of a stored pair.
func splitPEM(b []byte) (certPEM, keyPEM []byte) {
	rest := b
	for {
		var blk *pem.Block
		start := len(b) - len(rest)
		blk, rest = pem.Decode(rest)
		if blk == nil {
			return certPEM, keyPEM
		}
		raw := b[start : len(b)-len(rest)]
		if blk.Type == "CERTIFICATE" {
			certPEM = append(certPEM, raw...)
		} else {
			keyPEM = append(keyPEM, raw...)
		}
	}
}

// WriteCertFile writes the public certificate to path (mode 0644: it is public), replacing
// an older one atomically.
func WriteCertFile(path string, certPEM []byte) error {
	if err := diskio.WriteFileAtomic(path, certPEM, 0o644); err != nil {
		return fmt.Errorf("write portal certificate: %w", err)
	}
	return nil
}
