// Package daemon wires the parts of dsh into the running service: it holds the sealed or
// unsealed store, serves the control socket and the metrics endpoint, and answers each
// control request with the authority of the caller's uid. It must never hand out a key,
// and never act on a request it could not write to the audit log.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"dsh/acl"
	"dsh/airlock"
	"dsh/audit"
	"dsh/content"
	"dsh/control"
	dshfs "dsh/fs"
	"dsh/internal/secmem"
	"dsh/kv"
	"dsh/limit"
	"dsh/meta"
	"dsh/metrics"
	"dsh/portal"
	"dsh/scan"
	"dsh/store"
	"dsh/token"
	"dsh/vault"

	"github.com/prometheus/client_golang/prometheus"
)

// Config is what `dsh serve` was told.
type Config struct {
	DataDir     string
	Socket      string
	MetricsAddr string
	// Passphrase unseals the store at start when not empty; the daemon wipes it after use.
	Passphrase []byte
	Pprof      bool
	// Auth tunes the token service: session lifetime, lockout, ICE validity.
	Auth token.Options
	// GroupDir, when set, is where the Group (S:) tree is mounted.
	GroupDir string
	// ArrivalsDir, when set, is where the Arrivals (Q:) tree is mounted.
	ArrivalsDir string
	// ArrivalsRetention is how long an arrival is kept; 0 means 720h.
	ArrivalsRetention time.Duration
	// UploadIdle is how long a dsh upload's body may send nothing before it is cut off;
	// 0 means control.DefaultStreamIdle.
	UploadIdle time.Duration
	// GCInterval is how often replaced objects are collected; 0 means 30 s.
	GCInterval time.Duration
	Log        *slog.Logger
	// PortalAddr, when set, is where the HTTPS portal listens.
	PortalAddr string
	// TLSCert and TLSKey are the portal's certificate and key files; empty means the
	// store's self-signed certificate.
	TLSCert, TLSKey string
	// SMBConf, when set, is the smb.conf of the Samba in front of the trees, whose passdb
	// `dsh smb password` writes.
	SMBConf string
	// FreeSpaceFloor is the free disk space below which file contents get ENOSPC, kept for
	// the metadata and the audit log; 0 means store.DefaultFreeSpaceFloor, negative none.
	FreeSpaceFloor int64
	// Watchdog, when set, is told of every tree mounted, so that it can unmount it should
	// the daemon die without doing so itself.
	Watchdog interface{ Watch(dir string) error }
	// Ready, when set, is called once the socket, metrics endpoint and portal are listening.
	Ready func(socket, metricsAddr string)
	// Clamd is clamd's socket, the malware gate of uploads and of egress; without it every
	// upload and egress request is refused (fail closed).
	Clamd scan.ClamdOptions
	// ClamdSocket is where clamd listens.
	ClamdSocket string
	// EgressWindow is how long approved files may be downloaded; 0 means 7 days.
	EgressWindow time.Duration
	// Mail, when set, is the SMTP relay for notices, enrolment codes and token links.
	Mail *MailConfig
}

// Daemon is one running dsh service.
type Daemon struct {
	cfg     Config
	log     *slog.Logger
	lock    *store.Lock
	reg     *prometheus.Registry
	metrics *metrics.Metrics
	limits  *metrics.Limits
	started time.Time
	// kdf is the memory budget of Argon2id checks, for the socket and the portal together;
	// it outlives seal and unseal.
	kdf *limit.Budget
	// refusals is the unsealed store's audit log behind its Coalescer (nil while sealed),
	// for refusals recorded outside a request's hold on the store.
	refusals atomic.Pointer[audit.Coalescer]

	// mu guards parts: requests hold it shared for as long as they use the store, seal and
	// unseal hold it exclusively, so sealing waits for requests in flight and none starts
	// on a store that is being closed.
	mu     sync.RWMutex
	parts  *store.Parts
	aud    *audit.Coalescer // every part's audit log: refusals past a burst coalesced
	acl    *acl.Store
	wrap   *keyWrapper
	tok    *token.Service
	sealer *token.KeySealer

	// sealing is closed when the store is sealed, ending the readers of the audit log
	// that outlive the lock (AuditShow); a new one is made at each unseal.
	sealing chan struct{}

	// group and arrivals are the mounted S: and Q: trees, nil when not configured.
	group    *dshfs.Group
	arrivals *dshfs.Group

	// portal is the HTTPS site, nil when not configured.
	portal     *portal.Server
	portalAddr string

	// The airlock (airlock.go): the scanner (nil without --clamd), its metrics, and the
	// egress requests while unsealed.
	scanner    *scan.Clamd
	airlockMet *metrics.Airlock
	egress     *airlock.Store
	// mail sends through the operator's relay; nil when none is configured.
	mail *mailer
}

