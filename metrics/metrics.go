// Package metrics owns dsh's Prometheus metrics and the /metrics endpoint: it defines every
// metric, registers them into a registry the caller injects, and serves that registry over
// HTTP. It must never give a metric a label whose values are unbounded: no paths, file names,
// uids, user IDs, session IDs or error texts. Every label value is one of the constants
// below; who did what belongs in the audit log.
package metrics

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

const namespace = "dsh"

// Tree is the value of the "tree" label: one of the two drives.
type Tree string

// The trees. No other value may be used.
const (
	TreeGroup    Tree = "group"
	TreeArrivals Tree = "arrivals"
)

var trees = []Tree{TreeGroup, TreeArrivals}

// Result is the value of the "result" label of operations and logins.
type Result string

// The results. An operation refused by the access decision is ResultDenied; any other
// failure is ResultError.
const (
	ResultOK     Result = "ok"
	ResultDenied Result = "denied"
	ResultError  Result = "error"
)

var results = []Result{ResultOK, ResultDenied, ResultError}

// Reason is the value of the "reason" label of dsh_access_denied_total: why the access
// decision said no. New reasons are added here, never passed as free text.
type Reason string

// The reasons for a denial.
const (
	// ReasonNoSession: the uid has no live session (never logged in, logged out, expired
	// or revoked).
	ReasonNoSession Reason = "no_session"
	// ReasonSealed: the store is sealed.
	ReasonSealed Reason = "sealed"
	// The reasons of the access decision (acl.Reason uses the same strings; a test in acl
	// keeps the two sets equal, so the filesystem can pass acl's reason straight through).
	ReasonNoAccount   Reason = "no_account"
	ReasonDisabled    Reason = "disabled"
	ReasonNotMember   Reason = "not_member"
	ReasonReadOnly    Reason = "read_only"
	ReasonNotOwner    Reason = "not_owner"
	ReasonInboundOnly Reason = "inbound_only"
	ReasonInvalid     Reason = "invalid"
)

var reasons = []Reason{ReasonNoSession, ReasonSealed, ReasonNoAccount, ReasonDisabled,
	ReasonNotMember, ReasonReadOnly, ReasonNotOwner, ReasonInboundOnly, ReasonInvalid}

// Reasons lists every value the reason label can take.
func Reasons() []Reason { return append([]Reason(nil), reasons...) }

// Method is the value of the "method" label of dsh_logins_total: the second factor used.
type Method string

// The login methods.
const (
	MethodToken Method = "token" // soft-token code with its PIN
	MethodICE   Method = "ice"   // ICE emergency code
)

var methods = []Method{MethodToken, MethodICE}

// durationBuckets span a cached getattr (about 10 µs) to a slow write through to the blob
// store (about 1 s), in 1-2.5-5 steps so that quantiles are read to within a factor of 2.5.
var durationBuckets = []float64{
	10e-6, 25e-6, 50e-6,
	100e-6, 250e-6, 500e-6,
	1e-3, 2.5e-3, 5e-3,
	10e-3, 25e-3, 50e-3,
	100e-3, 250e-3, 500e-3,
	1,
}

// Metrics holds every metric of dsh. The unlabelled ones are fields to use directly; the
// labelled ones are reached through methods that take the label types above, so that no
// caller can put an unbounded value into a label.
type Metrics struct {
	// SessionsActive is the number of live login sessions.
	SessionsActive prometheus.Gauge
	// Lockouts counts accounts locked after too many failed logins.
	Lockouts prometheus.Counter
	// ArrivalsExpired counts Arrivals files deleted because they were older than 30 days.
	ArrivalsExpired prometheus.Counter
	// IntegrityErrors counts reads refused because stored content failed authentication.
	IntegrityErrors prometheus.Counter
	// VaultSealed is 1 while the store is sealed and 0 while it is unsealed.
	VaultSealed prometheus.Gauge
	// FileKeysDropped counts open files whose content key and decrypted data were dropped
	// because none of their openers could read them any more.
	FileKeysDropped prometheus.Counter

	fuseOps      *prometheus.CounterVec
	fuseDuration *prometheus.HistogramVec
	denied       *prometheus.CounterVec
	readBytes    *prometheus.CounterVec
	writtenBytes *prometheus.CounterVec
	openFiles    *prometheus.GaugeVec
	logins       *prometheus.CounterVec
}

