package content

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"dsh/blob"
	"dsh/vault"
)

// env is one store with one file under test, and the fake metadata behind it.
type env struct {
	t      testing.TB
	blobs  blob.Store
	store  *Store
	share  string
	key    vault.Key
	id     vault.FileID
	wkey   vault.WrappedKey
	meta   *fakeMeta
	closed []*File
}

// newEnv makes a store on a local blob folder with segments of segChunks chunks (0: the
// default) and a new, empty file.
func newEnv(t testing.TB, segChunks int64, maxDirty int64) *env {
	t.Helper()
	bs, err := blob.OpenLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return newEnvOn(t, bs, segChunks, maxDirty)
}

func newEnvOn(t testing.TB, bs blob.Store, segChunks int64, maxDirty int64) *env {
	t.Helper()
	s := New(bs, Options{MaxDirty: maxDirty})
	if segChunks > 0 {
		s.segChunks = segChunks
	}
	key, err := vault.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, blobs: bs, store: s, share: "projects", key: key}
	e.id, e.wkey, err = s.NewFile(e.share, &e.key)
	if err != nil {
		t.Fatal(err)
	}
	e.meta = &fakeMeta{t: t, blobs: bs, segSize: s.segChunks * vault.ChunkSize}
	return e
}

// open opens the file from the fake metadata's current state.
func (e *env) open() *File {
	e.t.Helper()
	st := e.meta.current()
	f, err := e.store.Open(e.share, &e.key, e.id, e.wkey, st.Size, st.Segments, e.meta.commit)
	if err != nil {
		e.t.Fatal(err)
	}
	return f
}

// fakeMeta records staged states as a metadata layer would. It checks each one against
// the blob store, can be told to fail, and can collect dropped objects at once, so that
// a File that still read them would fail.
type fakeMeta struct {
	t       testing.TB
	blobs   blob.Store
	segSize int64

	mu       sync.Mutex
	state    Staged
	commits  int
	fail     func() bool   // fail this commit?
	gc       bool          // delete Dropped objects right after a commit
	hold     chan struct{} // if set, a commit waits for it to be closed
	entered  chan struct{} // if set, signalled when a commit starts
	lastFail Staged        // the last state refused
}

var errCommit = errors.New("fake metadata refuses the commit")

func (m *fakeMeta) current() Staged {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state
}

func (m *fakeMeta) commit(ctx context.Context, st Staged) error {
	m.mu.Lock()
	hold, entered := m.hold, m.entered
	m.mu.Unlock()
	if entered != nil {
		entered <- struct{}{}
	}
	if hold != nil {
		<-hold
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx, st); err != nil {
		m.t.Errorf("commit of an inconsistent state: %v", err)
		return err
	}
	if m.fail != nil && m.fail() {
		m.lastFail = st
		return errCommit
	}
	m.state = st
	m.commits++
	if m.gc {
		for _, id := range st.Dropped {
			if err := m.blobs.Delete(ctx, id); err != nil {
				m.t.Errorf("collect dropped object: %v", err)
			}
		}
	}
	return nil
}

// check verifies what a flush promises about a staged state.
func (m *fakeMeta) check(ctx context.Context, st Staged) error {
	refs := make(map[blob.ID]bool)
	for i, s := range st.Segments {
		if i > 0 && s.Index <= st.Segments[i-1].Index {
			return fmt.Errorf("segments not sorted at %d", s.Index)
		}
		start := int64(s.Index) * m.segSize
		if start >= st.Size {
			return fmt.Errorf("segment %d beyond size %d", s.Index, st.Size)
		}
		want, _ := vault.ObjectSize(min(m.segSize, st.Size-start))
		if ms, ok := m.blobs.(*memStore); !ok || !ms.discard {
			info, err := m.blobs.Stat(ctx, s.Object)
			if err != nil {
				return fmt.Errorf("segment %d: %w", s.Index, err)
			}
			if info.Size != want {
				return fmt.Errorf("segment %d: object is %d bytes, want %d", s.Index, info.Size, want)
			}
		}
		refs[s.Object] = true
		segLen := min(m.segSize, st.Size-start)
		for j, p := range s.Patches {
			if p.From >= p.To || p.From < p.First || p.To > p.First+p.Blocks || (j > 0 && s.Patches[j-1].To > p.From) {
				return fmt.Errorf("segment %d: bad patch %+v", s.Index, p)
			}
			if ms, ok := m.blobs.(*memStore); !ok || !ms.discard {
				want, _ := vault.ObjectSize(patchLen(int64(p.First), int64(p.Blocks), segLen))
				info, err := m.blobs.Stat(ctx, p.Object)
				if err != nil {
					return fmt.Errorf("segment %d patch: %w", s.Index, err)
				}
				if info.Size != want {
					return fmt.Errorf("segment %d patch: object is %d bytes, want %d", s.Index, info.Size, want)
				}
			}
			refs[p.Object] = true
		}
	}
	for _, id := range st.New {
		if !refs[id] {
			return fmt.Errorf("new object %s is not in the list", id)
		}
	}
	old := make(map[blob.ID]bool)
	for _, s := range m.state.Segments {
		old[s.Object] = true
		for _, p := range s.Patches {
			old[p.Object] = true
		}
	}
	for _, id := range st.Dropped {
		if refs[id] || !old[id] {
			return fmt.Errorf("dropped object %s is still named or was never named", id)
		}
		delete(old, id)
	}
	for id := range old {
		if !refs[id] {
			return fmt.Errorf("object %s left the list without being dropped", id)
		}
	}
	return nil
}

