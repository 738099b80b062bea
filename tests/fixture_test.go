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
	"dsh/meta"
	"dsh/vault"
)

// fixture is what a fixture folder's fixture.json says of the file it holds.
type fixture struct {
	Share      string `json:"share"`
	ShareKey   string `json:"share_key"`
	FileID     string `json:"file_id"`
	WrappedKey string `json:"wrapped_key"`
	Sha256     string `json:"sha256"`
	Size       int64  `json:"size"`
	Segments   []struct {
		Index   uint64 `json:"index"`
		Object  string `json:"object"`
		Patches []struct {
			From, To, First, Chunks uint32
			Object                  string
		} `json:"patches"`
	} `json:"segments"`
}

// fixtureFile is a fixture's file opened with today's code.
type fixtureFile struct {
	f      *content.File
	dir    string            // the copy's blob folder
	segs   []content.Segment // as the fixture lists them
	data   []byte            // the plaintext, kept up to date by writeAndReread
	staged content.Staged    // the state the last flush committed
	reopen func() *content.File
}

// openFixture copies fixture folder name (the fixture itself is never written), opens its
// file with today's code and checks that it reads back the bytes it was written with.
func openFixture(t *testing.T, name string) *fixtureFile {
	t.Helper()
	var fx fixture
	b, err := os.ReadFile(filepath.Join("fixtures", name, "fixture.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &fx); err != nil {
		t.Fatal(err)
	}
	ff := &fixtureFile{dir: filepath.Join(t.TempDir(), "blobs")}
	if out, err := exec.Command("cp", "-a", filepath.Join("fixtures", name, "blobs"), ff.dir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	bs, err := blob.OpenLocal(ff.dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bs.Close() })
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
	for _, s := range fx.Segments {
		o, err := blob.ParseID(s.Object)
		if err != nil {
			t.Fatal(err)
		}
		sg := content.Segment{Index: s.Index, Object: o}
		for _, p := range s.Patches {
			po, err := blob.ParseID(p.Object)
			if err != nil {
				t.Fatal(err)
			}
			// Fixtures list patches in 64 KiB chunks, as dsh counted them when they were made.
			mp := meta.ChunkPatch(p.From, p.To, p.First, p.Chunks, po)
			sg.Patches = append(sg.Patches, content.Patch(mp))
		}
		ff.segs = append(ff.segs, sg)
	}
	store := content.New(bs, content.Options{})
	commit := func(_ context.Context, st content.Staged) error { ff.staged = st; return nil }
	ff.f, err = store.Open(fx.Share, &key, id, wrapped, fx.Size, ff.segs, commit)
	if err != nil {
		t.Fatalf("open the file of an older dsh: %v", err)
	}
	t.Cleanup(func() { ff.f.Close() })
	ff.data = make([]byte, fx.Size)
	if n, err := ff.f.ReadAt(context.Background(), ff.data, 0); err != nil || int64(n) != fx.Size {
		t.Fatalf("read the file of an older dsh: %d bytes, %v", n, err)
	}
	if sum := sha256.Sum256(ff.data); hex.EncodeToString(sum[:]) != fx.Sha256 {
		t.Fatal("the file of an older dsh reads back different bytes")
	}
	ff.reopen = func() *content.File {
		t.Helper()
		g, err := store.Open(fx.Share, &key, id, wrapped, ff.staged.Size, ff.staged.Segments, commit)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { g.Close() })
		return g
	}
	return ff
}

// version is the content format version that object id of the copy is written in.
func (ff *fixtureFile) version(t *testing.T, id blob.ID) byte {
	t.Helper()
	h := id.String()
	b, err := os.ReadFile(filepath.Join(ff.dir, "objects", h[:2], h))
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 5 {
		t.Fatalf("object %s: %d bytes", h, len(b))
	}
	return b[4]
}

// writeAndReread writes 4 KiB at off in place, flushes, and reads the whole file again
// through a fresh open of the committed state.
func (ff *fixtureFile) writeAndReread(t *testing.T, off int64) {
	t.Helper()
	p := make([]byte, 4096)
	for i := range p {
		p[i] = byte(i*31 + int(off))
	}
	if _, err := ff.f.WriteAt(context.Background(), p, off); err != nil {
		t.Fatal(err)
	}
	if err := ff.f.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	copy(ff.data[off:], p)
	got := make([]byte, len(ff.data))
	if _, err := ff.reopen().ReadAt(context.Background(), got, 0); err != nil || string(got) != string(ff.data) {
		t.Fatalf("after a write at %d: %v", off, err)
	}
}

// TestContentFixtureV1 reads a file written by an older dsh (tests/fixtures/content-v1),
// then writes 4 KiB into it in place, which today's dsh stores as a patch over the old
// object, and reads both back: a version 1 object under a version 2 patch.
func TestContentFixtureV1(t *testing.T) {
	ff := openFixture(t, "content-v1")
	ff.writeAndReread(t, 70000)
	st := ff.staged
	if len(st.Segments) != 1 || len(st.Segments[0].Patches) != 1 || st.Segments[0].Object != ff.segs[0].Object {
		t.Fatalf("the write was not stored as a patch over the old object: %+v", st.Segments)
	}
	if v := ff.version(t, ff.segs[0].Object); v != 1 {
		t.Fatalf("the fixture's object is in version %d", v)
	}
	if v := ff.version(t, st.Segments[0].Patches[0].Object); v != 2 {
		t.Fatalf("the new patch is in version %d", v)
	}
}

// TestContentFixtureV2 reads a file of content format version 2 with a patch
// (tests/fixtures/content-v2), then writes over the patched chunk and another one and reads
// it back.
func TestContentFixtureV2(t *testing.T) {
	ff := openFixture(t, "content-v2")
	if len(ff.segs) != 1 || len(ff.segs[0].Patches) != 1 {
		t.Fatalf("the fixture lists %+v", ff.segs)
	}
	for _, id := range []blob.ID{ff.segs[0].Object, ff.segs[0].Patches[0].Object} {
		if v := ff.version(t, id); v != 2 {
			t.Fatalf("object %s of the fixture is in version %d", id, v)
		}
	}
	// Into the patched chunk: blocks 16 and 17 of the old patch's 16 to 31 are replaced,
	// and the old patch keeps serving blocks 18 to 31.
	ff.writeAndReread(t, 66_000)
	ff.writeAndReread(t, 140_000)
	old := ff.segs[0].Patches[0].Object
	ps := ff.staged.Segments[0].Patches
	if len(ps) != 3 || ps[0].Object == old || ps[0].From != 16 || ps[0].To != 18 ||
		ps[1].Object != old || ps[1].From != 18 || ps[1].To != 32 || ps[2].From != 34 || ps[2].To != 36 {
		t.Fatalf("after two writes: %+v", ps)
	}
}
