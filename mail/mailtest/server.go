// Package mailtest is a real SMTP server for tests (emersion/go-smtp): STARTTLS with a
// self-signed certificate, AUTH PLAIN after TLS only, and every message it accepts kept in
// memory for the test to read. It can be told to refuse messages, as a relay that is down
// would. It is never used by the daemon.
package mailtest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Received is one message the server accepted.
type Received struct {
	From     string
	To       []string
	Data     []byte // the message as sent: headers and body
	TLS      bool   // the session was encrypted
	AuthUser string // the user it authenticated as
}

// Header returns a header of the message.
func (r Received) Header(name string) string {
	m, err := mail.ReadMessage(bytes.NewReader(r.Data))
	if err != nil {
		return ""
	}
	dec := new(mime.WordDecoder)
	v := m.Header.Get(name)
	if d, err := dec.DecodeHeader(v); err == nil {
		return d
	}
	return v
}

// Body returns the message's body, decoded from quoted-printable or base64.
func (r Received) Body() string {
	m, err := mail.ReadMessage(bytes.NewReader(r.Data))
	if err != nil {
		return ""
	}
	var rd io.Reader = m.Body
	switch strings.ToLower(m.Header.Get("Content-Transfer-Encoding")) {
	case "quoted-printable":
		rd = quotedprintable.NewReader(m.Body)
	case "base64":
		rd = base64.NewDecoder(base64.StdEncoding, m.Body)
	}
	b, _ := io.ReadAll(rd)
	return string(b)
}

// Server is a running SMTP server.
type Server struct {
	// Addr is host:port to send to.
	Addr string
	// CertPEM is the server's self-signed certificate, for the client to trust.
	CertPEM []byte
	// User and Password are the credentials AUTH PLAIN accepts.
	User, Password string

	srv     *smtp.Server
	failing atomic.Bool
	// hang, while not nil, holds every message's DATA until it is closed.
	hang   atomic.Pointer[chan struct{}]
	mu     sync.Mutex
	msgs   []Received
	notify chan struct{}
	held   atomic.Int32
}

// Start listens on a loopback port and serves until Close.
func Start(user, password string) (*Server, error) {
	certPEM, cert, err := selfSigned()
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{Addr: l.Addr().String(), CertPEM: certPEM, User: user, Password: password, notify: make(chan struct{}, 1)}
	s.srv = smtp.NewServer(backend{s})
	s.srv.Domain = "localhost"
	s.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	s.srv.ReadTimeout = 30 * time.Second
	s.srv.WriteTimeout = 30 * time.Second
	s.srv.MaxMessageBytes = 1 << 20
	s.srv.AllowInsecureAuth = false // AUTH only after STARTTLS
	go func() { _ = s.srv.Serve(l) }()
	return s, nil
}

// Close stops the server, releasing any message Hang holds.
func (s *Server) Close() error {
	if h := s.hang.Swap(nil); h != nil {
		close(*h)
	}
	return s.srv.Close()
}

// SetFailing makes the server refuse every message with a temporary error (451) while on.
func (s *Server) SetFailing(on bool) { s.failing.Store(on) }

// Hang makes the server hold every message's DATA without answering, as a relay that
// hangs would, until the returned function is called.
func (s *Server) Hang() (release func()) {
	ch := make(chan struct{})
	p := &ch
	s.hang.Store(p)
	return func() {
		// Whoever takes it out of s.hang closes it: this, or Close.
		if s.hang.CompareAndSwap(p, nil) {
			close(ch)
		}
	}
}

// Hanging reports whether a message is being held by Hang now.
func (s *Server) Hanging() bool { return s.held.Load() > 0 }

// Messages returns what the server accepted so far.
func (s *Server) Messages() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Received(nil), s.msgs...)
}

// Wait returns once at least n messages arrived, or fails after timeout.
func (s *Server) Wait(n int, timeout time.Duration) ([]Received, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		if m := s.Messages(); len(m) >= n {
			return m, nil
		}
		select {
		case <-s.notify:
		case <-deadline.C:
			return s.Messages(), fmt.Errorf("mailtest: %d messages after %s, want %d", len(s.Messages()), timeout, n)
		}
	}
}

type backend struct{ s *Server }

func (b backend) NewSession(c *smtp.Conn) (smtp.Session, error) { return &session{s: b.s, c: c}, nil }

type session struct {
	s    *Server
	c    *smtp.Conn
	user string
	from string
	to   []string
}

func (ss *session) AuthMechanisms() []string { return []string{sasl.Plain} }

func (ss *session) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if username != ss.s.User || password != ss.s.Password {
			return errors.New("invalid credentials")
		}
		ss.user = username
		return nil
	}), nil
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if ss.user == "" {
		return smtp.ErrAuthRequired
	}
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if h := ss.s.hang.Load(); h != nil {
		ss.s.held.Add(1)
		<-*h
		ss.s.held.Add(-1)
	}
	if ss.s.failing.Load() {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "relay out of order (test)"}
	}
	_, tlsOn := ss.c.TLSConnectionState()
	ss.s.mu.Lock()
	ss.s.msgs = append(ss.s.msgs, Received{From: ss.from, To: ss.to, Data: b, TLS: tlsOn, AuthUser: ss.user})
	ss.s.mu.Unlock()
	select {
	case ss.s.notify <- struct{}{}:
	default:
	}
	return nil
}

func (ss *session) Reset()        { ss.from, ss.to = "", nil }
func (ss *session) Logout() error { return nil }

// selfSigned makes a certificate for 127.0.0.1 and localhost.
func selfSigned() ([]byte, tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "mailtest"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return certPEM, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
