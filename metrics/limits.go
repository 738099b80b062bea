package metrics

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Limit is the value of the "limit" label of dsh_limit_refusals_total: which of the daemon's
// bounds turned a request away or cut it off.
type Limit string

// The limits. New ones are added here, never passed as free text.
const (
	// LimitControlRequests: a uid already had its most control requests in progress.
	LimitControlRequests Limit = "control_requests"
	// LimitControlConnections: a uid already had its most connections to the socket open.
	LimitControlConnections Limit = "control_connections"
	// LimitUploadStreams: a uid already had its most `dsh upload` streams running.
	LimitUploadStreams Limit = "upload_streams"
	// LimitStreamIdle: an upload body sent nothing for the idle timeout and was cut off.
	LimitStreamIdle Limit = "stream_idle"
	// LimitCredentialChecks: no share of the memory for password and PIN checks came free
	// in time.
	LimitCredentialChecks Limit = "credential_checks"
	// LimitSignInThrottle: a portal sign-in came before the delay its address or account
	// earned with earlier failures had passed.
	LimitSignInThrottle Limit = "signin_throttle"
	// LimitPortalSignIns: a client address already had its most portal sign-in checks
	// running.
	LimitPortalSignIns Limit = "portal_signins"
)

var limits = []Limit{LimitControlRequests, LimitControlConnections, LimitUploadStreams, LimitStreamIdle,
	LimitCredentialChecks, LimitSignInThrottle, LimitPortalSignIns}

// Limits are the metrics of the daemon's admission controls: refusals by a limit, and the
// refusals the audit log summarised instead of writing one by one.
type Limits struct {
	// AuditCoalesced counts refusals recorded in a summary audit record ("N refusals for
	// uid X in the last minute") rather than in a record of their own.
	AuditCoalesced prometheus.Counter

	refused *prometheus.CounterVec
}

// NewLimits creates the limit metrics and registers them with reg; on error reg is left as
// it was.
func NewLimits(reg prometheus.Registerer) (*Limits, error) {
	l := &Limits{
		AuditCoalesced: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "audit_coalesced_total",
			Help: "Refusals recorded only in a per-uid summary audit record, not one by one.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "limit_refusals_total",
			Help: "Requests refused or cut off by one of the daemon's limits, by limit.",
		}, []string{"limit"}),
	}
	if err := reg.Register(l.AuditCoalesced); err != nil {
		return nil, fmt.Errorf("metrics: register: %w", err)
	}
	if err := reg.Register(l.refused); err != nil {
		reg.Unregister(l.AuditCoalesced)
		return nil, fmt.Errorf("metrics: register: %w", err)
	}
	for _, v := range limits {
		l.refused.WithLabelValues(string(v))
	}
	return l, nil
}

// Refused counts one request refused or cut off by limit. A nil Limits counts nothing.
func (l *Limits) Refused(limit Limit) {
	if l != nil {
		l.refused.WithLabelValues(string(limit)).Inc()
	}
}

// Coalesced counts n refusals that went into a summary record. A nil Limits counts nothing.
func (l *Limits) Coalesced(n int) {
	if l != nil {
		l.AuditCoalesced.Add(float64(n))
	}
}
