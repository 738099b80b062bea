package metrics

import (
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestLimitsLintCleanAndBounded(t *testing.T) {
	reg := NewRegistry()
	if _, err := New(reg); err != nil {
		t.Fatal(err)
	}
	l, err := NewLimits(reg)
	if err != nil {
		t.Fatal(err)
	}
	l.Refused(LimitControlRequests)
	l.Coalesced(41)
	var nilLimits *Limits
	nilLimits.Refused(LimitStreamIdle) // counts nothing, and does not panic
	nilLimits.Coalesced(1)
	if got := testutil.ToFloat64(l.refused.WithLabelValues(string(LimitControlRequests))); got != 1 {
		t.Fatalf("control_requests refusals = %v", got)
	}
	if got := testutil.ToFloat64(l.AuditCoalesced); got != 41 {
		t.Fatalf("coalesced = %v", got)
	}
	problems, err := testutil.GatherAndLint(reg, "dsh_limit_refusals_total", "dsh_audit_coalesced_total")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "dsh_limit_refusals_total" {
			continue
		}
		if n := len(f.GetMetric()); n != len(limits) {
			t.Errorf("%d series, want one per limit (%d)", n, len(limits))
		}
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() != "limit" || !slices.Contains(limits, Limit(lp.GetValue())) {
					t.Errorf("label %s=%q outside the fixed set", lp.GetName(), lp.GetValue())
				}
			}
		}
	}
	if _, err := NewLimits(reg); err == nil {
		t.Fatal("NewLimits twice on one registry succeeded")
	}
}
