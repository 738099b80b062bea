package vault

import (
	"bytes"
	"errors"
	"os"
	"testing"
)

func newTestKey(t testing.TB) Key {
	t.Helper()
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestWrapRoundTrip(t *testing.T) {
	parent, child := newTestKey(t), newTestKey(t)
	ctx := []byte("file:0123")
	w, err := WrapKey(&parent, &child, ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, err := w.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != WrappedKeySize || WrappedKeySize != 73 || b[0] != 1 {
		t.Fatalf("record is %d bytes starting with %d, want 73 starting with version 1", len(b), b[0])
	}
	if bytes.Contains(b, child[:8]) {
		t.Fatal("the record contains the child key in the clear")
	}
	w2, err := UnmarshalWrappedKey(b)
	if err != nil || w2 != w {
		t.Fatalf("UnmarshalWrappedKey: %v", err)
	}
	got, err := UnwrapKey(&parent, w2, ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(&child) {
		t.Fatal("unwrapped key differs from the wrapped one")
	}
	again, _ := WrapKey(&parent, &child, ctx)
	if again == w {
		t.Fatal("two wraps of one key are identical: the nonce is not random")
	}
}

func TestUnwrapFailures(t *testing.T) {
	parent, child, other := newTestKey(t), newTestKey(t), newTestKey(t)
	ctx := []byte("share:cohort")
	w, err := WrapKey(&parent, &child, ctx)
	if err != nil {
		t.Fatal(err)
	}
	fail := func(what string, p *Key, w WrappedKey, ctx []byte) {
		t.Helper()
		k, err := UnwrapKey(p, w, ctx)
		if !errors.Is(err, ErrIntegrity) {
			t.Errorf("%s: error %v, want ErrIntegrity", what, err)
		}
		if !k.IsZero() {
			t.Errorf("%s: a key was returned with the error", what)
		}
	}
	fail("wrong parent", &other, w, ctx)
	fail("another record's context", &parent, w, []byte("share:cohorts"))
	// Every byte of the encoded record, version included, is covered.
	b, _ := w.MarshalBinary()
	for i := range b {
		bad := bytes.Clone(b)
		bad[i] ^= 1
		bw, err := UnmarshalWrappedKey(bad)
		if err != nil {
			if !errors.Is(err, ErrIntegrity) {
				t.Errorf("byte %d: parse error %v, want ErrIntegrity", i, err)
			}
			continue
		}
		fail("flipped byte", &parent, bw, ctx)
	}
}

func TestUnmarshalWrappedKeyIsStrict(t *testing.T) {
	parent, child := newTestKey(t), newTestKey(t)
	w, _ := WrapKey(&parent, &child, []byte("x"))
	b, _ := w.MarshalBinary()
	for _, n := range []int{0, 1, WrappedKeySize - 1} {
		if _, err := UnmarshalWrappedKey(b[:n]); !errors.Is(err, ErrIntegrity) {
			t.Errorf("%d bytes: %v, want ErrIntegrity", n, err)
		}
	}
	if _, err := UnmarshalWrappedKey(append(bytes.Clone(b), 0)); !errors.Is(err, ErrIntegrity) {
		t.Errorf("74 bytes: %v, want ErrIntegrity", err)
	}
	v2 := bytes.Clone(b)
	v2[0] = 2
	if _, err := UnmarshalWrappedKey(v2); !errors.Is(err, ErrUnsupportedVersion) {
		t.Errorf("version 2: %v, want ErrUnsupportedVersion", err)
	}
}

func TestWrapRefusesBadArguments(t *testing.T) {
	parent, child := newTestKey(t), newTestKey(t)
	var wiped Key
	ctx := []byte("file:1")
	cases := map[string]func() error{
		"nil parent":    func() error { _, err := WrapKey(nil, &child, ctx); return err },
		"wiped parent":  func() error { _, err := WrapKey(&wiped, &child, ctx); return err },
		"nil child":     func() error { _, err := WrapKey(&parent, nil, ctx); return err },
		"wiped child":   func() error { _, err := WrapKey(&parent, &wiped, ctx); return err },
		"self":          func() error { _, err := WrapKey(&parent, &parent, ctx); return err },
		"empty context": func() error { _, err := WrapKey(&parent, &child, nil); return err },
		"unwrap, empty context": func() error {
			w, _ := WrapKey(&parent, &child, ctx)
			_, err := UnwrapKey(&parent, w, nil)
			return err
		},
		"unwrap, nil parent": func() error {
			w, _ := WrapKey(&parent, &child, ctx)
			_, err := UnwrapKey(nil, w, ctx)
			return err
		},
	}
	for name, f := range cases {
		if f() == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestRotateParentKey shows what rotating a share key costs: the file's wrapped key is
// rewrapped, its content object stays byte for byte as it was and still reads.
func TestRotateParentKey(t *testing.T) {
	oldShare, newShare, content := newTestKey(t), newTestKey(t), newTestKey(t)
	h := testHeader(t, 0)
	ctx := []byte("file:" + h.FileID.String())
	c, err := NewContentCipher(&content)
	if err != nil {
		t.Fatal(err)
	}
	obj := writeObject(t, c, h, pattern(ChunkSize+7))
	stored := bytes.Clone(obj)
	w, err := WrapKey(&oldShare, &content, ctx)
	if err != nil {
		t.Fatal(err)
	}

	rewrapped, err := RewrapKey(&oldShare, &newShare, w, ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := UnwrapKey(&oldShare, rewrapped, ctx); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("the old share key still opens the rewrapped record: %v", err)
	}
	k, err := UnwrapKey(&newShare, rewrapped, ctx)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := NewContentCipher(&k)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := openAll(obj, c2, h); err != nil || !bytes.Equal(got, pattern(ChunkSize+7)) {
		t.Fatalf("content after rotation: %v", err)
	}
	if !bytes.Equal(obj, stored) {
		t.Fatal("rotation touched the content object")
	}
	if _, err := RewrapKey(&oldShare, &newShare, rewrapped, ctx); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("rewrap under the wrong old key: %v, want ErrIntegrity", err)
	}
}

// TestWrappedKeyCannotMove moves a file's wrapped key into another file's record and a
// share key into another share's: both are refused.
func TestWrappedKeyCannotMove(t *testing.T) {
	root, share := newTestKey(t), newTestKey(t)
	wrapKey := root.Derive(PurposeWrap)
	ws, err := WrapKey(&wrapKey, &share, []byte("share:alpha"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := UnwrapKey(&wrapKey, ws, []byte("share:beta")); !errors.Is(err, ErrIntegrity) {
		t.Errorf("share key opened under another share's name: %v", err)
	}
	a, b := testHeader(t, 0), testHeader(t, 0)
	fileKey := newTestKey(t)
	wf, err := WrapKey(&share, &fileKey, []byte("file:"+a.FileID.String()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := UnwrapKey(&share, wf, []byte("file:"+b.FileID.String())); !errors.Is(err, ErrIntegrity) {
		t.Errorf("file key opened in another file's record: %v", err)
	}
}

var goldenWrapContext = []byte("file:f11e0102030405060708090a0b0c0d0e")

func TestGoldenWrappedKeyV1(t *testing.T) {
	parent, child := goldenKey(0x40), goldenKey(1)
	path := goldenPath("v1-wrapped-key.bin")
	if *updateGolden {
		w, err := WrapKey(&parent, &child, goldenWrapContext)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := w.MarshalBinary()
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := UnmarshalWrappedKey(b)
	if err != nil {
		t.Fatalf("golden wrapped key no longer parses: %v", err)
	}
	got, err := UnwrapKey(&parent, w, goldenWrapContext)
	if err != nil {
		t.Fatalf("golden wrapped key no longer opens: %v", err)
	}
	if !got.Equal(&child) {
		t.Fatal("golden wrapped key opens to the wrong key")
	}
}
