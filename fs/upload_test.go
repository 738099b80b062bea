package fs

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"dsh/acl"
	"dsh/audit"
	"dsh/blob"
	"dsh/content"
	"dsh/kv"
	"dsh/meta"
	"dsh/token"
	"dsh/vault"
)

// The harness builds a Backend from the real parts, in memory and in t.TempDir(): kv.Mem,
// meta, content over a local blob store, the acl store and the token service with one
// enrolled and logged-in user. Only the audit log is a recorder, so that tests can read
// it and make it fail.

const (
	aliceUID = 1001
	alicePW  = "correct horse battery"
	alicePIN = "4321"
	mib      = 1 << 20
)

var bg = context.Background()

// recorder is an audit.Appender that keeps entries; fail makes Append refuse.
type recorder struct {
	mu      sync.Mutex
	entries []audit.Entry
	fail    bool
}

func (r *recorder) Append(_ context.Context, e audit.Entry, _ audit.Durability) (audit.Record, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return audit.Record{}, errors.New("disk full")
	}
	r.entries = append(r.entries, e)
	return audit.Record{}, nil
}

func (r *recorder) setFail(v bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fail = v
}

func (r *recorder) count(action, object, result string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.entries {
		if e.Action == action && e.Object == object && e.Result == result {
			n++
		}
	}
	return n
}

type wrapper struct{ key vault.Key }

func (w *wrapper) Wrap(k *vault.Key, c []byte) (vault.WrappedKey, error) {
	return vault.WrapKey(&w.key, k, c)
}

func (w *wrapper) Unwrap(wk vault.WrappedKey, c []byte) (vault.Key, error) {
	return vault.UnwrapKey(&w.key, wk, c)
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// flakyBlobs fails every new object while fail is set: a full or failing disk.
type flakyBlobs struct {
	blob.Store
	fail atomic.Bool
}

func (f *flakyBlobs) Create(ctx context.Context, id blob.ID) (blob.Pending, error) {
	if f.fail.Load() {
		return nil, errors.New("no space left on device")
	}
	return f.Store.Create(ctx, id)
}

type harness struct {
	g      *Group
	be     *Backend
	blobs  *flakyBlobs
	aud    *recorder
	tok    *token.Service
	clk    *clock
	secret string
	// scanner is the malware gate of the tests (quarantine_test.go).
	scanner *fakeScanner
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	st := kv.NewMem()
	h := &harness{aud: &recorder{}, clk: &clock{t: time.Unix(1_800_000_015, 0)}}
	wk, err := vault.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	a, err := acl.New(st, &wrapper{key: wk}, h.aud, acl.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.CreateUser(bg, acl.Actor{UID: 0, Operator: true}, acl.NewUser{ID: "alice", UID: aliceUID, Email: "alice@example.org"}); err != nil {
		t.Fatal(err)
	}
	sk, err := vault.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := token.NewKeySealer(&sk)
	if err != nil {
		t.Fatal(err)
	}
	cheap := token.KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}
	h.tok, err = token.New(token.Deps{Store: st, Directory: acl.Accounts{S: a}, Keys: acl.Keys{S: a}, Sealer: sealer, Auditor: h.aud},
		token.Options{Now: h.clk.now, PasswordKDF: cheap, ShortKDF: cheap})
	if err != nil {
		t.Fatal(err)
	}
	code, _, err := h.tok.CreateEnrolment(bg, 0, "alice")
	if err != nil {
		t.Fatal(err)
	}
	qs := [3]token.Question{
		{Question: "First pet?", Answer: []byte("Rex")},
		{Question: "Birth town?", Answer: []byte("Leeds")},
		{Question: "First school?", Answer: []byte("St Mary's")},
	}
	res, err := h.tok.Enrol(bg, aliceUID, code, []byte(alicePW), []byte(alicePIN), qs)
	if err != nil {
		t.Fatal(err)
	}
	k, err := otp.NewKeyFromURL(res.URL)
	if err != nil {
		t.Fatal(err)
	}
	h.secret = k.Secret()
	h.login(t)
	local, err := blob.OpenLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	blobs := &flakyBlobs{Store: local}
	h.blobs = blobs
	// A small dirty limit makes long writes flush by themselves on the way.
	h.be = &Backend{Meta: meta.New(st, meta.Options{}), Content: content.New(blobs, content.Options{MaxDirty: 2 * mib}),
		Blobs: blobs, ACL: a, Sessions: h.tok.Sessions(), Audit: h.aud}
	h.scanner = &fakeScanner{}
	h.g = New(Options{Tree: acl.Arrivals, Log: slog.New(slog.DiscardHandler), GCInterval: time.Hour, Scanner: h.scanner})
	if err := h.g.Attach(bg, h.be); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.g.Detach(bg); err != nil {
			t.Error(err)
		}
		h.tok.Sessions().EndAll(bg)
	})
	return h
}

