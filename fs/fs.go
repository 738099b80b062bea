// Package fs is the Group (S:) filesystem of dsh over FUSE: the project shares, each a
// directory tree whose namespace lives in the metadata store (package meta) and whose file
// contents are encrypted objects (package content). It owns the mount, the per-operation
// access check (the caller's session keyring must hold the share's key and the acl must
// allow the operation, on every call, including on handles that are already open), the
// audit records of opens, creates and deletes, and the mapping of errors to errno.
//
// It must never serve a byte to a uid that the acl and its session do not allow at that
// moment, never let the kernel cache something for one uid that another uid would then be
// shown, and never return data that failed authentication.
package fs

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"dsh/acl"
	"dsh/audit"
	"dsh/blob"
	"dsh/content"
	"dsh/meta"
	"dsh/metrics"
	"dsh/scan"
	"dsh/token"
)

// Backend is what the tree serves from while the store is unsealed. The daemon attaches
// one at unseal and detaches it at seal; while none is attached every root is empty.
type Backend struct {
	Meta     *meta.Store
	Content  *content.Store
	Blobs    blob.Store
	ACL      *acl.Store
	Sessions *token.Sessions
	Audit    audit.Appender

	layouts layoutCache // checked layouts of files with patches (patches.go)
}

// Options tune a Group.
type Options struct {
	// Tree is which drive this is: acl.Group (S:, the default) or acl.Arrivals (Q:).
	Tree acl.Tree
	// Retention is how long a file stays in Arrivals after it arrived; 0 means 720h.
	Retention time.Duration
	// DataDir is where the store lives; statfs reports its disk's free space.
	DataDir string
	// EntryTimeout is how long the kernel may cache a name inside a share (or an Arrivals
	// folder). The names at the root are never cached: they are the gate every walk
	// passes (see rootNode.Lookup). Failed lookups are never cached, since the root shows
	// each uid different names. A long timeout is right only for a tree whose names change
	// only through the mount (the Group tree); Arrivals changes names by itself (uploads,
	// the retention sweep) and keeps a short one.
	EntryTimeout time.Duration
	// GCInterval is how often unreferenced objects are collected; 0 means 30 s.
	GCInterval time.Duration
	Log        *slog.Logger
	Metrics    *metrics.Metrics
	// Scanner is the malware gate of uploads into Arrivals (ingestscan.go): nothing is
	// published that it did not call clean. Without one, every upload is refused.
	Scanner scan.Scanner
	// Airlock counts scans and quarantined files; nil counts nothing.
	Airlock *metrics.Airlock
}

// Group is one mounted tree: S: (the project shares) or Q: (Arrivals, with one folder per
// user, named by the user ID, that only its owner sees; inbound-only). Both keep their
// namespace in meta and their contents in content; they differ in which key opens a
// folder and in what the acl allows.
type Group struct {
	opts Options
	log  *slog.Logger
	be   atomic.Pointer[Backend]

	met   *metrics.Metrics
	label metrics.Tree
	tree  *metrics.TreeMetrics
	ops   map[string]*metrics.OpMetrics

	files fileTable
	// uploads are the open contents of resumable uploads into Arrivals (upload.go).
	uploads uploadFiles

	// gcStop ends the collector of the attached backend.
	gcMu   sync.Mutex
	gcStop context.CancelFunc
	gcDone chan struct{}

	server *fuse.Server
	dir    string
	// mountedAt is when the tree was mounted: the times its root shows.
	mountedAt time.Time
}

// New returns an unmounted Group.
func New(opts Options) *Group {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.GCInterval <= 0 {
		opts.GCInterval = 30 * time.Second
	}
	if opts.Tree != acl.Arrivals {
		opts.Tree = acl.Group
	}
	if opts.Retention <= 0 {
		opts.Retention = DefaultRetention
	}
	g := &Group{opts: opts, log: opts.Log, met: opts.Metrics, ops: map[string]*metrics.OpMetrics{}, label: metrics.TreeGroup}
	if opts.Tree == acl.Arrivals {
		g.label = metrics.TreeArrivals
	}
	g.files.init()
	if g.met != nil {
		g.tree = g.met.Tree(g.label)
		for _, op := range opNames {
			g.ops[op] = g.met.Op(g.label, op)
		}
	}
	return g
}

