package portal

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	tusd "github.com/tus/tusd/v2/pkg/handler"
	"github.com/tus/tusd/v2/pkg/memorylocker"
	xslog "golang.org/x/exp/slog"

	"dsh/control"
	"dsh/limit"
)

// Limits on uploads in progress, so that abandoned transfers cannot pile up and no user
// can take the others' turn: each upload holds a staged file, and each chunk being received
// up to one piece of unflushed data in the daemon.
const (
	maxUploadsPerUser = 16
	// maxUploads caps the uploads in progress of all users together.
	maxUploads = 256
	// maxReceiving is how many chunks of one user are received at once; further chunks of
	// that user wait (without reading) until one is done.
	maxReceiving = 2
	// maxWriting is how many pieces are written into the store at once, among all users:
	// a slot is held only while bytes that have arrived are encrypted and written (never
	// while waiting for the network), and a freed slot goes to the user holding fewest.
	maxWriting = 4
	// pieceSize is the most of one chunk written by one call into the store, ending on a
	// multiple of it: one content segment (content.SegmentSize), so each piece's flush
	// writes whole segments and no chunk holds more than that unflushed.
	pieceSize = 16 << 20
	// uploadIdle is how long an unfinished upload waits for its client to come back.
	uploadIdle = 24 * time.Hour
)

// tusBase is where the tus endpoint lives.
const tusBase = "/files/tus/"

type ctxKey struct{}

// staged is one upload in progress and whose it is.
type staged struct {
	owner *uploads
	id    string
	uid   int
	up    Upload
	mu    sync.Mutex
	seen  time.Time
	ended bool
}

// uploads are the transfers in progress, by tus upload ID.
type uploads struct {
	svc Service
	log *slog.Logger
	now func() time.Time
	// locker is tusd's lock per upload; taking it stops the request that holds it (tusd
	// closes that request's body), which is how a sign-out ends a transfer in flight.
	locker *memorylocker.MemoryLocker
	// receiving bounds the chunks of each user being received; writing the pieces being
	// written into the store, in turns among users.
	receiving *limit.PerKey[int]
	writing   *limit.Fair[int]
	// touch keeps a sign-in's dsh session from ending for being idle while its chunk is
	// still arriving.
	touch func(*websession) bool

	mu sync.Mutex
	m  map[string]*staged
	// pending counts, per uid, the uploads being created: a slot is taken before the
	// (slow) creation, so parallel requests cannot all pass the limit.
	pending map[int]int
}

func newUploads(svc Service, log *slog.Logger, now func() time.Time, touch func(*websession) bool) *uploads {
	return &uploads{svc: svc, log: log, now: now, locker: memorylocker.New(),
		receiving: limit.NewPerKey[int](maxReceiving), writing: limit.NewFair[int](maxWriting), touch: touch,
		m: make(map[string]*staged), pending: make(map[int]int)}
}

