package metrics

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ScanResult is the value of the "result" label of dsh_ingress_scans_total: the scanner's
// verdict (the strings of scan.Result) or "error" when there was none.
type ScanResult string

// The scan results.
const (
	ScanClean    ScanResult = "clean"
	ScanInfected ScanResult = "infected"
	ScanHeld     ScanResult = "held"
	ScanError    ScanResult = "error"
)

var scanResults = []ScanResult{ScanClean, ScanInfected, ScanHeld, ScanError}

// EgressState is the value of the "state" label of the egress metrics: a state of a
// request (the strings of airlock.State).
type EgressState string

// EgressStates lists every state an egress request can be in; airlock's tests keep it
// equal to airlock's own list.
var EgressStates = []EgressState{"draft", "submitted", "in_review", "approved", "rejected", "released", "expired", "revoked", "cancelled"}

// scanBuckets span a small file (a few ms) to a large one (minutes).
var scanBuckets = []float64{0.005, 0.025, 0.1, 0.5, 2.5, 10, 60, 300}

// Airlock holds the metrics of the airlock: the malware gate on the way in, quarantine, and
// egress requests on the way out.
type Airlock struct {
	scans        *prometheus.CounterVec
	scanSeconds  prometheus.Histogram
	scannedBytes prometheus.Counter
	// Quarantined is the number of files in quarantine now.
	Quarantined prometheus.Gauge
	egress      *prometheus.CounterVec
	requests    *prometheus.GaugeVec
	downloads   *prometheus.CounterVec
	// ReleasedBytes counts the bytes of approved files downloaded.
	ReleasedBytes prometheus.Counter
}

// NewAirlock creates the airlock's metrics and registers them with reg.
func NewAirlock(reg prometheus.Registerer) (*Airlock, error) {
	m := &Airlock{
		scans: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "ingress_scans_total",
			Help: "Malware scans of uploads and of files on their way out, by verdict (error: no verdict could be had).",
		}, []string{"result"}),
		scanSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "ingress_scan_duration_seconds",
			Help: "Time to scan one file with clamd.", Buckets: scanBuckets,
		}),
		scannedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "ingress_scanned_bytes_total",
			Help: "Bytes streamed to the malware scanner.",
		}),
		Quarantined: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "quarantine_files",
			Help: "Uploads held in quarantine (infected, or not scannable whole) now.",
		}),
		egress: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "egress_requests_total",
			Help: "Egress requests entering each state.",
		}, []string{"state"}),
		requests: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "egress_requests",
			Help: "Egress requests in each state now.",
		}, []string{"state"}),
		downloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "egress_downloads_total",
			Help: "Downloads of approved files, by result (denied: refused; error: the bytes failed their check).",
		}, []string{"result"}),
		ReleasedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "egress_released_bytes_total",
			Help: "Bytes of approved files downloaded whole.",
		}),
	}
	all := []prometheus.Collector{m.scans, m.scanSeconds, m.scannedBytes, m.Quarantined, m.egress, m.requests, m.downloads, m.ReleasedBytes}
	for i, c := range all {
		if err := reg.Register(c); err != nil {
			for _, done := range all[:i] {
				reg.Unregister(done)
			}
			return nil, fmt.Errorf("metrics: register the airlock's: %w", err)
		}
	}
	for _, r := range scanResults {
		m.scans.WithLabelValues(string(r))
	}
	for _, s := range EgressStates {
		m.egress.WithLabelValues(string(s))
		m.requests.WithLabelValues(string(s))
	}
	for _, r := range results {
		m.downloads.WithLabelValues(string(r))
	}
	return m, nil
}

// Scanned counts one scan with its result, the bytes it read and how long it took. A
// result that is not one of the constants counts as ScanError.
func (m *Airlock) Scanned(r ScanResult, bytes int64, d time.Duration) {
	switch r {
	case ScanClean, ScanInfected, ScanHeld:
	default:
		r = ScanError
	}
	m.scans.WithLabelValues(string(r)).Inc()
	if r != ScanError {
		m.scanSeconds.Observe(d.Seconds())
		m.scannedBytes.Add(float64(bytes))
	}
}

// Entered counts a request entering state; unknown states are not counted.
func (m *Airlock) Entered(state EgressState) {
	if known(state) {
		m.egress.WithLabelValues(string(state)).Inc()
	}
}

// SetRequests sets how many requests are in each state now; states missing from n are 0.
func (m *Airlock) SetRequests(n map[EgressState]int) {
	for _, s := range EgressStates {
		m.requests.WithLabelValues(string(s)).Set(float64(n[s]))
	}
}

// Download counts one download of an approved file with its result.
func (m *Airlock) Download(r Result) {
	switch r {
	case ResultOK, ResultDenied:
	default:
		r = ResultError
	}
	m.downloads.WithLabelValues(string(r)).Inc()
}

func known(s EgressState) bool {
	for _, k := range EgressStates {
		if k == s {
			return true
		}
	}
	return false
}