// login starts a session for alice, a TOTP step after the last one (codes are single use).
func (h *harness) login(t *testing.T) {
	t.Helper()
	h.clk.add(30 * time.Second)
	c, err := totp.GenerateCode(h.secret, h.clk.now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.tok.Login(bg, aliceUID, "", []byte(alicePW), []byte(alicePIN), c); err != nil {
		t.Fatal(err)
	}
}

func (h *harness) root(t *testing.T) meta.Attr {
	t.Helper()
	r, err := h.be.Meta.ShareRoot(bg, arrivalsPrefix+"alice", shareRootMode)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// read returns the content of a published arrival, read back through content.
func (h *harness) read(t *testing.T, name string) []byte {
	t.Helper()
	a, err := h.be.Meta.Lookup(bg, h.root(t).Ino, name)
	if err != nil {
		t.Fatalf("lookup %q: %v", name, err)
	}
	return h.readAttr(t, &a)
}

func (h *harness) readAttr(t *testing.T, a *meta.Attr) []byte {
	t.Helper()
	segs, err := contentSegmentsOf(bg, h.be, a)
	if err != nil {
		t.Fatal(err)
	}
	ring, ok := h.be.Sessions.Keyring(aliceUID)
	if !ok {
		t.Fatal("no session")
	}
	var f *content.File
	ok, err = ring.UseArrivals(func(k *vault.Key) (err error) {
		f, err = h.be.Content.Open(arrivalsPrefix+"alice", k, a.Content.FileID, a.Content.Key, a.Size, segs,
			func(context.Context, content.Staged) error { return errors.New("read only") })
		return err
	})
	if !ok || err != nil {
		t.Fatalf("open content: %v %v", ok, err)
	}
	defer f.Close()
	buf := make([]byte, a.Size)
	n, err := f.ReadAt(bg, buf, 0)
	if err != nil && err != io.EOF {
		t.Fatalf("read: %v", err)
	}
	return buf[:n]
}

// list returns alice's arrivals by name.
func (h *harness) list(t *testing.T) map[string]Arrival {
	t.Helper()
	as, err := h.g.List(bg, aliceUID)
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[string]Arrival, len(as))
	for _, a := range as {
		m[a.Name] = a
	}
	return m
}

// staged returns the names in alice's staging folder.
func (h *harness) staged(t *testing.T) []string {
	t.Helper()
	inc, err := h.be.Meta.Lookup(bg, h.root(t).Ino, incomingDir)
	if errors.Is(err, meta.ErrNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	if err := h.be.Meta.ReadDir(bg, inc.Ino, 0, func(d meta.Dirent) bool {
		names = append(names, d.Name)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return names
}

// stagedSize is the size the metadata records for an upload's staged file.
func (h *harness) stagedSize(t *testing.T, u *Upload) int64 {
	t.Helper()
	a, err := h.be.Meta.GetAttr(bg, u.staged)
	if err != nil {
		t.Fatal(err)
	}
	return a.Size
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(n), byte(n >> 8), byte(n >> 16)})
	_, _ = r.Read(b)
	return b
}

// cutReader gives its data, then fails with err instead of io.EOF.
func cutReader(data []byte, err error) io.Reader {
	return io.MultiReader(bytes.NewReader(data), errReader{err})
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func (h *harness) begin(t *testing.T, name string, size int64) *Upload {
	t.Helper()
	u, err := h.g.BeginUpload(bg, aliceUID, name, size)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func mustWrite(t *testing.T, u *Upload, off int64, data []byte) {
	t.Helper()
	n, err := u.Write(bg, off, bytes.NewReader(data))
	if err != nil {
		t.Fatalf("write %d bytes at %d: %v", len(data), off, err)
	}
	if n != int64(len(data)) || u.Offset() != off+n {
		t.Fatalf("write %d bytes at %d: wrote %d, offset %d", len(data), off, n, u.Offset())
	}
}

func TestUploadInPieces(t *testing.T) {
	h := newHarness(t)
	// Pieces that end mid-chunk and cross a buffer and a segment boundary.
	data := randomBytes(content.SegmentSize + 3*mib + 12345)
	u := h.begin(t, "scan.dat", int64(len(data)))
	if u.Size() != int64(len(data)) || u.Name() != "scan.dat" || u.UID() != aliceUID || u.Offset() != 0 {
		t.Fatalf("new upload: size %d name %q uid %d offset %d", u.Size(), u.Name(), u.UID(), u.Offset())
	}
	cuts := []int{0, mib + 7, content.SegmentSize - 100, len(data)}
	for i := 0; i < 3; i++ {
		mustWrite(t, u, int64(cuts[i]), data[cuts[i]:cuts[i+1]])
		if got := h.stagedSize(t, u); got != int64(cuts[i+1]) {
			t.Fatalf("piece %d: staged size %d, want %d: not durable", i, got, cuts[i+1])
		}
		if len(h.list(t)) != 0 {
			t.Fatal("an upload in progress is listed")
		}
	}
	a, err := u.Finish(bg)
	if err != nil {
		t.Fatal(err)
	}
	if a.Name != "scan.dat" || a.Size != int64(len(data)) || !a.Expires.Equal(a.Arrived.Add(DefaultRetention)) {
		t.Fatalf("arrival %+v", a)
	}
	l := h.list(t)
	if len(l) != 1 || l["scan.dat"].Size != int64(len(data)) {
		t.Fatalf("listed %+v", l)
	}
	if !bytes.Equal(h.read(t, "scan.dat"), data) {
		t.Fatal("bytes read back differ")
	}
	if len(h.staged(t)) != 0 {
		t.Fatalf("staging folder not empty: %v", h.staged(t))
	}
	if h.aud.count("arrivals.upload", "arrivals:alice/scan.dat", "ok") != 1 {
		t.Fatal("arrival not audited")
	}
	// Closed now.
	if _, err := u.Write(bg, u.Offset(), bytes.NewReader(nil)); !errors.Is(err, ErrUploadClosed) {
		t.Fatalf("write after finish: %v", err)
	}
	if _, err := u.Finish(bg); !errors.Is(err, ErrUploadClosed) {
		t.Fatalf("finish again: %v", err)
	}
	if err := u.Abort(bg); !errors.Is(err, ErrUploadClosed) {
		t.Fatalf("abort after finish: %v", err)
	}
	if len(h.list(t)) != 1 {
		t.Fatal("abort after finish removed the arrival")
	}
}

func TestUploadWrongOffset(t *testing.T) {
	h := newHarness(t)
	data := randomBytes(1000)
	u := h.begin(t, "a.txt", 1000)
	if _, err := u.Write(bg, 5, bytes.NewReader(data[5:])); !errors.Is(err, ErrOffset) {
		t.Fatalf("write ahead: %v", err)
	}
	mustWrite(t, u, 0, data[:400])
	for _, off := range []int64{0, 399, 401, -1} {
		n, err := u.Write(bg, off, bytes.NewReader(data[:10]))
		if !errors.Is(err, ErrOffset) || n != 0 {
			t.Fatalf("write at %d: %d, %v", off, n, err)
		}
	}
	if u.Offset() != 400 || h.stagedSize(t, u) != 400 {
		t.Fatalf("offset %d, staged %d after refused writes", u.Offset(), h.stagedSize(t, u))
	}
	mustWrite(t, u, 400, data[400:])
	if _, err := u.Finish(bg); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(h.read(t, "a.txt"), data) {
		t.Fatal("bytes differ")
	}
}

func TestUploadTooLarge(t *testing.T) {
	h := newHarness(t)
	data := randomBytes(3 * mib)
	size := int64(mib + 500)
	u := h.begin(t, "big.bin", size)
	mustWrite(t, u, 0, data[:mib])
	// The second piece goes past the size: only up to the size is kept.
	n, err := u.Write(bg, mib, bytes.NewReader(data[mib:]))
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("write past the size: %v", err)
	}
	if n != 500 || u.Offset() != size || h.stagedSize(t, u) != size {
		t.Fatalf("wrote %d, offset %d, staged %d; want 500, %d, %d", n, u.Offset(), h.stagedSize(t, u), size, size)
	}
	// At the size, even one more byte is refused, and an empty body is fine.
	if n, err := u.Write(bg, size, bytes.NewReader([]byte{1})); !errors.Is(err, ErrTooLarge) || n != 0 {
		t.Fatalf("one byte past the size: %d, %v", n, err)
	}
	if n, err := u.Write(bg, size, bytes.NewReader(nil)); err != nil || n != 0 {
		t.Fatalf("empty body at the size: %d, %v", n, err)
	}
	if h.stagedSize(t, u) != size {
		t.Fatal("staged file grew past the size")
	}
	a, err := u.Finish(bg)
	if err != nil {
		t.Fatal(err)
	}
	if a.Size != size || !bytes.Equal(h.read(t, "big.bin"), data[:size]) {
		t.Fatalf("arrival of %d bytes, or bytes differ", a.Size)
	}
	if _, err := h.g.BeginUpload(bg, aliceUID, "x", content.MaxSize+1); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("size over the maximum: %v", err)
	}
	if _, err := h.g.BeginUpload(bg, aliceUID, "x", -2); err == nil {
		t.Fatal("negative size accepted")
	}
}

func TestUploadResumeAfterCut(t *testing.T) {
	h := newHarness(t)
	data := randomBytes(5*mib + 777)
	for _, tc := range []struct {
		name string
		size int64
		cut  int
		err  error
	}{
		{"known.bin", int64(len(data)), 2*mib + 12345, io.ErrUnexpectedEOF},
		{"unknown.bin", -1, 3*mib - 1, io.ErrUnexpectedEOF},
		{"cancel.bin", int64(len(data)), 100, context.Canceled},
		{"first.bin", int64(len(data)), 0, io.ErrUnexpectedEOF},
	} {
		u := h.begin(t, tc.name, tc.size)
		n, err := u.Write(bg, 0, cutReader(data[:tc.cut], tc.err))
		if !errors.Is(err, tc.err) {
			t.Fatalf("%s: cut write: %v", tc.name, err)
		}
		if n != int64(tc.cut) || u.Offset() != int64(tc.cut) || h.stagedSize(t, u) != int64(tc.cut) {
			t.Fatalf("%s: wrote %d, offset %d, staged %d; want %d", tc.name, n, u.Offset(), h.stagedSize(t, u), tc.cut)
		}
		mustWrite(t, u, int64(tc.cut), data[tc.cut:])
		if _, err := u.Finish(bg); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !bytes.Equal(h.read(t, tc.name), data) {
			t.Fatalf("%s: bytes differ", tc.name)
		}
	}
}

// A context cancelled while the body streams stops the write after the buffer in hand,
// which is kept like everything before it.
func TestUploadContextCancelled(t *testing.T) {
	h := newHarness(t)
	data := randomBytes(4 * mib)
	u := h.begin(t, "c.bin", int64(len(data)))
	ctx, cancel := context.WithCancel(bg)
	r := &hookReader{r: bytes.NewReader(data), after: 2 * mib, hook: cancel}
	n, err := u.Write(ctx, 0, r)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("write: %v", err)
	}
	// The cancel came while the third MiB was read: that buffer in hand is kept.
	if n != 3*mib || u.Offset() != 3*mib || h.stagedSize(t, u) != 3*mib {
		t.Fatalf("wrote %d, offset %d, staged %d", n, u.Offset(), h.stagedSize(t, u))
	}
	mustWrite(t, u, n, data[n:])
	if _, err := u.Finish(bg); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(h.read(t, "c.bin"), data) {
		t.Fatal("bytes differ")
	}
}

// hookReader runs hook once, when a read would go past after bytes, and then stops there
// until the next read.
type hookReader struct {
	r     io.Reader
	after int64
	done  int64
	hook  func()
	fired bool
}

func (h *hookReader) Read(p []byte) (int, error) {
	if !h.fired && h.done+int64(len(p)) > h.after {
		if h.done < h.after {
			p = p[:h.after-h.done]
		} else {
			h.fired = true
			h.hook()
		}
	}
	n, err := h.r.Read(p)
	h.done += int64(n)
	return n, err
}

func TestUploadFinishIncomplete(t *testing.T) {
	h := newHarness(t)
	data := randomBytes(10_000)
	u := h.begin(t, "f.txt", int64(len(data)))
	if _, err := u.Finish(bg); !errors.Is(err, ErrOffset) {
		t.Fatalf("finish of nothing: %v", err)
	}
	mustWrite(t, u, 0, data[:9_999])
	if _, err := u.Finish(bg); !errors.Is(err, ErrOffset) {
		t.Fatalf("finish one byte short: %v", err)
	}
	if len(h.list(t)) != 0 {
		t.Fatal("incomplete upload listed")
	}
	mustWrite(t, u, 9_999, data[9_999:])
	if _, err := u.Finish(bg); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(h.read(t, "f.txt"), data) {
		t.Fatal("bytes differ")
	}
}

func TestUploadAbort(t *testing.T) {
	h := newHarness(t)
	data := randomBytes(3 * mib)
	u := h.begin(t, "gone.bin", int64(len(data)))
	mustWrite(t, u, 0, data[:2*mib])
	if len(h.staged(t)) != 1 {
		t.Fatalf("staged: %v", h.staged(t))
	}
	if err := u.Abort(bg); err != nil {
		t.Fatal(err)
	}
	if len(h.list(t)) != 0 || len(h.staged(t)) != 0 {
		t.Fatalf("after abort: listed %v, staged %v", h.list(t), h.staged(t))
	}
	if h.aud.count("arrivals.upload", "arrivals:alice/gone.bin", "error") != 1 {
		t.Fatal("abort not audited")
	}
	if err := u.Abort(bg); err != nil {
		t.Fatalf("second abort: %v", err)
	}
	if h.aud.count("arrivals.upload", "arrivals:alice/gone.bin", "error") != 1 {
		t.Fatal("second abort audited again")
	}
	if _, err := u.Write(bg, u.Offset(), bytes.NewReader(data)); !errors.Is(err, ErrUploadClosed) {
		t.Fatalf("write after abort: %v", err)
	}
	if _, err := u.Finish(bg); !errors.Is(err, ErrUploadClosed) {
		t.Fatalf("finish after abort: %v", err)
	}
	// Its objects go to the collector.
	if err := h.g.collectGarbage(bg, h.be); err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := h.be.Blobs.List(bg, func(blob.Info) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d objects left after abort and collection", n)
	}
}

func TestUploadNameCollision(t *testing.T) {
	h := newHarness(t)
	for i, want := range []string{"data.tar.gz", "data.tar (1).gz", "data.tar (2).gz"} {
		u := h.begin(t, "data.tar.gz", 3)
		mustWrite(t, u, 0, []byte{byte(i), 2, 3})
		a, err := u.Finish(bg)
		if err != nil {
			t.Fatal(err)
		}
		if a.Name != want {
			t.Fatalf("upload %d published as %q, want %q", i, a.Name, want)
		}
		if got := h.read(t, want); !bytes.Equal(got, []byte{byte(i), 2, 3}) {
			t.Fatalf("%q holds %v", want, got)
		}
	}
	a, err := h.g.Ingest(bg, aliceUID, "data.tar.gz", bytes.NewReader([]byte("x")))
	if err != nil || a.Name != "data.tar (3).gz" {
		t.Fatalf("ingest: %+v, %v", a, err)
	}
	if len(h.list(t)) != 4 {
		t.Fatalf("listed %v", h.list(t))
	}
}

func TestIngest(t *testing.T) {
	h := newHarness(t)
	data := randomBytes(3*mib + 1)
	a, err := h.g.Ingest(bg, aliceUID, "report.pdf", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if a.Name != "report.pdf" || a.Size != int64(len(data)) || !bytes.Equal(h.read(t, "report.pdf"), data) {
		t.Fatalf("ingested %+v, or bytes differ", a)
	}
	// An empty file arrives too, with its arrival time.
	a, err = h.g.Ingest(bg, aliceUID, "empty", bytes.NewReader(nil))
	if err != nil || a.Size != 0 || a.Arrived.IsZero() {
		t.Fatalf("empty: %+v, %v", a, err)
	}
	// A body cut off is never published, and nothing is left staged.
	if _, err := h.g.Ingest(bg, aliceUID, "cut.bin", cutReader(data[:mib+5], io.ErrUnexpectedEOF)); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("cut body: %v", err)
	}
	if _, ok := h.list(t)["cut.bin"]; ok {
		t.Fatal("cut body published")
	}
	if len(h.staged(t)) != 0 {
		t.Fatalf("staged: %v", h.staged(t))
	}
	if h.aud.count("arrivals.upload", "arrivals:alice/cut.bin", "error") != 1 {
		t.Fatal("failed ingest not audited")
	}
	for _, bad := range []string{"", ".", "..", ".incoming", "a/b", "a\x00b", string(make([]byte, 256))} {
		if _, err := h.g.Ingest(bg, aliceUID, bad, bytes.NewReader(nil)); !errors.Is(err, ErrBadName) {
			t.Fatalf("name %q: %v", bad, err)
		}
	}
	if _, err := h.g.Ingest(bg, 4242, "x", bytes.NewReader(nil)); !errors.Is(err, ErrNoSession) {
		t.Fatalf("uid without an account: %v", err)
	}
	if len(h.list(t)) != 2 {
		t.Fatalf("listed %v", h.list(t))
	}
}

// The audit record of an arrival is durable before the file stays: without it the file is
// taken back.
func TestUploadAuditFailure(t *testing.T) {
	h := newHarness(t)
	u := h.begin(t, "secret.csv", 5)
	mustWrite(t, u, 0, []byte("a,b,c"))
	h.aud.setFail(true)
	if _, err := u.Finish(bg); err == nil {
		t.Fatal("finished without an audit record")
	}
	h.aud.setFail(false)
	if len(h.list(t)) != 0 || len(h.staged(t)) != 0 {
		t.Fatalf("after a failed audit: listed %v, staged %v", h.list(t), h.staged(t))
	}
	if err := u.Abort(bg); !errors.Is(err, ErrUploadClosed) {
		t.Fatalf("abort after a taken-back finish: %v", err)
	}
}

func TestUploadSessionEnds(t *testing.T) {
	h := newHarness(t)
	data := randomBytes(4 * mib)
	u := h.begin(t, "s.bin", int64(len(data)))
	// A logout while the body streams: the MiB received before it is kept, nothing after.
	r := &hookReader{r: bytes.NewReader(data), after: mib, hook: func() { h.tok.Sessions().Logout(bg, aliceUID) }}
	n, err := u.Write(bg, 0, r)
	if !errors.Is(err, ErrNoSession) {
		t.Fatalf("write across a logout: %v", err)
	}
	if n != mib || u.Offset() != mib || h.stagedSize(t, u) != mib {
		t.Fatalf("wrote %d, offset %d, staged %d; want %d", n, u.Offset(), h.stagedSize(t, u), mib)
	}
	if u.f != nil {
		t.Fatal("the staged file stays open after the session ended")
	}
	if _, err := u.Write(bg, mib, bytes.NewReader(data[mib:])); !errors.Is(err, ErrNoSession) {
		t.Fatalf("write without a session: %v", err)
	}
	if _, err := u.Finish(bg); !errors.Is(err, ErrNoSession) {
		t.Fatalf("finish without a session: %v", err)
	}
	if _, err := h.g.BeginUpload(bg, aliceUID, "t", 1); !errors.Is(err, ErrNoSession) {
		t.Fatalf("begin without a session: %v", err)
	}
	// Back in, the upload resumes where it stood.
	h.login(t)
	mustWrite(t, u, mib, data[mib:2*mib])
	mustWrite(t, u, 2*mib, data[2*mib:])
	if _, err := u.Finish(bg); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(h.read(t, "s.bin"), data) {
		t.Fatal("bytes differ")
	}
}

func TestUploadSeal(t *testing.T) {
	h := newHarness(t)
	u := h.begin(t, "x.bin", 10)
	mustWrite(t, u, 0, []byte("12345"))
	if err := h.g.Detach(bg); err != nil {
		t.Fatal(err)
	}
	if _, err := u.Write(bg, 5, bytes.NewReader([]byte("67890"))); !errors.Is(err, ErrSealed) {
		t.Fatalf("write after seal: %v", err)
	}
	if _, err := u.Finish(bg); !errors.Is(err, ErrSealed) {
		t.Fatalf("finish after seal: %v", err)
	}
	if err := u.Abort(bg); !errors.Is(err, ErrSealed) {
		t.Fatalf("abort after seal: %v", err)
	}
	if err := u.Abort(bg); err != nil {
		t.Fatalf("second abort after seal: %v", err)
	}
	// The next attach removes what was staged.
	if err := h.g.Attach(bg, h.be); err != nil {
		t.Fatal(err)
	}
	if len(h.staged(t)) != 0 {
		t.Fatalf("staged after reattach: %v", h.staged(t))
	}
}

// A seal during a running write ends it with ErrSealed.
func TestUploadSealDuringWrite(t *testing.T) {
	h := newHarness(t)
	data := randomBytes(4 * mib)
	u := h.begin(t, "y.bin", int64(len(data)))
	r := &hookReader{r: bytes.NewReader(data), after: mib, hook: func() {
		if err := h.g.Detach(bg); err != nil {
			t.Error(err)
		}
	}}
	if _, err := u.Write(bg, 0, r); !errors.Is(err, ErrSealed) {
		t.Fatalf("write across a seal: %v", err)
	}
}

// A store failure keeps what the metadata recorded, and the upload resumes from there.
func TestUploadStoreFailure(t *testing.T) {
	h := newHarness(t)
	data := randomBytes(4*mib + 3)
	u := h.begin(t, "w.bin", int64(len(data)))
	mustWrite(t, u, 0, data[:mib])
	h.blobs.fail.Store(true)
	n, err := u.Write(bg, mib, bytes.NewReader(data[mib:]))
	if err == nil || errors.Is(err, ErrOffset) {
		t.Fatalf("write on a failing store: %v", err)
	}
	if n != 0 || u.Offset() != mib || h.stagedSize(t, u) != mib {
		t.Fatalf("wrote %d, offset %d, staged %d; want 0, %d, %d", n, u.Offset(), h.stagedSize(t, u), mib, mib)
	}
	h.blobs.fail.Store(false)
	mustWrite(t, u, mib, data[mib:3*mib])
	mustWrite(t, u, 3*mib, data[3*mib:])
	if _, err := u.Finish(bg); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(h.read(t, "w.bin"), data) {
		t.Fatal("bytes differ")
	}
}

// Offset answers while a Write runs (a tus HEAD during a PATCH), and never goes back.
func TestUploadOffsetDuringWrite(t *testing.T) {
	h := newHarness(t)
	data := randomBytes(6 * mib)
	u := h.begin(t, "z.bin", int64(len(data)))
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		last := int64(0)
		for !stop.Load() {
			o := u.Offset()
			if o < last || o > int64(len(data)) {
				t.Errorf("offset %d after %d", o, last)
				return
			}
			last = o
			time.Sleep(time.Millisecond)
		}
	}()
	mustWrite(t, u, 0, data[:3*mib])
	mustWrite(t, u, 3*mib, data[3*mib:])
	stop.Store(true)
	<-done
	if _, err := u.Finish(bg); err != nil {
		t.Fatal(err)
	}
}