// newTus builds the tus protocol handler over the uploads (tusd: creation, HEAD for the
// offset, PATCH to append, DELETE to give up).
func (s *Server) newTus() (http.Handler, error) {
	comp := tusd.NewStoreComposer()
	comp.UseCore(s.uploads)
	comp.UseTerminater(s.uploads)
	comp.UseLocker(s.uploads.locker)
	h, err := tusd.NewHandler(tusd.Config{
		StoreComposer:   comp,
		BasePath:        tusBase,
		DisableDownload: true,
		Cors:            &tusd.CorsConfig{Disable: true},
		// tusd logs every request at info; only its errors are worth the daemon's log.
		Logger:             xslog.New(xslog.NewTextHandler(os.Stderr, &xslog.HandlerOptions{Level: xslog.LevelError})),
		NetworkTimeout:     2 * time.Minute,
		AcquireLockTimeout: 10 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("portal: tus handler: %w", err)
	}
	return http.StripPrefix(tusBase[:len(tusBase)-1], h), nil
}

// tusAuth lets a tus request through only with a sign-in, and, for the requests that
// change something, the sign-in's CSRF token in the X-CSRF-Token header.
func (s *Server) tusAuth(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPatch {
			// A chunk refused or cut off half-way (a sign-out, a stalled or vanished
			// client) leaves body bytes unread; without this, net/http would try to read
			// them before answering, waiting on a client that may send nothing. Over HTTP/2
			// the header is dropped and the stream is reset instead.
			w.Header().Set("Connection", "close")
		}
		if s.sealed() {
			http.Error(w, "dsh is sealed", http.StatusServiceUnavailable)
			return
		}
		ws, ok := s.current(r)
		if !ok {
			http.Error(w, "your sign-in has ended; sign in again and pick the file again to resume", http.StatusUnauthorized)
			return
		}
		if r.Method == http.MethodPost && r.Header.Get("Upload-Defer-Length") != "" {
			// tusd would answer 501; the length is simply required here.
			http.Error(w, "the upload must declare its length (Upload-Length)", http.StatusBadRequest)
			return
		}
		if r.Method != http.MethodHead && r.Method != http.MethodGet && r.Method != http.MethodOptions && !sameToken(r.Header.Get("X-CSRF-Token"), ws.csrf) {
			http.Error(w, "missing or wrong CSRF token", http.StatusForbidden)
			return
		}
		// Another user's upload is refused before tusd takes its lock, which would stop
		// the owner's transfer in flight.
		if id := strings.TrimPrefix(r.URL.Path, tusBase); id != "" && !s.uploads.owns(id, ws.uid) {
			http.Error(w, "no such upload", http.StatusNotFound)
			return
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, ws)))
	})
}

func signedInFrom(ctx context.Context) (*websession, bool) {
	ws, ok := ctx.Value(ctxKey{}).(*websession)
	return ws, ok
}

// tusError makes err an answer the tus client shows: the daemon's status and message, or
// for an internal error (which may name paths or causes a user has no business seeing)
// a plain sentence, with the details in the daemon's log.
func (u *uploads) tusError(err error) error {
	status := control.StatusFor(err)
	if status == http.StatusInternalServerError {
		u.log.Error("portal: upload failed", "err", err)
		return tusd.NewError("ERR_INTERNAL", "something went wrong on the server; the operator can find the details in the daemon's log", status)
	}
	return tusd.NewError("ERR_DSH", control.UserMessage(err), status)
}

// NewUpload implements tusd.DataStore: a new staged file in the caller's Arrivals.
func (u *uploads) NewUpload(ctx context.Context, info tusd.FileInfo) (tusd.Upload, error) {
	ws, ok := signedInFrom(ctx)
	if !ok {
		return nil, tusd.NewError("ERR_AUTH", "not signed in", http.StatusUnauthorized)
	}
	if info.SizeIsDeferred || info.Size < 0 {
		return nil, tusd.NewError("ERR_SIZE", "the upload must declare its length", http.StatusBadRequest)
	}
	name := info.MetaData["filename"]
	if err := u.reserve(ws.uid); err != nil {
		return nil, err
	}
	up, err := u.svc.BeginUpload(ctx, control.Caller{UID: ws.uid, GID: -1, Remote: clientIn(ctx)}, name, info.Size)
	u.mu.Lock()
	u.pending[ws.uid]--
	if u.pending[ws.uid] == 0 {
		delete(u.pending, ws.uid)
	}
	u.mu.Unlock()
	if err != nil {
		return nil, u.tusError(err)
	}
	var rnd [16]byte
	rand.Read(rnd[:])
	st := &staged{owner: u, id: hex.EncodeToString(rnd[:]), uid: ws.uid, up: up, seen: u.now()}
	u.mu.Lock()
	u.m[st.id] = st
	u.mu.Unlock()
	return st, nil
}

// reserve takes a slot for a new upload of uid, within the per-user and overall limits.
func (u *uploads) reserve(uid int) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := u.pending[uid]
	for _, st := range u.m {
		if st.uid == uid {
			n++
		}
	}
	if n >= maxUploadsPerUser {
		return tusd.NewError("ERR_TOO_MANY", fmt.Sprintf("you have %d unfinished uploads; finish or cancel one first", n), http.StatusTooManyRequests)
	}
	total := len(u.m)
	for _, p := range u.pending {
		total += p
	}
	if total >= maxUploads {
		return tusd.NewError("ERR_BUSY", "the portal has too many uploads in progress; try again later", http.StatusServiceUnavailable)
	}
	u.pending[uid]++
	return nil
}