// NewRegistry returns a registry holding the Go runtime and process collectors, ready for
// New.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	// Cannot fail: the registry is empty and the two collectors share no metric name.
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// New creates the metrics of dsh and registers them with reg. It returns an error (and
// leaves reg as it was) if any of them cannot be registered, for example because New was
// already called with the same registry.
func New(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		SessionsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "sessions_active",
			Help: "Number of live login sessions.",
		}),
		Lockouts: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "lockouts_total",
			Help: "Accounts locked after too many failed logins.",
		}),
		ArrivalsExpired: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "arrivals_expired_total",
			Help: "Arrivals files deleted because they were older than 30 days.",
		}),
		IntegrityErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "integrity_errors_total",
			Help: "Reads refused because stored content failed authentication.",
		}),
		VaultSealed: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "vault_sealed",
			Help: "1 while the store is sealed, 0 while it is unsealed.",
		}),
		FileKeysDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "file_keys_dropped_total",
			Help: "Open files whose content key and decrypted data were dropped because none of their openers could read them any more.",
		}),
		fuseOps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "fuse_operations_total",
			Help: "Filesystem operations finished, by tree, operation and result.",
		}, []string{"tree", "op", "result"}),
		fuseDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "fuse_operation_duration_seconds",
			Help:    "Time to serve a filesystem operation, by tree and operation.",
			Buckets: durationBuckets,
		}, []string{"tree", "op"}),
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "access_denied_total",
			Help: "Accesses refused by the access decision, by tree and reason.",
		}, []string{"tree", "reason"}),
		readBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "read_bytes_total",
			Help: "Plaintext bytes read through the filesystem, by tree.",
		}, []string{"tree"}),
		writtenBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "written_bytes_total",
			Help: "Plaintext bytes written through the filesystem, by tree.",
		}, []string{"tree"}),
		openFiles: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "open_files",
			Help: "Files currently open through the filesystem, by tree.",
		}, []string{"tree"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "logins_total",
			Help: "Login attempts, by second-factor method and result.",
		}, []string{"method", "result"}),
	}
	all := []prometheus.Collector{
		m.SessionsActive, m.Lockouts, m.ArrivalsExpired, m.IntegrityErrors, m.VaultSealed, m.FileKeysDropped,
		m.fuseOps, m.fuseDuration, m.denied, m.readBytes, m.writtenBytes, m.openFiles, m.logins,
	}
	for i, c := range all {
		if err := reg.Register(c); err != nil {
			for _, done := range all[:i] {
				reg.Unregister(done)
			}
			return nil, fmt.Errorf("metrics: register: %w", err)
		}
	}
	m.initSeries()
	return m, nil
}

// initSeries creates every series whose labels are all known here at zero, so that rates
// and alerts work from the first scrape instead of from the first event. Series with an
// "op" label appear when the filesystem asks for them with Op.
func (m *Metrics) initSeries() {
	for _, t := range trees {
		m.readBytes.WithLabelValues(string(t))
		m.writtenBytes.WithLabelValues(string(t))
		m.openFiles.WithLabelValues(string(t))
		for _, r := range reasons {
			m.denied.WithLabelValues(string(t), string(r))
		}
	}
	for _, me := range methods {
		for _, r := range results {
			m.logins.WithLabelValues(string(me), string(r))
		}
	}
}

// OpMetrics records one filesystem operation of one tree. Its series are resolved once by
// Op, so recording costs no label hashing, no map lookup and no allocation.
type OpMetrics struct {
	ok, denied, failed prometheus.Counter
	duration           prometheus.Observer
}

// Op returns the recorder of operation op on tree, creating its series. op is the name of a
// FUSE operation from a fixed list in the filesystem ("lookup", "read", ...), never anything
// taken from a request. The filesystem calls Op once per operation and keeps the result.
func (m *Metrics) Op(tree Tree, op string) *OpMetrics {
	t := string(tree)
	return &OpMetrics{
		ok:       m.fuseOps.WithLabelValues(t, op, string(ResultOK)),
		denied:   m.fuseOps.WithLabelValues(t, op, string(ResultDenied)),
		failed:   m.fuseOps.WithLabelValues(t, op, string(ResultError)),
		duration: m.fuseDuration.WithLabelValues(t, op),
	}
}

// Observe records one finished operation: its result and how long it took. A result other
// than the three constants counts as ResultError.
func (o *OpMetrics) Observe(r Result, d time.Duration) {
	switch r {
	case ResultOK:
		o.ok.Inc()
	case ResultDenied:
		o.denied.Inc()
	default:
		o.failed.Inc()
	}
	o.duration.Observe(d.Seconds())
}

// TreeMetrics holds the per-tree series that the data path touches on every read and write,
// resolved once like OpMetrics.
type TreeMetrics struct {
	// ReadBytes counts plaintext bytes returned by reads.
	ReadBytes prometheus.Counter
	// WrittenBytes counts plaintext bytes accepted by writes.
	WrittenBytes prometheus.Counter
	// OpenFiles is raised on open and lowered on release.
	OpenFiles prometheus.Gauge
}

// Tree returns the per-tree series of tree.
func (m *Metrics) Tree(tree Tree) *TreeMetrics {
	t := string(tree)
	return &TreeMetrics{
		ReadBytes:    m.readBytes.WithLabelValues(t),
		WrittenBytes: m.writtenBytes.WithLabelValues(t),
		OpenFiles:    m.openFiles.WithLabelValues(t),
	}
}

// Denied counts one access refused on tree for reason.
func (m *Metrics) Denied(tree Tree, reason Reason) {
	m.denied.WithLabelValues(string(tree), string(reason)).Inc()
}

// Login counts one login attempt with method and its result.
func (m *Metrics) Login(method Method, r Result) {
	m.logins.WithLabelValues(string(method), string(r)).Inc()
}