// groupEntryTimeout is how long the kernel may keep a name inside a share of the Group
// tree without asking again. Names there change only through the mount itself (the daemon
// never adds, moves or removes a name of a share on its own), so the kernel's name cache
// never goes stale. A cached name is no way in for a uid that may not see the share: every
// walk passes the share's own name at the root, which is never cached (fs/root.go), and
// every operation on an inode checks the caller again. Attributes are never cached.
// Arrivals keeps a short timeout: its sweeper and uploads change names by themselves.
const groupEntryTimeout = time.Hour

// The daemon's memory budget is 256 MiB resident (cmd/dsh keeps Go's heap under 192 MiB).
// Of that, Badger's tables and caches take about 80 MiB once unsealed; Argon2id checks get
// kdfBudgetKiB (one password check, 64 MiB, beside one PIN check, 19 MiB); unflushed write
// data and read-ahead share the rest, bounded in content/ and fs/.
const (
	MemoryBudget = 256 << 20
	kdfBudgetKiB = 96 * 1024
	// kdfWait is how long a credential check waits for its share of kdfBudgetKiB before
	// the caller is told the daemon is busy.
	kdfWait = 10 * time.Second
)

// New takes the data folder and prepares the daemon; Run starts it.
func New(cfg Config) (*Daemon, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	lock, err := store.LockDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	reg := metrics.NewRegistry()
	m, err := metrics.New(reg)
	if err != nil {
		lock.Release()
		return nil, err
	}
	lim, err := metrics.NewLimits(reg)
	if err != nil {
		lock.Release()
		return nil, err
	}
	m.VaultSealed.Set(1)
	am, err := metrics.NewAirlock(reg)
	if err != nil {
		lock.Release()
		return nil, err
	}
	d := &Daemon{cfg: cfg, log: cfg.Log, lock: lock, reg: reg, metrics: m, limits: lim, airlockMet: am, started: time.Now(),
		kdf: limit.NewBudget(kdfBudgetKiB, kdfWait)}
	if cfg.ClamdSocket != "" {
		d.scanner = scan.NewClamd(cfg.ClamdSocket, cfg.Clamd)
	} else {
		cfg.Log.Warn("no malware scanner (--clamd SOCKET): every upload and egress request is refused")
	}
	if d.mail, err = d.newMailer(cfg.Mail); err != nil {
		lock.Release()
		return nil, err
	}
	return d, nil
}