// owns reports whether id is an upload of uid.
func (u *uploads) owns(id string, uid int) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	st, ok := u.m[id]
	return ok && st.uid == uid
}

// GetUpload implements tusd.DataStore. An upload of another user is "not found", exactly
// like one that does not exist.
func (u *uploads) GetUpload(ctx context.Context, id string) (tusd.Upload, error) {
	ws, ok := signedInFrom(ctx)
	u.mu.Lock()
	st, found := u.m[id]
	u.mu.Unlock()
	if !ok || !found || st.uid != ws.uid {
		return nil, tusd.ErrNotFound
	}
	return st, nil
}

// AsTerminatableUpload implements tusd.TerminaterDataStore.
func (u *uploads) AsTerminatableUpload(up tusd.Upload) tusd.TerminatableUpload {
	return terminator{u, up.(*staged)}
}

type terminator struct {
	u  *uploads
	st *staged
}

// Terminate gives up an upload: the staged file goes. tusd already holds its lock.
func (t terminator) Terminate(ctx context.Context) error {
	if err := t.u.abort(ctx, t.st, false); err != nil {
		return t.u.tusError(err)
	}
	return nil
}

// abort forgets an upload and removes its staged file. interrupt first stops a transfer
// in flight (by taking its tusd lock), so that the abort need not wait for a slow or
// stalled client.
func (u *uploads) abort(ctx context.Context, st *staged, interrupt bool) error {
	if u.forget(st) {
		return nil
	}
	ctx = context.WithoutCancel(ctx)
	if interrupt {
		if lk, err := u.locker.NewLock(st.id); err == nil {
			lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := lk.Lock(lctx, func() {})
			cancel()
			if err == nil {
				defer lk.Unlock()
			}
		}
	}
	return st.up.Abort(ctx)
}

// forget removes st from the table and marks it ended; it reports whether it was already.
func (u *uploads) forget(st *staged) (ended bool) {
	u.mu.Lock()
	delete(u.m, st.id)
	u.mu.Unlock()
	st.mu.Lock()
	defer st.mu.Unlock()
	ended, st.ended = st.ended, true
	return ended
}

// abortUser gives up every upload of uid (sign-out).
func (u *uploads) abortUser(ctx context.Context, uid int) {
	for _, st := range u.list(func(st *staged) bool { return st.uid == uid }) {
		_ = u.abort(ctx, st, true)
	}
}

// abortAll gives up every upload (the portal is stopping; the staged files would be
// removed at the next unseal anyway).
func (u *uploads) abortAll(ctx context.Context) {
	for _, st := range u.list(func(*staged) bool { return true }) {
		_ = u.abort(ctx, st, true)
	}
}

// forgetAll drops every upload without touching its staged file: the store was sealed,
// the files are unreachable now and are removed at the next unseal. A client that comes
// back is told its upload is gone and starts again.
func (u *uploads) forgetAll() {
	for _, st := range u.list(func(*staged) bool { return true }) {
		u.forget(st)
	}
}

// sweep gives up uploads whose client has not come back for uploadIdle.
func (u *uploads) sweep(ctx context.Context) {
	now := u.now()
	for _, st := range u.list(func(st *staged) bool {
		st.mu.Lock()
		defer st.mu.Unlock()
		return now.Sub(st.seen) > uploadIdle
	}) {
		_ = u.abort(ctx, st, true)
	}
}

func (u *uploads) list(keep func(*staged) bool) []*staged {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []*staged
	for _, st := range u.m {
		if keep(st) {
			out = append(out, st)
		}
	}
	return out
}

