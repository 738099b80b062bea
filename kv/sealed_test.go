package kv_test

import (
	"bytes"
	"errors"
	"sync"
	"testing"

	"dsh/kv"
	"dsh/kv/kvtest"
)

func seal(t testing.TB, inner kv.Store) *kv.Sealed {
	t.Helper()
	s, err := kv.Seal(inner, newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A sealed store behaves like any other to the code above it, limits included.
func TestSealedMem(t *testing.T) {
	kvtest.Run(t, func(t *testing.T) kv.Store {
		s := seal(t, kv.NewMem())
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestSealedBadger(t *testing.T) {
	kvtest.Run(t, func(t *testing.T) kv.Store { return seal(t, openBadger(t, t.TempDir(), newKey(t))) })
}

// rawGet reads what the inner store holds under key.
func rawGet(t *testing.T, s kv.Store, key string) []byte {
	t.Helper()
	var v []byte
	if err := s.View(ctx, func(tx kv.Txn) (err error) { v, err = tx.Get([]byte(key)); return err }); err != nil {
		t.Fatal(err)
	}
	return v
}

// rawSet writes bytes under key in the inner store, as someone with the disk could. The
// inner store of a Sealed refuses raw values through its own Set only for size, so a small
// value goes in as given.
func rawSet(t *testing.T, s kv.Store, key string, v []byte) {
	t.Helper()
	if err := s.Update(ctx, func(tx kv.Txn) error { return tx.Set([]byte(key), v) }); err != nil {
		t.Fatal(err)
	}
}

type integrityLog struct {
	mu   sync.Mutex
	keys []string
}

func (l *integrityLog) fn(key []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.keys = append(l.keys, string(key))
}

func (l *integrityLog) got() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.keys...)
}

// Every kind of tampering with a stored value is refused, never handed out, and reported.
func TestSealedRefusesTampering(t *testing.T) {
	mem := kv.NewMem()
	s := seal(t, mem)
	var log integrityLog
	s.OnIntegrity(log.fn)
	put(t, s, "acl/member/s1/alice", "rw")
	put(t, s, "acl/member/s1/bob", "ro")
	put(t, s, "fs/i/x", "")

	stored := rawGet(t, mem, "acl/member/s1/alice")
	if bytes.Contains(stored, []byte("rw")) || len(stored) != len("rw")+kv.SealOverhead {
		t.Fatalf("stored value %x is not a sealed \"rw\"", stored)
	}

	get := func(key string) ([]byte, error) {
		var v []byte
		err := s.View(ctx, func(tx kv.Txn) (err error) { v, err = tx.Get([]byte(key)); return err })
		return v, err
	}
	if v, err := get("fs/i/x"); err != nil || v == nil || len(v) != 0 {
		t.Fatalf("empty value: %q, %v", v, err)
	}

	cases := []struct {
		name  string
		key   string
		value []byte
	}{
		{"flipped byte", "acl/member/s1/alice", flip(stored, len(stored)-20)},
		{"flipped tag", "acl/member/s1/alice", flip(stored, len(stored)-1)},
		{"moved from another key", "acl/member/s1/alice", rawGet(t, mem, "acl/member/s1/bob")},
		{"unsealed value", "acl/member/s1/alice", []byte("rw")},
		{"truncated", "acl/member/s1/alice", stored[:kv.SealOverhead-1]},
		{"empty", "acl/member/s1/alice", []byte{}},
		{"unknown version", "acl/member/s1/alice", append([]byte{2}, stored[1:]...)},
	}
	for _, tc := range cases {
		rawSet(t, mem, tc.key, tc.value)
		v, err := get(tc.key)
		if !errors.Is(err, kv.ErrIntegrity) || v != nil {
			t.Errorf("%s: Get gave %q, %v; want ErrIntegrity", tc.name, v, err)
		}
		err = s.View(ctx, func(tx kv.Txn) error {
			return tx.Scan([]byte("acl/member/"), nil, func(k, v []byte) (bool, error) {
				if string(k) == tc.key {
					t.Errorf("%s: Scan handed out %q", tc.name, v)
				}
				return true, nil
			})
		})
		if !errors.Is(err, kv.ErrIntegrity) {
			t.Errorf("%s: Scan: %v; want ErrIntegrity", tc.name, err)
		}
		if err == nil || bytes.Contains([]byte(err.Error()), []byte("alice")) {
			t.Errorf("%s: the error names the record: %v", tc.name, err)
		}
	}
	if n := len(log.got()); n != 2*len(cases) {
		t.Errorf("integrity hook told %d times, want %d", n, 2*len(cases))
	}
	rawSet(t, mem, "acl/member/s1/alice", stored)
	if v, err := get("acl/member/s1/alice"); err != nil || string(v) != "rw" {
		t.Fatalf("original value put back: %q, %v", v, err)
	}
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x40
	return c
}

func TestKeyClass(t *testing.T) {
	for key, want := range map[string]string{
		"acl/member/s1/alice": "acl/member/",
		"fs/i/\x00\x00\x01":   "fs/i/",
		"portal/tls":          "portal/",
		"nothing":             "?",
		"a b/c/d":             "?",
		"store/epoch":         "store/",
	} {
		if got := kv.KeyClass([]byte(key)); got != want {
			t.Errorf("KeyClass(%q) = %q, want %q", key, got, want)
		}
	}
}
