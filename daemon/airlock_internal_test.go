package daemon

import (
	"encoding/json"
	"testing"

	"dsh/blob"
	"dsh/meta"
)

// Egress requests frozen by an older dsh list their patches in 64 KiB chunks; they still
// read, in blocks, and a record with neither count (or both) is refused.
func TestFrozenPatchUnits(t *testing.T) {
	obj := blob.NewID()
	for _, tc := range []struct {
		rec  string
		want meta.Patch
		ok   bool
	}{
		{`{"segment":0,"from":2,"to":3,"first":2,"chunks":1}`, meta.Patch{From: 32, To: 48, First: 32, Blocks: 16, Object: obj}, true},
		{`{"segment":0,"from":33,"to":34,"first":33,"blocks":1}`, meta.Patch{From: 33, To: 34, First: 33, Blocks: 1, Object: obj}, true},
		{`{"segment":0,"from":2,"to":3,"first":2}`, meta.Patch{}, false},
		{`{"segment":0,"from":2,"to":3,"first":2,"chunks":1,"blocks":16}`, meta.Patch{}, false},
		{`{"segment":0,"from":2,"to":4294967295,"first":2,"chunks":4294967295}`, meta.Patch{}, false},
	} {
		var fp frozenPatch
		if err := json.Unmarshal([]byte(tc.rec), &fp); err != nil {
			t.Fatal(err)
		}
		got, err := fp.patch(obj)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("%s: %+v, %v", tc.rec, got, err)
		}
	}
	// What Freeze writes today says blocks.
	b, _ := json.Marshal(frozenPatch{From: 1, To: 2, First: 1, Blocks: 1, Object: obj.String()})
	var m map[string]any
	json.Unmarshal(b, &m)
	if _, ok := m["blocks"]; !ok || m["chunks"] != nil {
		t.Errorf("a frozen patch is written as %s", b)
	}
}
