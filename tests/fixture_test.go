package tests

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"dsh/blob"
	"dsh/content"
	"dsh/vault"
)

// TestContentFixtureV1 reads a file written by an older dsh (tests/fixtures/content-v1),
// then writes 4 KiB into it in place, which today's dsh stores as a patch over the old
// object, and reads both back: a version 1 object under a version 2 patch.
func TestContentFixtureV1(t *testing.T) {
	var fx struct {
		Share      string `json:"share"`
		ShareKey   string `json:"share_key"`
		FileID     string `json:"file_id"`
		WrappedKey string `json:"wrapped_key"`
		Sha256     string `json:"sha256"`
		Size       int64  `json:"size"`
		Segments   []struct {
			Index  uint64 `json:"index"`
			Object string `json:"object"`
		} `json:"segments"`
	}
	b, err := os.ReadFile("fixtures/content-v1/fixture.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &fx); err != nil {
		t.Fatal(err)
	}
	// A copy: the fixture itself is never written.
	dir := filepath.Join(t.TempDir(), "blobs")
	if out, err := exec.Command("cp", "-a", "fixtures/content-v1/blobs", dir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	bs, err := blob.OpenLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer bs.Close()
	var key vault.Key
	kb, _ := hex.DecodeString(fx.ShareKey)
	copy(key[:], kb)
	var id vault.FileID
	ib, _ := hex.DecodeString(fx.FileID)
	copy(id[:], ib)
	wb, _ := hex.DecodeString(fx.WrappedKey)
	wrapped, err := vault.UnmarshalWrappedKey(wb)
	if err != nil {
		t.Fatal(err)
	}
	var segs []content.Segment
	for _, s := range fx.Segments {
		o, err := blob.ParseID(s.Object)
		if err != nil {
			t.Fatal(err)
		}
		segs = append(segs, content.Segment{Index: s.Index, Object: o})
	}
	store := content.New(bs, content.Options{})
	var staged content.Staged
	commit := func(_ context.Context, st content.Staged) error { staged = st; return nil }
	f, err := store.Open(fx.Share, &key, id, wrapped, fx.Size, segs, commit)
	if err != nil {
		t.Fatalf("open the file of an older dsh: %v", err)
	}
	data := make([]byte, fx.Size)
	if n, err := f.ReadAt(context.Background(), data, 0); err != nil || int64(n) != fx.Size {
		t.Fatalf("read the file of an older dsh: %d bytes, %v", n, err)
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != fx.Sha256 {
		t.Fatal("the file of an older dsh reads back different bytes")
	}
	// A 4 KiB write in place: a patch over the old object.
	p := make([]byte, 4096)
	for i := range p {
		p[i] = byte(i * 31)
	}
	if _, err := f.WriteAt(context.Background(), p, 70000); err != nil {
		t.Fatal(err)
	}
	if err := f.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.Close()
	copy(data[70000:], p)
	if len(staged.Segments) != 1 || len(staged.Segments[0].Patches) != 1 || staged.Segments[0].Object != segs[0].Object {
		t.Fatalf("the write was not stored as a patch over the old object: %+v", staged.Segments)
	}
	for id, want := range map[blob.ID]byte{segs[0].Object: 1, staged.Segments[0].Patches[0].Object: 2} {
		hex := id.String()
		b, err := os.ReadFile(filepath.Join(dir, "objects", hex[:2], hex))
		if err != nil {
			t.Fatal(err)
		}
		if len(b) < 5 || b[4] != want {
			t.Fatalf("object %s: want content format version %d", hex, want)
		}
	}
	g, err := store.Open(fx.Share, &key, id, wrapped, staged.Size, staged.Segments, commit)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	got := make([]byte, fx.Size)
	if _, err := g.ReadAt(context.Background(), got, 0); err != nil || string(got) != string(data) {
		t.Fatalf("after the patch: %v", err)
	}
}