// Run serves until ctx ends, then shuts down cleanly: the socket is removed, the store
// sealed (Badger closed, audit log flushed, keys wiped) and the data folder released.
func (d *Daemon) Run(ctx context.Context) error {
	defer d.lock.Release()
	ms, err := metrics.Serve(d.cfg.MetricsAddr, d.reg, metrics.ServeOptions{Pprof: d.cfg.Pprof})
	if err != nil {
		return err
	}
	defer ms.Close()
	if d.cfg.GroupDir != "" {
		d.group = dshfs.New(dshfs.Options{DataDir: d.cfg.DataDir, EntryTimeout: groupEntryTimeout, GCInterval: d.cfg.GCInterval, Log: d.log, Metrics: d.metrics})
		if err := d.group.Mount(d.cfg.GroupDir); err != nil {
			return err
		}
		d.watch(d.cfg.GroupDir)
		defer func() {
			if err := d.group.Unmount(); err != nil {
				d.log.Error("unmount the Group tree", "err", err)
			}
		}()
	}
	if d.cfg.ArrivalsDir != "" {
		opts := dshfs.Options{Tree: acl.Arrivals, Retention: d.cfg.ArrivalsRetention, DataDir: d.cfg.DataDir,
			EntryTimeout: time.Second, GCInterval: d.cfg.GCInterval, Log: d.log, Metrics: d.metrics, Airlock: d.airlockMet}
		if d.scanner != nil {
			opts.Scanner = d.scanner
		}
		d.arrivals = dshfs.New(opts)
		if err := d.arrivals.Mount(d.cfg.ArrivalsDir); err != nil {
			return err
		}
		d.watch(d.cfg.ArrivalsDir)
		defer func() {
			if err := d.arrivals.Unmount(); err != nil {
				d.log.Error("unmount the Arrivals tree", "err", err)
			}
		}()
	}
	l, err := control.Listen(d.cfg.Socket)
	if err != nil {
		return err
	}
	srv := control.NewServer(d, d.log, control.ServerOptions{StreamIdle: d.cfg.UploadIdle, Limits: d.limits, Refused: d.limitRefused})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	// runCtx bounds the session sweeper and the portal; stop ends both and waits for the
	// portal's requests (a tus write may be storing), on every way out, before shutdown.
	runCtx, cancelRun := context.WithCancel(context.Background())
	var portalDone <-chan error
	stop := func() {
		cancelRun()
		if portalDone != nil {
			<-portalDone
		}
	}
	defer cancelRun()
	ttl := d.cfg.Auth.SessionTTL
	if ttl <= 0 {
		ttl = token.DefaultSessionTTL
	}
	go d.sweepSessions(runCtx, sweepInterval(ttl))
	go d.sweepEgress(runCtx, egressSweepInterval(d.cfg.EgressWindow))
	go d.keepEpoch(runCtx)
	if d.cfg.PortalAddr != "" {
		if portalDone, err = d.startPortal(runCtx); err != nil {
			d.shutdown(srv)
			return err
		}
	}

	if len(d.cfg.Passphrase) > 0 {
		err := d.unseal(d.cfg.Passphrase, -1)
		clear(d.cfg.Passphrase)
		if err != nil {
			stop()
			d.shutdown(srv)
			return fmt.Errorf("unseal at start with the passphrase file: %w; not starting", err)
		}
	}
	d.log.Info("dsh serving", "socket", d.cfg.Socket, "metrics", "http://"+ms.Addr()+"/metrics", "portal", d.portalURL(), "sealed", d.sealed())
	if d.cfg.Ready != nil {
		d.cfg.Ready(d.cfg.Socket, ms.Addr())
	}
	select {
	case <-ctx.Done():
	case err := <-served:
		if err != nil {
			stop()
			d.shutdown(srv)
			return err
		}
	case err := <-portalDone:
		portalDone = nil // it has ended
		stop()
		d.shutdown(srv)
		return err
	}
	stop()
	return d.shutdown(srv)
}

// watch tells the watchdog, if any, of a tree mounted on dir.
func (d *Daemon) watch(dir string) {
	if d.cfg.Watchdog == nil {
		return
	}
	if err := d.cfg.Watchdog.Watch(dir); err != nil {
		d.log.Warn("the mount watchdog is not watching a tree", "err", err)
	}
}

func (d *Daemon) shutdown(srv *control.Server) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		d.log.Warn("control socket did not drain", "err", err)
	}
	err := d.seal(-1, "daemon.stop")
	d.log.Info("dsh stopped")
	return err
}

func (d *Daemon) sealed() bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.parts == nil
}