// readAll reads the whole file through ReadAt in pieces of n bytes.
func readAll(t testing.TB, f *File, n int) []byte {
	t.Helper()
	out := make([]byte, 0, f.Size())
	buf := make([]byte, n)
	for off := int64(0); ; {
		k, err := f.ReadAt(context.Background(), buf, off)
		if err != nil {
			t.Fatalf("read at %d: %v", off, err)
		}
		if k == 0 {
			return out
		}
		out = append(out, buf[:k]...)
		off += int64(k)
	}
}

func mustWrite(t testing.TB, f *File, p []byte, off int64) {
	t.Helper()
	if n, err := f.WriteAt(context.Background(), p, off); err != nil || n != len(p) {
		t.Fatalf("write %d bytes at %d: %d, %v", len(p), off, n, err)
	}
}

func mustFlush(t testing.TB, f *File) {
	t.Helper()
	if err := f.Flush(context.Background()); err != nil {
		t.Fatalf("flush: %v", err)
	}
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n+7)
	for i := 0; i < n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	return b[:n:n]
}

func equalOrReport(t testing.TB, what string, got, want []byte) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	if len(got) != len(want) {
		t.Fatalf("%s: %d bytes, want %d", what, len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: first difference at byte %d: %#x, want %#x", what, i, got[i], want[i])
		}
	}
}

// memStore is a blob.Store in memory, for benchmarks that should measure this package
// rather than the disk, and for streaming far more data than a test should write to
// disk. With discard set it keeps only the objects' sizes.
type memStore struct {
	discard bool
	mu      sync.Mutex
	objs    map[blob.ID][]byte
	sizes   map[blob.ID]int64
	written int64 // bytes of every object ever committed
	opens   int   // calls of Open
}

func newMemStore(discard bool) *memStore {
	return &memStore{discard: discard, objs: make(map[blob.ID][]byte), sizes: make(map[blob.ID]int64)}
}

var _ blob.Store = (*memStore)(nil)

func (m *memStore) Create(ctx context.Context, id blob.ID) (blob.Pending, error) {
	return &memPending{m: m, id: id}, nil
}

func (m *memStore) Open(ctx context.Context, id blob.ID) (blob.Object, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.opens++
	b, ok := m.objs[id]
	if !ok {
		return nil, fmt.Errorf("open object %s: %w", id, blob.ErrNotFound)
	}
	return memObject{bytes.NewReader(b)}, nil
}

func (m *memStore) Stat(ctx context.Context, id blob.ID) (blob.Info, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	sz, ok := m.sizes[id]
	if !ok {
		return blob.Info{}, fmt.Errorf("stat object %s: %w", id, blob.ErrNotFound)
	}
	return blob.Info{ID: id, Size: sz, ModTime: time.Now()}, nil
}

func (m *memStore) Delete(ctx context.Context, id blob.ID) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.sizes[id]; !ok {
		return fmt.Errorf("delete object %s: %w", id, blob.ErrNotFound)
	}
	delete(m.objs, id)
	delete(m.sizes, id)
	return nil
}

func (m *memStore) List(ctx context.Context, fn func(blob.Info) error) error {
	m.mu.Lock()
	ids := make([]blob.ID, 0, len(m.sizes))
	for id := range m.sizes {
		ids = append(ids, id)
	}
	m.mu.Unlock()
	slices.SortFunc(ids, func(a, b blob.ID) int { return bytes.Compare(a[:], b[:]) })
	for _, id := range ids {
		info, err := m.Stat(ctx, id)
		if err != nil {
			continue
		}
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

func (m *memStore) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.sizes)
}

type memPending struct {
	m    *memStore
	id   blob.ID
	buf  []byte
	n    int64
	done bool
}

func (p *memPending) Write(b []byte) (int, error) {
	if p.done {
		return 0, blob.ErrFinished
	}
	if !p.m.discard {
		p.buf = append(p.buf, b...)
	}
	p.n += int64(len(b))
	return len(b), nil
}

func (p *memPending) Commit(ctx context.Context) error {
	if p.done {
		return blob.ErrFinished
	}
	p.done = true
	p.m.mu.Lock()
	defer p.m.mu.Unlock()
	if _, ok := p.m.sizes[p.id]; ok {
		return blob.ErrExists
	}
	if !p.m.discard {
		p.m.objs[p.id] = p.buf
	}
	p.m.sizes[p.id] = p.n
	p.m.written += p.n
	return nil
}

func (p *memPending) Abort() error {
	p.done = true
	return nil
}

type memObject struct{ r *bytes.Reader }

func (o memObject) ReadAt(b []byte, off int64) (int, error) { return o.r.ReadAt(b, off) }
func (o memObject) Size() int64                             { return o.r.Size() }
func (o memObject) Close() error                            { return nil }

var _ io.ReaderAt = memObject{}