// WriteChunk implements tusd.Upload. tusd holds the upload's lock around it.
//
// The chunk is written in pieces of at most pieceSize, each ending on a multiple of it.
// While a piece's bytes arrive, no write slot is held: a client that trickles its bytes
// holds only its own receiving turn, never a slot the other users' writes need.
func (st *staged) WriteChunk(ctx context.Context, offset int64, src io.Reader) (int64, error) {
	u := st.owner
	st.mu.Lock()
	if st.ended {
		st.mu.Unlock()
		return 0, tusd.ErrNotFound
	}
	st.seen = u.now()
	st.mu.Unlock()
	if err := u.receiving.Acquire(ctx, st.uid); err != nil {
		return 0, err
	}
	defer u.receiving.Release(st.uid)
	ws, _ := signedInFrom(ctx)
	sr := &slotReader{ctx: ctx, r: src, slots: u.writing, uid: st.uid, touch: func() {
		if ws != nil {
			u.touch(ws)
		}
	}}
	defer sr.release()
	var total int64
	for !sr.eof {
		end := (offset/pieceSize + 1) * pieceSize
		if size := st.up.Size(); size >= 0 {
			end = min(end, size)
		}
		// When the client goes away mid-chunk, what arrived is kept and the client resumes
		// from the new offset (HEAD answers it from Offset).
		sr.limit = end - offset
		n, err := st.up.Write(ctx, offset, sr)
		total += n
		offset += n
		sr.release()
		if err != nil {
			return total, u.tusError(err)
		}
		if end == offset && offset == st.up.Size() {
			break // at the declared size; tusd itself reads no further
		}
		if sr.limit > 0 {
			break // the chunk ended before the piece did
		}
	}
	return total, nil
}

// slotReader feeds one piece of a chunk to the store, holding a write slot only while the
// store works on bytes that have arrived: it reads the network with no slot held, takes a
// slot when it hands a buffer over, and gives it back when the store asks for more. The
// store's final flush of the piece runs under the slot of its last read.
type slotReader struct {
	ctx   context.Context
	r     io.Reader
	slots *limit.Fair[int]
	uid   int
	touch func()
	// limit is what is left of the current piece; eof is set once the chunk has ended.
	limit int64
	eof   bool
	held  bool
}

// Read fills p from the network as far as the piece allows, then takes a write slot.
func (s *slotReader) Read(p []byte) (int, error) {
	s.release()
	if s.limit <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > s.limit {
		p = p[:s.limit]
	}
	n := 0
	var err error
	for n < len(p) && err == nil {
		var m int
		m, err = s.r.Read(p[n:])
		n += m
	}
	s.limit -= int64(n)
	if err == io.EOF {
		s.eof = true
	}
	if n > 0 {
		s.touch()
	}
	if aerr := s.slots.Acquire(s.ctx, s.uid); aerr != nil {
		return n, aerr
	}
	s.held = true
	if err == nil && s.limit == 0 {
		err = io.EOF // the piece is complete; the next Write takes the rest
	}
	return n, err
}

func (s *slotReader) release() {
	if s.held {
		s.held = false
		s.slots.Release(s.uid)
	}
}

// GetInfo implements tusd.Upload.
func (st *staged) GetInfo(ctx context.Context) (tusd.FileInfo, error) {
	return tusd.FileInfo{ID: st.id, Size: st.up.Size(), Offset: st.up.Offset(), MetaData: tusd.MetaData{"filename": st.up.Name()}}, nil
}

// GetReader implements tusd.Upload; downloads are switched off.
func (st *staged) GetReader(ctx context.Context) (io.ReadCloser, error) {
	return nil, tusd.ErrNotImplemented
}

// FinishUpload implements tusd.Upload: the file appears in Arrivals now. A file that
// cannot be published is removed, and the client told: it has to start again.
func (st *staged) FinishUpload(ctx context.Context) error {
	ctx = context.WithoutCancel(ctx)
	if st.owner.forget(st) {
		return tusd.ErrNotFound
	}
	// The Upload serializes Finish with any Write and Abort itself.
	if _, err := st.up.Finish(ctx); err != nil {
		_ = st.up.Abort(ctx)
		return st.owner.tusError(err)
	}
	return nil
}