// unseal opens the store; uid is the operator's (-1 for the daemon itself).
func (d *Daemon) unseal(passphrase []byte, uid int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.parts != nil {
		return fmt.Errorf("%w: the store is already unsealed", control.ErrConflict)
	}
	p, err := store.Unseal(d.cfg.DataDir, passphrase, store.Options{Log: d.log, OnIntegrity: d.integrityFailed, FreeSpaceFloor: d.cfg.FreeSpaceFloor})
	if errors.Is(err, vault.ErrWrongPassphrase) {
		d.log.Warn("unseal refused: wrong passphrase", "uid", uid)
		return fmt.Errorf("%w: %w", control.ErrUnauthorized, err)
	}
	if errors.Is(err, store.ErrRollback) || errors.Is(err, kv.ErrIntegrity) {
		d.log.Error("unseal refused: the store's parts do not agree", "err", err)
		return control.WithKind(control.ErrConflict, fmt.Errorf("unseal refused: %w", err))
	}
	if err != nil {
		return err
	}
	if p.AuditRecovered {
		if _, err := p.Audit.Append(context.Background(), audit.Entry{UID: -1, Action: "audit.recovered", Object: "torn final record removed", Result: "ok"}, audit.Durable); err != nil {
			p.Close()
			return fmt.Errorf("audit log: %w", err)
		}
	}
	// Every part records through the Coalescer: a storm of refusals becomes a few records
	// and a summary a minute per uid instead of filling the disk.
	aud := audit.NewCoalescer(p.Audit, audit.CoalesceOptions{OnCoalesced: d.limits.Coalesced})
	closeAll := func() {
		_ = aud.Close(context.Background())
		p.Close()
	}
	wrap := newKeyWrapper(p.Root.Derive(vault.PurposeWrap))
	a, err := acl.New(p.KV, wrap, aud, acl.Options{RequireSession: true})
	if err != nil {
		wrap.wipe()
		closeAll()
		return fmt.Errorf("load accounts and shares: %w", err)
	}
	secretKey := p.Root.Derive(vault.PurposeSecret)
	sealer, err := token.NewKeySealer(&secretKey)
	secretKey.Wipe()
	var tok *token.Service
	if err == nil {
		opts := d.cfg.Auth
		// A portal sign-in's session ends as the web sign-in does.
		opts.PortalIdle, opts.PortalLifetime = portal.IdleTimeout, portal.MaxLifetime
		tok, err = token.New(token.Deps{Store: p.KV, Directory: acl.Accounts{S: a}, Keys: acl.Keys{S: a}, Sealer: sealer,
			Auditor: aud, Metrics: d.metrics, Limits: d.limits, KDF: d.kdf, Notifier: tokenNotifier{d}}, opts)
	}
	if err == nil {
		_, err = p.Audit.Append(context.Background(), audit.Entry{UID: int64(uid), Action: "vault.unseal", Result: "ok"}, audit.Durable)
		if err != nil {
			err = fmt.Errorf("unseal refused, the audit log cannot be written: %w", err)
		}
	}
	if err == nil {
		err = p.Checkpoint(context.Background(), "unseal")
	}
	if err != nil {
		if sealer != nil {
			sealer.Wipe()
		}
		a.Close()
		wrap.wipe()
		closeAll()
		return err
	}
	d.parts, d.aud, d.acl, d.wrap, d.tok, d.sealer = p, aud, a, wrap, tok, sealer
	d.refusals.Store(aud)
	d.startMail(p, aud, a)
	d.sealing = make(chan struct{})
	go d.verifyAudit(p, d.sealing)
	// One namespace store for both trees: it caches inodes, so it must make every change.
	ns := meta.New(p.KV, meta.Options{})
	// One budget for the unflushed writes of both trees (FUSE writers and uploads alike).
	budget := content.NewBudget(0)
	for _, t := range []*dshfs.Group{d.group, d.arrivals} {
		if t == nil {
			continue
		}
		rollover := func(err error) { d.log.Warn("content: a file stays on its content key for now", "err", err) }
		be := &dshfs.Backend{Meta: ns, Content: content.New(p.Blobs, content.Options{Budget: budget, OnRollover: rollover}),
			Blobs: p.Blobs, ACL: a, Sessions: tok.Sessions(), Audit: aud}
		if err := t.Attach(context.Background(), be); err != nil {
			// An unseal that serves half the store is worse than one that fails: the
			// operator is told why, and the store is sealed again.
			err = fmt.Errorf("unseal failed: the %s tree could not start: %w", t.Label(), err)
			d.log.Error("unseal failed", "err", err)
			_, _ = p.Audit.Append(context.Background(), audit.Entry{UID: int64(uid), Action: "vault.unseal", Result: "error", Detail: err.Error()}, audit.Durable)
			if serr := d.sealLocked(uid, "vault.seal"); serr != nil {
				d.log.Error("sealing again after a failed unseal", "err", serr)
			}
			return err
		}
	}
	// When access ends, open files nobody may read any more drop their keys and
	// decrypted data before the command that ended it returns.
	trees := []*dshfs.Group{d.group, d.arrivals}
	tok.Sessions().OnAccessEnd(func() {
		for _, t := range trees {
			if t != nil {
				t.AccessEnded(context.Background())
			}
		}
	})
	d.openAirlock(ns, a, tok)
	d.usePortalCert(context.Background())
	d.metrics.VaultSealed.Set(0)
	if !secmem.Locked() {
		d.log.Warn("keys and plaintext buffers could not all be locked in memory (RLIMIT_MEMLOCK without CAP_IPC_LOCK): they may reach swap; they stay out of core dumps")
	}
	d.log.Info("store unsealed", "uid", uid)
	return nil
}

