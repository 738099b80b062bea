package acl

import (
	"testing"

	"dsh/metrics"
)

// TestReasonsAreMetricLabels keeps the decision's reasons and the metric's label values one
// set: the filesystem counts a denial with the reason Decide gave, unchanged.
func TestReasonsAreMetricLabels(t *testing.T) {
	known := map[metrics.Reason]bool{}
	for _, r := range metrics.Reasons() {
		known[r] = true
	}
	for _, r := range Reasons() {
		if r == ReasonOK {
			continue
		}
		if !known[metrics.Reason(r)] {
			t.Errorf("acl reason %q has no dsh_access_denied_total series", r)
		}
	}
}
