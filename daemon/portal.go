package daemon

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"path/filepath"

	"dsh/control"
	"dsh/portal"
	"dsh/token"
)

// startPortal listens on the portal address and serves it until ctx ends. With a
// certificate from files it is used at once; otherwise the store's own certificate is
// loaded at each unseal (see usePortalCert).
func (d *Daemon) startPortal(ctx context.Context) (<-chan error, error) {
	p, err := portal.New(d, portal.Options{Log: d.log.With("part", "portal"), Limits: d.limits, Airlock: d})
	if err != nil {
		return nil, err
	}
	if d.cfg.TLSCert != "" || d.cfg.TLSKey != "" {
		c, err := tls.LoadX509KeyPair(d.cfg.TLSCert, d.cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("portal: --tls-cert/--tls-key: %w", err)
		}
		p.SetCertificate(&c)
	}
	l, err := net.Listen("tcp", d.cfg.PortalAddr)
	if err != nil {
		return nil, fmt.Errorf("portal: listen on %s: %w", d.cfg.PortalAddr, err)
	}
	d.portal = p
	d.portalAddr = l.Addr().String()
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, l) }()
	return done, nil
}

// usePortalCert gives the portal the store's certificate (made at init, or now for a
// store older than the portal) and writes its public half next to the data. Called with
// d.mu held for writing, at unseal.
func (d *Daemon) usePortalCert(ctx context.Context) {
	if d.portal == nil {
		return
	}
	defer d.portal.SetSealed(false)
	if d.cfg.TLSCert != "" {
		return
	}
	c, certPEM, _, err := portal.StoredCert(ctx, d.parts.KV, portal.DefaultHosts())
	if err != nil {
		d.log.Error("portal: no certificate; browsers see a temporary one", "err", err)
		return
	}
	if err := portal.WriteCertFile(filepath.Join(d.cfg.DataDir, portal.CertFile), certPEM); err != nil {
		d.log.Warn("portal: certificate not written for browsers to trust", "err", err)
	}
	d.portal.SetCertificate(&c)
}

// dropPortalCert makes the portal say "sealed" (called at seal): its sign-ins end and its
// uploads in progress are forgotten.
func (d *Daemon) dropPortalCert() {
	if d.portal == nil {
		return
	}
	d.portal.SetSealed(true)
	if d.cfg.TLSCert == "" {
		d.portal.SetCertificate(nil)
	}
}

// UIDOf returns the uid of a user ID, for a portal sign-in.
func (d *Daemon) UIDOf(user string) (int, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.acl == nil {
		return 0, false
	}
	u, ok := d.acl.UserByID(user)
	return u.UID, ok
}

// TouchSession reports whether session id of uid (a portal sign-in's) is live, and marks it
// used so that it does not end for being idle. The portal asks on every request of the
// sign-in (and as an upload's bytes arrive), so it is one lookup. false while sealed.
func (d *Daemon) TouchSession(uid int, id uint64) bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.tok != nil && d.tok.Sessions().Touch(uid, id)
}

// SetQuestions replaces the caller's security questions after checking all factors.
func (d *Daemon) SetQuestions(ctx context.Context, c control.Caller, password, pin []byte, code string, qs [3]control.Question) error {
	return d.withTokens(ctx, c, func(ctx context.Context, t *token.Service) error {
		return t.SetQuestions(ctx, c.UID, password, pin, code, tokenQuestions(qs))
	})
}

// Questions returns the texts of the caller's security questions.
func (d *Daemon) Questions(ctx context.Context, c control.Caller) ([3]string, error) {
	var out [3]string
	err := d.withTokens(ctx, c, func(ctx context.Context, t *token.Service) (err error) {
		out, err = t.Questions(ctx, c.UID)
		return err
	})
	return out, err
}

// portalURL is the portal's address as a browser takes it, or "off".
func (d *Daemon) portalURL() string {
	if d.portalAddr == "" {
		return "off"
	}
	return "https://" + d.portalAddr + "/"
}