// seal closes the store and wipes its keys. Sealing is the safe state, so it goes ahead even
// when its audit record cannot be written; that failure is logged.
func (d *Daemon) seal(uid int, action string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.sealLocked(uid, action)
}

// sealLocked is seal with d.mu held.
func (d *Daemon) sealLocked(uid int, action string) error {
	if d.parts == nil {
		if uid >= 0 {
			return fmt.Errorf("%w: the store is already sealed", control.ErrConflict)
		}
		return nil
	}
	// The filesystem stops first (open files are flushed), then every session's keys are
	// wiped.
	for _, t := range []*dshfs.Group{d.group, d.arrivals} {
		if t != nil {
			if err := t.Detach(context.Background()); err != nil {
				d.log.Error("seal: flushing open files", "err", err)
			}
		}
	}
	d.dropPortalCert()
	d.tok.Sessions().EndAll(context.Background())
	d.stopMail()
	d.refusals.Store(nil)
	// The last refusal summaries go before the seal record, which is the log's last.
	if err := d.aud.Close(context.Background()); err != nil {
		d.log.Error("seal: refusal summaries not written", "err", err)
	}
	if _, err := d.parts.Audit.Append(context.Background(), audit.Entry{UID: int64(uid), Action: action, Result: "ok"}, audit.Durable); err != nil {
		d.log.Error("seal: audit record not written", "err", err)
	}
	d.egress = nil
	if err := d.parts.Checkpoint(context.Background(), "seal"); err != nil {
		d.log.Error("seal: the store's epoch did not move", "err", err)
	}
	close(d.sealing)
	d.acl.Close()
	d.wrap.wipe()
	d.sealer.Wipe()
	err := d.parts.Close()
	d.parts, d.aud, d.acl, d.wrap, d.tok, d.sealer = nil, nil, nil, nil, nil, nil
	d.metrics.VaultSealed.Set(1)
	d.log.Info("store sealed", "uid", uid, "by", action)
	if err != nil {
		return fmt.Errorf("seal: %w", err)
	}
	return nil
}

