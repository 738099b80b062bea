package metrics

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// designNames are the metrics DESIGN.md promises.
var designNames = []string{
	"dsh_fuse_operations_total", "dsh_fuse_operation_duration_seconds",
	"dsh_access_denied_total", "dsh_read_bytes_total",
	"dsh_written_bytes_total", "dsh_open_files",
	"dsh_sessions_active", "dsh_logins_total",
	"dsh_lockouts_total", "dsh_arrivals_expired_total",
	"dsh_integrity_errors_total", "dsh_vault_sealed",
}

func newMetrics(t testing.TB) (*prometheus.Registry, *Metrics) {
	t.Helper()
	reg := NewRegistry()
	m, err := New(reg)
	if err != nil {
		t.Fatal(err)
	}
	return reg, m
}

// touchAll gives every metric a value, so that each one is exposed.
func touchAll(m *Metrics) {
	m.SessionsActive.Set(3)
	m.Lockouts.Inc()
	m.ArrivalsExpired.Inc()
	m.IntegrityErrors.Inc()
	m.VaultSealed.Set(1)
	m.Op(TreeGroup, "read").Observe(ResultOK, 30*time.Microsecond)
	m.Op(TreeArrivals, "lookup").Observe(ResultDenied, time.Millisecond)
	tm := m.Tree(TreeGroup)
	tm.ReadBytes.Add(4096)
	tm.WrittenBytes.Add(512)
	tm.OpenFiles.Inc()
	m.Denied(TreeGroup, ReasonNotMember)
	m.Login(MethodToken, ResultOK)
}

func TestEveryDesignMetricLintsClean(t *testing.T) {
	reg, m := newMetrics(t)
	touchAll(m)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range families {
		got = append(got, f.GetName())
		if strings.HasPrefix(f.GetName(), "dsh_") && f.GetHelp() == "" {
			t.Errorf("%s has no help", f.GetName())
		}
	}
	for _, name := range designNames {
		if !slices.Contains(got, name) {
			t.Errorf("metric %s missing", name)
		}
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if !slices.Contains(got, name) {
			t.Errorf("collector metric %s missing", name)
		}
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// TestLabelValuesAreBounded checks every exposed dsh label value against the fixed sets.
func TestLabelValuesAreBounded(t *testing.T) {
	reg, m := newMetrics(t)
	touchAll(m)
	allowed := map[string][]string{
		"tree":   {string(TreeGroup), string(TreeArrivals)},
		"result": {string(ResultOK), string(ResultDenied), string(ResultError)},
		"reason": {"no_session", "sealed", "no_account", "disabled", "not_member", "read_only", "not_owner", "inbound_only", "invalid"},
		"method": {string(MethodToken), string(MethodICE)},
		"op":     {"read", "lookup"}, // what touchAll used
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if !strings.HasPrefix(f.GetName(), "dsh_") {
			continue
		}
		for _, metric := range f.GetMetric() {
			for _, l := range metric.GetLabel() {
				if !slices.Contains(allowed[l.GetName()], l.GetValue()) {
					t.Errorf("%s{%s=%q}: label or value outside the fixed sets", f.GetName(), l.GetName(), l.GetValue())
				}
			}
		}
	}
}

func TestNewTwiceFails(t *testing.T) {
	reg, _ := newMetrics(t)
	before, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(reg)
	var are prometheus.AlreadyRegisteredError
	if !errors.As(err, &are) {
		t.Fatalf("second New = %v; want AlreadyRegisteredError", err)
	}
	after, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Fatalf("failed New changed the registry: %d families, then %d", len(before), len(after))
	}
}

func TestNewUndoesPartialRegistration(t *testing.T) {
	reg := prometheus.NewRegistry()
	// The last metric New registers is taken already, so New fails after registering all
	// the others; it must take them back out.
	clash := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dsh_logins_total",
		Help: "Login attempts, by second-factor method and result.",
	}, []string{"method", "result"})
	reg.MustRegister(clash)
	if _, err := New(reg); err == nil {
		t.Fatal("New over a taken name succeeded")
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 0 {
		t.Fatalf("after a failed New the registry exposes %d series (%v); want none", n, err)
	}
	reg.Unregister(clash)
	if _, err := New(reg); err != nil {
		t.Fatalf("New after a failed New: %v", err)
	}
}

func TestOpObserve(t *testing.T) {
	_, m := newMetrics(t)
	o := m.Op(TreeGroup, "write")
	o.Observe(ResultOK, time.Millisecond)
	o.Observe(ResultOK, time.Millisecond)
	o.Observe(ResultDenied, time.Microsecond)
	o.Observe(Result("something else"), time.Second)
	for r, want := range map[Result]float64{ResultOK: 2, ResultDenied: 1, ResultError: 1} {
		got := testutil.ToFloat64(m.fuseOps.WithLabelValues("group", "write", string(r)))
		if got != want {
			t.Errorf("result %s: %v; want %v", r, got, want)
		}
	}
	if n := testutil.CollectAndCount(m.fuseDuration); n != 1 {
		t.Errorf("%d duration series; want 1", n)
	}
	if allocs := testing.AllocsPerRun(1000, func() { o.Observe(ResultOK, time.Microsecond) }); allocs != 0 {
		t.Errorf("Observe allocates %v times", allocs)
	}
}

func BenchmarkOpRecord(b *testing.B) {
	_, m := newMetrics(b)
	o := m.Op(TreeGroup, "read")
	b.ReportAllocs()
	for b.Loop() {
		o.Observe(ResultOK, 42*time.Microsecond)
	}
}

func BenchmarkOpRecordParallel(b *testing.B) {
	_, m := newMetrics(b)
	o := m.Op(TreeGroup, "read")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			o.Observe(ResultOK, 42*time.Microsecond)
		}
	})
}
