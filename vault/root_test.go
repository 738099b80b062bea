package vault

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fastKDF keeps tests quick; the format stores the parameters, so any valid ones work.
var fastKDF = KDFParams{Time: 1, MemoryKiB: 8 * 1024, Threads: 1}

func TestSealedRootRoundTrip(t *testing.T) {
	root, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s, err := SealRoot(&root, []byte("passphrase one"), fastKDF)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteSealedRoot(dir, s); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, RootFileName))
	if bytes.Contains(raw, root[:]) {
		t.Fatal("root key stored in the clear")
	}
	fi, _ := os.Stat(filepath.Join(dir, RootFileName))
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("root key file mode %v", fi.Mode().Perm())
	}
	back, err := ReadSealedRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := back.Open([]byte("passphrase one"))
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(&root) {
		t.Fatal("opened a different root key")
	}
	if _, err := back.Open([]byte("passphrase two")); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	if err := WriteSealedRoot(dir, s); !errors.Is(err, ErrExists) {
		t.Fatalf("second write: %v", err)
	}
}

func TestSealedRootRejectsTampering(t *testing.T) {
	root, _ := NewKey()
	s, err := SealRoot(&root, []byte("pw"), fastKDF)
	if err != nil {
		t.Fatal(err)
	}
	for i := range s.Ciphertext {
		c := *s
		c.Ciphertext = bytes.Clone(s.Ciphertext)
		c.Ciphertext[i] ^= 1
		if _, err := c.Open([]byte("pw")); !errors.Is(err, ErrWrongPassphrase) {
			t.Fatalf("flipped byte %d: %v", i, err)
		}
	}
	c := *s
	c.Salt = bytes.Clone(s.Salt)
	c.Salt[0] ^= 1
	if _, err := c.Open([]byte("pw")); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("changed salt: %v", err)
	}
	c = *s
	c.KDF.Time = 0
	if _, err := c.Open([]byte("pw")); err == nil {
		t.Fatal("invalid KDF parameters accepted")
	}
	c = *s
	c.Version = 99
	if _, err := c.Open([]byte("pw")); err == nil {
		t.Fatal("unknown version accepted")
	}
	c = *s
	c.Nonce = c.Nonce[:5]
	if _, err := c.Open([]byte("pw")); err == nil {
		t.Fatal("short nonce accepted")
	}
}

func TestReadSealedRootErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadSealedRoot(dir); !errors.Is(err, ErrNoStore) {
		t.Fatalf("missing file: %v", err)
	}
	os.WriteFile(filepath.Join(dir, RootFileName), []byte("{not json"), 0o600)
	if _, err := ReadSealedRoot(dir); err == nil {
		t.Fatal("malformed file accepted")
	}
	if _, err := SealRoot(&Key{}, nil, fastKDF); err == nil {
		t.Fatal("empty passphrase accepted")
	}
}

func TestDeriveSeparatesPurposes(t *testing.T) {
	root, _ := NewKey()
	a, b := root.Derive(PurposeBadger), root.Derive(PurposeAudit)
	if a.Equal(&b) || a.Equal(&root) {
		t.Fatal("derived keys collide")
	}
	again := root.Derive(PurposeBadger)
	if !a.Equal(&again) {
		t.Fatal("derivation is not deterministic")
	}
	a.Wipe()
	if !a.IsZero() {
		t.Fatal("wipe left key bytes")
	}
}

func TestCheckPassphrase(t *testing.T) {
	for p, ok := range map[string]bool{
		"correct horse battery staple": true,
		"bench unseal passphrase":      true,
		"x":                            false,
		"passwordpassword":             false, // 7 different characters
		"aaaaaaaaaaaaaaaaaaaaaaaa":     false,
		"Tr0ub4dor&3xyzQ":              false, // 15 characters
		"élan vital über naïve":        true,
	} {
		if err := CheckPassphrase([]byte(p)); (err == nil) != ok {
			t.Errorf("%q: %v", p, err)
		}
	}
	if err := CheckPassphrase([]byte("x")); err == nil || strings.Contains(err.Error(), "x\"") {
		t.Errorf("the error must say the rule and nothing of the passphrase: %v", err)
	}
}

func TestRekey(t *testing.T) {
	dir := t.TempDir()
	root, _ := NewKey()
	s, err := SealRoot(&root, []byte("old passphrase one two"), fastKDF)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteSealedRoot(dir, s); err != nil {
		t.Fatal(err)
	}
	if err := Rekey(dir, []byte("wrong passphrase here"), []byte("new passphrase three four"), fastKDF, nil); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("rekey with a wrong old passphrase: %v", err)
	}
	if err := Rekey(dir, []byte("old passphrase one two"), []byte("short"), fastKDF, nil); !errors.Is(err, ErrWeakPassphrase) {
		t.Fatalf("rekey to a weak passphrase: %v", err)
	}
	if err := Rekey(dir, []byte("old passphrase one two"), []byte("old passphrase one two"), fastKDF, nil); err == nil {
		t.Fatal("rekey to the same passphrase accepted")
	}
	refused := errors.New("not the key I hold")
	if err := Rekey(dir, []byte("old passphrase one two"), []byte("new passphrase three four"), fastKDF, func(*Key) error { return refused }); !errors.Is(err, refused) {
		t.Fatalf("a refusing check: %v", err)
	}
	if err := Rekey(dir, []byte("old passphrase one two"), []byte("new passphrase three four"), fastKDF, func(k *Key) error {
		if !k.Equal(&root) {
			return refused
		}
		return nil
	}); err != nil {
		t.Fatalf("rekey: %v", err)
	}
	sealed, err := ReadSealedRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sealed.Open([]byte("old passphrase one two")); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("the old passphrase still opens the root key: %v", err)
	}
	k, err := sealed.Open([]byte("new passphrase three four"))
	if err != nil || !k.Equal(&root) {
		t.Fatalf("the new passphrase: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(dir, RootFileName)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("root key file after rekey: %v %v", fi, err)
	}
}
