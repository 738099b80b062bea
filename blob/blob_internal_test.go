package blob

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// The link fallback is only taken on filesystems without RENAME_NOREPLACE, which the test
// machine may not have, so it is exercised directly.
func TestLinkNoReplace(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	for _, tc := range []struct{ path, data string }{{src, "new"}, {dst, "old"}} {
		if err := os.WriteFile(tc.path, []byte(tc.data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for name, move := range map[string]func(string, string) error{
		"renameNoReplace": renameNoReplace,
		"linkNoReplace":   linkNoReplace,
	} {
		if err := move(src, dst); !errors.Is(err, fs.ErrExist) {
			t.Errorf("%s onto an existing file: err %v, want fs.ErrExist", name, err)
		}
		if b, _ := os.ReadFile(dst); string(b) != "old" {
			t.Errorf("%s replaced the target: %q", name, b)
		}
	}
	if err := linkNoReplace(src, filepath.Join(dir, "fresh")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(src); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("source still present after linkNoReplace: %v", err)
	}
}

// FuzzParseID checks that only canonical strings parse, so each ID has exactly one
// spelling and a parsed ID is always a safe file name.
func FuzzParseID(f *testing.F) {
	f.Add("0123456789abcdef0123456789abcdef")
	f.Add("0123456789ABCDEF0123456789abcdef")
	f.Add("../x")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseID(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidID) {
				t.Fatalf("ParseID(%q): err %v does not wrap ErrInvalidID", s, err)
			}
			return
		}
		if id.String() != s {
			t.Fatalf("ParseID(%q).String() = %q", s, id.String())
		}
	})
}