// Label names the tree ("group" or "arrivals"), for messages.
func (g *Group) Label() string { return string(g.label) }

// opNames are the FUSE operations counted in dsh_fuse_operations_total; a fixed set, so
// the metric's labels stay bounded.
var opNames = []string{"lookup", "getattr", "setattr", "open", "create", "read", "write", "flush",
	"fsync", "release", "mkdir", "rmdir", "unlink", "rename", "link", "symlink", "readlink",
	"readdir", "xattr", "statfs", "access", "mknod", "fallocate"}

// Attach starts serving from be: orphans of an earlier run are reaped and the collector of
// unreferenced objects starts.
func (g *Group) Attach(ctx context.Context, be *Backend) error {
	if n, err := be.Meta.ReapAll(ctx); err != nil {
		return fmt.Errorf("group tree: reap orphans: %w", err)
	} else if n > 0 {
		g.log.Info("group tree: reaped files deleted while open before a restart", "files", n)
	}
	if g.opts.Tree == acl.Arrivals {
		if n, err := g.cleanIncoming(ctx, be); err != nil {
			return fmt.Errorf("arrivals: remove interrupted uploads: %w", err)
		} else if n > 0 {
			g.log.Info("arrivals: removed uploads interrupted before a restart", "files", n)
		}
		g.countQuarantined(ctx, be)
	}
	started := time.Now()
	g.be.Store(be)
	gcCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	g.gcMu.Lock()
	g.gcStop, g.gcDone = stop, done
	g.gcMu.Unlock()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		g.collect(gcCtx, be, started)
	}()
	if g.opts.Tree == acl.Arrivals {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.retain(gcCtx, be)
		}()
	}
	go func() {
		wg.Wait()
		close(done)
	}()
	return nil
}

// Detach stops serving: open files are flushed and closed, uploads in progress are closed
// (they fail with ErrSealed from then on), and from then on every
// operation fails (handles with EACCES) and the root is empty. It returns the first
// error met while flushing; data that could not be flushed is logged, never silently lost.
func (g *Group) Detach(ctx context.Context) error {
	be := g.be.Swap(nil)
	g.gcMu.Lock()
	stop, done := g.gcStop, g.gcDone
	g.gcStop, g.gcDone = nil, nil
	g.gcMu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
	if be == nil {
		return nil
	}
	g.uploads.closeAll()
	n, err := g.files.closeAll(ctx, g.log)
	if g.tree != nil {
		g.tree.OpenFiles.Sub(float64(n))
	}
	return err
}

// Every FUSE entry point drops the request's cancellation ("uninterruptible"): the kernel
// interrupts a request whenever the calling process gets a signal, and Go programs get
// preemption signals all the time; answering EINTR to a stat or an open would surface as
// spurious failures that no program expects from a local disk. Operations are short, and
// the metadata store finishes a transaction it has started anyway.

// backend returns the attached backend, or nil while sealed.
func (g *Group) backend() *Backend { return g.be.Load() }

// op returns the pre-resolved metrics of one operation.
func (g *Group) op(name string) *metrics.OpMetrics {
	if g.met == nil {
		return nil
	}
	return g.ops[name]
}

// observe counts one operation with its result and duration. It takes the errno by
// pointer so that `defer g.observe(op, time.Now(), &e)` sees the final result.
func (g *Group) observe(name string, start time.Time, ep *syscall.Errno) {
	hidden := *ep == eHidden
	if hidden {
		*ep = syscall.ENOENT
	}
	o := g.op(name)
	if o == nil {
		return
	}
	r := metrics.ResultOK
	switch {
	case hidden:
		r = metrics.ResultDenied
	case *ep == 0:
	case *ep == syscall.EACCES || *ep == syscall.EPERM:
		r = metrics.ResultDenied
	case *ep == syscall.ENOENT || *ep == syscall.EEXIST || *ep == syscall.ENOTEMPTY || *ep == syscall.ENODATA ||
		*ep == syscall.ENOTDIR || *ep == syscall.EISDIR || *ep == syscall.EXDEV || *ep == syscall.EINVAL ||
		*ep == syscall.ENAMETOOLONG || *ep == syscall.ERANGE:
		// The caller asked for something that is not there or not possible: an answer,
		// not a failure of dsh.
	default:
		r = metrics.ResultError
	}
	o.Observe(r, time.Since(start))
}