// verifyAudit walks the whole audit log once, in the background, after an unseal, which
// itself checks only what was written since the log's head: damage to older records is
// then still found, counted in dsh_integrity_errors_total and audited, without making the
// unseal wait for a year of records. A seal ends the walk.
func (d *Daemon) verifyAudit(p *store.Parts, sealing <-chan struct{}) {
	rd, err := p.Audit.NewReader()
	if err != nil {
		return
	}
	defer rd.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-sealing:
			cancel()
		case <-ctx.Done():
		}
	}()
	start := time.Now()
	res, err := rd.Verify(ctx)
	switch {
	case ctx.Err() != nil:
	case err != nil:
		d.metrics.IntegrityErrors.Inc()
		d.log.Error("integrity: the audit log is damaged", "err", err)
		_, _ = p.Audit.Append(ctx, audit.Entry{UID: -1, Action: "audit.verify", Result: "error", Detail: err.Error()}, audit.Durable)
	default:
		d.log.Info("audit log verified", "records", res.Records, "took", time.Since(start).Round(time.Millisecond))
	}
}

// integrityFailed counts a part of the store that failed to authenticate (the store has
// audited it).
func (d *Daemon) integrityFailed(class string) {
	d.metrics.IntegrityErrors.Inc()
	d.log.Error("integrity: a stored record failed authentication", "class", class)
}

// Epoch upkeep: how often the metadata learns how far the audit log reached, and how often
// a store that changes moves to a new epoch (store/epoch.go).
const (
	auditNoteInterval = time.Second
	checkpointEvery   = 10 * time.Minute
)

// keepEpoch runs the epoch upkeep while the daemon runs.
func (d *Daemon) keepEpoch(ctx context.Context) {
	var lastSeq uint64
	lastCheckpoint := time.Now()
	every(ctx, auditNoteInterval, func() {
		_ = d.withStore(func(p *store.Parts) error {
			if err := p.NoteAuditHead(ctx); err != nil && ctx.Err() == nil {
				d.log.Warn("integrity: could not note the audit head in the metadata", "err", err)
			}
			seq := p.Audit.Stats().Seq
			if time.Since(lastCheckpoint) >= checkpointEvery && seq != lastSeq {
				if err := p.Checkpoint(ctx, "interval"); err != nil {
					d.log.Error("integrity: checkpoint failed", "err", err)
				}
				lastSeq, lastCheckpoint = p.Audit.Stats().Seq, time.Now()
			}
			return nil
		})
	})
}

// checkpoint moves the store to a new epoch after a change that a rollback of the
// metadata would undo (memberships, accounts). The change stands whatever happens here;
// a failure is logged, and the next checkpoint catches up.
func (d *Daemon) checkpoint(ctx context.Context, why string) {
	_ = d.withStore(func(p *store.Parts) error {
		if err := p.Checkpoint(ctx, why); err != nil {
			d.log.Error("integrity: checkpoint failed", "why", why, "err", err)
		}
		return nil
	})
}

// withStore runs fn with the unsealed store held shared, or fails with ErrUnavailable.
func (d *Daemon) withStore(fn func(p *store.Parts) error) error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.parts == nil {
		return fmt.Errorf("%w: %w", control.ErrUnavailable, vault.ErrSealed)
	}
	return fn(d.parts)
}

// requireOperator lets uid 0 through; anyone else is refused, and the refusal is audited
// when the store is open.
func (d *Daemon) requireOperator(ctx context.Context, c control.Caller, action string) error {
	if c.IsRoot() {
		return nil
	}
	if aud := d.refusals.Load(); aud != nil {
		_, _ = aud.Append(context.WithoutCancel(ctx), audit.Entry{UID: int64(c.UID), Action: action, Result: "denied", Detail: "not the operator"}, audit.Buffered)
	}
	return fmt.Errorf("%w: %s is for the operator (root) only", control.ErrForbidden, action)
}

// limitRefused audits a control request that a per-uid limit turned away or cut off. Like
// every refusal it goes through the Coalescer, so a flood of them stays a few records.
func (d *Daemon) limitRefused(ctx context.Context, c control.Caller, l metrics.Limit) {
	if aud := d.refusals.Load(); aud != nil {
		_, _ = aud.Append(context.WithoutCancel(ctx), audit.Entry{UID: int64(c.UID), Action: "control.limit", Result: "denied", Detail: string(l)}, audit.Buffered)
	}
}
