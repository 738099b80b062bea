package fs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"dsh/content"
	"dsh/meta"
	"dsh/scan"
	"dsh/vault"
)

// Errors of resumable uploads, besides those of the ingest path (ErrNoSession, ErrBadName,
// ErrSealed, ErrNotArrivals).
var (
	// ErrOffset: a write did not start where the upload stands, or Finish was called
	// before the announced size was received. The client asks Offset and resumes there.
	ErrOffset = errors.New("upload offset mismatch")
	// ErrTooLarge: the body goes on past the size announced at the start of the upload
	// (or past the largest file dsh stores). Nothing past the announced size is kept.
	ErrTooLarge = errors.New("upload larger than announced")
	// ErrUploadClosed: the upload was finished or aborted.
	ErrUploadClosed = errors.New("upload already finished or aborted")
)

// Upload is a resumable transfer into one user's Arrivals folder: a file staged in the
// user's hidden staging folder, written in pieces that each become durable before the
// write returns, and published by Finish exactly as Ingest publishes a file (Ingest is an
// Upload written in one piece). Until then nothing is visible in the folder; Abort, or a
// daemon restart, removes the staged file.
//
// Every call checks the uploader's session anew: a logout, expiry, disable or seal makes
// the next call (and a running Write, at its next MiB) fail with ErrNoSession or
// ErrSealed. After a logout the upload can resume once the user has logged in again; after
// a seal it is lost (the staged file is removed at the next unseal).
//
// Write, Finish and Abort are serialized: one waits for a running other, so a transport
// that needs to stop a Write blocked on a stalled client ends it through the Write's
// context or by failing its reader. Offset, Size, Name and UID never wait.
//
// An Upload that is neither finished nor aborted keeps its staged file until the store is
// sealed: a transport must Abort the uploads it gives up on.
type Upload struct {
	g       *Group
	be      *Backend
	uid     int
	user    string
	name    string
	size    int64 // -1: unknown
	share   string
	root    meta.Ino // the user's Arrivals folder
	inc     meta.Ino // its staging folder
	tmp     string   // the staged file's name in inc
	staged  meta.Ino
	id      vault.FileID
	wrapped vault.WrappedKey

	// off is the size of the staged file as the metadata last recorded it: the bytes
	// that survive anything but Abort.
	off atomic.Int64

	mu sync.Mutex
	// f is the staged file's open content while a Write runs; between writes it is nil
	// (closed, with its key), and a Write reopens it from what the metadata recorded.
	f     *content.File
	state uploadState
}

type uploadState uint8

const (
	uploadOpen uploadState = iota
	uploadFinished
	uploadAborted
)

// BeginUpload starts a resumable upload of a file of size bytes (-1 when unknown) into
// uid's Arrivals folder, to be published as name (or "name (N).ext" when name is taken).
// It checks the name and uid's session as Ingest does and stages an empty file.
func (g *Group) BeginUpload(ctx context.Context, uid int, name string, size int64) (*Upload, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if size < -1 {
		return nil, fmt.Errorf("arrivals: invalid upload size %d", size)
	}
	if size > content.MaxSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrTooLarge, size)
	}
	be, user, ring, root, err := g.arrivalsFolder(ctx, uid)
	if err != nil {
		return nil, err
	}
	inc, err := be.Meta.Lookup(ctx, root.Ino, incomingDir)
	if errors.Is(err, meta.ErrNotFound) {
		inc, err = be.Meta.Create(ctx, root.Ino, incomingDir, meta.KindDir, 0o700, "", meta.Content{})
		if errors.Is(err, meta.ErrExists) {
			inc, err = be.Meta.Lookup(ctx, root.Ino, incomingDir)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("arrivals: staging folder: %w", err)
	}
	u := &Upload{g: g, be: be, uid: uid, user: user, name: name, size: size,
		share: arrivalsPrefix + user, root: root.Ino, inc: inc.Ino}
	var rnd [12]byte
	rand.Read(rnd[:])
	u.tmp = hex.EncodeToString(rnd[:])
	// The key is used under the keyring's lock; a logout or seal meanwhile ends the upload.
	ok, err := ring.UseArrivals(func(k *vault.Key) (err error) {
		u.id, u.wrapped, err = be.Content.NewFile(u.share, k)
		return err
	})
	if !ok {
		return nil, ErrNoSession
	}
	if err != nil {
		return nil, fmt.Errorf("arrivals: new file: %w", err)
	}
	staged, err := be.Meta.Create(ctx, inc.Ino, u.tmp, meta.KindFile, 0o640, "", meta.Content{FileID: u.id, Key: u.wrapped})
	if err != nil {
		return nil, fmt.Errorf("arrivals: stage upload: %w", err)
	}
	u.staged = staged.Ino
	// The staged file's data is opened by the first Write, and closed after each.
	return u, nil
}

// Offset returns how many bytes of the file are durably staged: where the next Write
// must start.
func (u *Upload) Offset() int64 { return u.off.Load() }

// Size returns the size announced at BeginUpload, -1 when unknown.
func (u *Upload) Size() int64 { return u.size }

// limit is the most bytes the upload may hold: its announced size, or the largest file.
func (u *Upload) limit() int64 {
	if u.size >= 0 {
		return u.size
	}
	return content.MaxSize
}

// Name returns the name the file is to be published under (Finish may add " (N)").
func (u *Upload) Name() string { return u.name }

// UID returns the uploader's uid.
func (u *Upload) UID() int { return u.uid }

// live checks that the uploader may still use its Arrivals (arrivalsCaller), on the backend
// and as the user the upload began with.
func (u *Upload) live() error {
	be, user, _, err := u.g.arrivalsCaller(u.uid)
	switch {
	case err != nil:
		return err
	case be != u.be:
		return ErrSealed
	case user != u.user:
		return ErrNoSession
	}
	return nil
}

// usable refuses a finished or aborted upload. u.mu must be held.
func (u *Upload) usable() error {
	if u.state != uploadOpen {
		return fmt.Errorf("arrivals: upload of %q: %w", u.name, ErrUploadClosed)
	}
	return nil
}

// open opens the staged file's content at size with segs, unwrapping its key with the
// session's Arrivals key. u.mu must be held (or u not yet shared).
func (u *Upload) open(ctx context.Context, size int64, segs []content.Segment) error {
	ring, ok := u.be.Sessions.Keyring(u.uid)
	if !ok {
		return ErrNoSession
	}
	var f *content.File
	ok, err := ring.UseArrivals(func(k *vault.Key) (err error) {
		f, err = u.be.Content.Open(u.share, k, u.id, u.wrapped, size, segs, commitTo(u.be, u.staged, u.id, u.wrapped, nil))
		return err
	})
	if !ok {
		return ErrNoSession
	}
	if err != nil {
		return fmt.Errorf("arrivals: open staged file: %w", err)
	}
	u.f = f
	u.off.Store(size)
	u.g.uploads.add(f)
	if u.g.backend() != u.be {
		// Sealed meanwhile, after Detach closed the uploads' files.
		u.dropFile()
		return ErrSealed
	}
	return nil
}

// reopen opens the staged file again from what the metadata recorded, after a session
// ended or a store failure closed it. u.mu must be held.
func (u *Upload) reopen(ctx context.Context) error {
	a, err := u.be.Meta.GetAttr(ctx, u.staged)
	if err != nil {
		return fmt.Errorf("arrivals: staged file: %w", err)
	}
	segs, err := contentSegmentsOf(ctx, u.be, &a)
	if err != nil {
		return fmt.Errorf("arrivals: staged file: %w", err)
	}
	return u.open(ctx, a.Size, segs)
}

// dropFile closes the staged file's content, dropping its cipher and anything unflushed.
// u.mu must be held.
func (u *Upload) dropFile() {
	if u.f != nil {
		u.g.uploads.remove(u.f)
		u.f.Close()
		u.f = nil
	}
}

// resync drops the open content after a store failure and takes the offset from the
// metadata, which holds every flush that committed, even one WriteAt started by itself.
// u.mu must be held.
func (u *Upload) resync(ctx context.Context) {
	u.dropFile()
	if errors.Is(u.live(), ErrSealed) {
		return // the store may be closing; the staged file goes at the next unseal
	}
	if a, err := u.be.Meta.GetAttr(context.WithoutCancel(ctx), u.staged); err == nil {
		u.off.Store(a.Size)
	}
}

// Write appends the bytes of r to the staged file at off, which must be Offset() (else an
// error wrapping ErrOffset). It reads r until io.EOF, or until the announced size is
// reached; a body that goes on past the size fails with ErrTooLarge, and nothing past the
// size is kept. Whatever way it ends, the bytes received are made durable first: after
// any reader error (a dropped connection's io.ErrUnexpectedEOF, a cancelled ctx, ...),
// Offset has advanced by the bytes kept and the client can resume from there. It returns
// the number of bytes this call added to Offset. A session that ends meanwhile fails it
// with ErrNoSession; a seal with ErrSealed.
func (u *Upload) Write(ctx context.Context, off int64, r io.Reader) (int64, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if err := u.usable(); err != nil {
		return 0, err
	}
	if err := u.live(); err != nil {
		u.dropFile()
		return 0, fmt.Errorf("arrivals: write upload of %q: %w", u.name, err)
	}
	start := u.off.Load()
	if off != start {
		return 0, fmt.Errorf("arrivals: write upload of %q at %d: %w: the upload is at %d", u.name, off, ErrOffset, start)
	}
	if u.f == nil {
		if err := u.reopen(ctx); err != nil {
			return 0, err
		}
	}
	// The store's work finishes even when ctx ends: what was received is kept.
	bg := context.WithoutCancel(ctx)
	bp := ingestBufs.Get().(*[]byte)
	defer ingestBufs.Put(bp)
	buf := *bp
	pos := start
	var (
		rerr     error // the reader failed (or ctx ended): keep what came, report this
		sessErr  error // the session ended or the store was sealed
		storeErr error // the store failed: keep what the metadata recorded
		tooLarge bool
	)
	for {
		if err := ctx.Err(); err != nil {
			rerr = err
			break
		}
		want := int(min(int64(len(buf)), u.limit()-pos))
		if want == 0 {
			// At the announced size (or the largest file): the body must end here.
			n, err := fill(r, buf[:1])
			switch {
			case n > 0:
				tooLarge = true
			case err != io.EOF:
				rerr = err
			}
			break
		}
		n, err := fill(r, buf[:want])
		if n > 0 {
			// Bytes that arrive after the session ended are not written.
			if sessErr = u.live(); sessErr != nil {
				break
			}
			k, werr := u.f.WriteAt(bg, buf[:n], pos)
			pos += int64(k)
			if u.g.tree != nil && k > 0 {
				u.g.tree.WrittenBytes.Add(float64(k))
			}
			if werr != nil {
				storeErr = fmt.Errorf("arrivals: write: %w", werr)
				break
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			rerr = err
			break
		}
	}
	if storeErr == nil && !errors.Is(sessErr, ErrSealed) {
		if err := u.f.Flush(bg); err != nil {
			storeErr = fmt.Errorf("arrivals: make the upload durable: %w", err)
		} else {
			u.off.Store(pos)
		}
	}
	if storeErr != nil && errors.Is(u.live(), ErrSealed) {
		sessErr = ErrSealed // the seal closed the file under the write
	}
	if storeErr != nil || sessErr != nil {
		u.resync(ctx)
	}
	// Between two writes (a client that went away may take hours to come back, or never)
	// the staged file is not held open: its key leaves memory with it, as every file's
	// does at logout, and the next Write reopens it from what the metadata recorded.
	u.dropFile()
	n := u.off.Load() - start
	switch {
	case sessErr != nil:
		return n, fmt.Errorf("arrivals: upload of %q interrupted: %w", u.name, sessErr)
	case storeErr != nil:
		return n, storeErr
	case rerr != nil:
		return n, fmt.Errorf("arrivals: upload interrupted: %w", rerr)
	case tooLarge:
		return n, fmt.Errorf("arrivals: upload of %q: %w: more than %d bytes", u.name, ErrTooLarge, u.limit())
	}
	return n, nil
}

// Finish publishes the staged file, once Offset has reached the announced size (else an
// error wrapping ErrOffset) and the malware gate has called it clean (ingestscan.go): a file
// the scanner stops is moved to quarantine (an error wrapping ErrQuarantined, the upload
// closed), and without a verdict nothing is published (an error wrapping ErrScanner, the
// upload left open). Publishing is one rename, under the first free name of name, "name (1).ext",
// ..., never over an existing file; the arrival is audited, and if the audit record
// cannot be written the file is taken back as if it had never arrived. Once the file was
// published the upload is closed, whatever the outcome; an error before that leaves it
// open, to finish again or abort.
func (u *Upload) Finish(ctx context.Context) (Arrival, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if err := u.usable(); err != nil {
		return Arrival{}, err
	}
	if err := u.live(); err != nil {
		u.dropFile()
		return Arrival{}, fmt.Errorf("arrivals: finish upload of %q: %w", u.name, err)
	}
	off := u.off.Load()
	if u.size >= 0 && off != u.size {
		return Arrival{}, fmt.Errorf("arrivals: finish upload of %q: %w: %d of %d bytes received", u.name, ErrOffset, off, u.size)
	}
	be := u.be
	// Every Write flushed and closed the staged data before it returned: it is durable.
	if off == 0 {
		// An empty file has no objects; its metadata still needs its arrival time.
		if _, err := be.Meta.SetContent(ctx, u.staged, 0, meta.Content{FileID: u.id, Key: u.wrapped}, time.Now().UnixNano()); err != nil {
			return Arrival{}, fmt.Errorf("arrivals: record empty upload: %w", err)
		}
	}
	// The malware gate: nothing is published that the scanner did not call clean. A file
	// it stops goes to quarantine, and the upload ends there.
	v, err := u.scanStaged(ctx, off)
	if err != nil {
		return Arrival{}, err
	}
	if v.Result != scan.Clean {
		return u.quarantine(ctx, v, off)
	}
	// Publish under the first free name: one rename, never over an existing file.
	final := ""
	for i := 0; i < 1000 && final == ""; i++ {
		c := candidate(u.name, i)
		if len(c) > 255 {
			break
		}
		_, err := be.Meta.Rename(ctx, u.inc, u.tmp, u.root, c, meta.RenameNoReplace)
		switch {
		case err == nil:
			final = c
		case !errors.Is(err, meta.ErrExists):
			return Arrival{}, fmt.Errorf("arrivals: publish upload: %w", err)
		}
	}
	if final == "" {
		return Arrival{}, fmt.Errorf("%w: no free name for %q", ErrBadName, u.name)
	}
	u.state = uploadFinished
	u.dropFile()
	bg := context.WithoutCancel(ctx)
	takeBack := func() {
		if ua, uerr := be.Meta.Unlink(bg, u.root, final); uerr == nil {
			u.g.reapIfUnused(bg, be, ua.Ino, ua.Nlink)
		}
	}
	a, err := be.Meta.GetAttr(bg, u.staged)
	if err != nil {
		// Not accounted for yet: take it back rather than leave it unaudited.
		takeBack()
		return Arrival{}, fmt.Errorf("arrivals: published upload: %w", err)
	}
	if err := u.g.recordAs(ctx, be, u.uid, u.user, "arrivals.upload", u.user+"/"+final, "ok", fmt.Sprintf("%d bytes; scan clean", a.Size)); err != nil {
		// The file is there but unaccounted for: take it back, as if it had never arrived.
		takeBack()
		return Arrival{}, err
	}
	return u.g.arrival(&a, final), nil
}

// Abort ends the upload without publishing it: the staged file is removed (its objects go
// to the collector) and the failed transfer is audited. The upload is closed even when
// that fails (the staged file is then removed at the next unseal). Aborting again does
// nothing; aborting a finished upload fails with ErrUploadClosed.
func (u *Upload) Abort(ctx context.Context) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	switch u.state {
	case uploadAborted:
		return nil
	case uploadFinished:
		return u.usable()
	}
	u.state = uploadAborted
	u.dropFile()
	if errors.Is(u.live(), ErrSealed) {
		return fmt.Errorf("arrivals: abort upload of %q: %w; the staged file is removed at the next unseal", u.name, ErrSealed)
	}
	bg := context.WithoutCancel(ctx)
	var errs []error
	if _, err := u.be.Meta.Unlink(bg, u.inc, u.tmp); err == nil {
		if err := u.be.Meta.Reap(bg, u.staged); err != nil {
			errs = append(errs, fmt.Errorf("arrivals: abort upload of %q: %w", u.name, err))
		}
	} else if !errors.Is(err, meta.ErrNotFound) {
		errs = append(errs, fmt.Errorf("arrivals: abort upload of %q: %w", u.name, err))
	}
	if err := u.g.recordAs(bg, u.be, u.uid, u.user, "arrivals.upload", u.user+"/"+u.name, "error", "transfer not completed"); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// uploadFiles are the open contents of a Group's uploads in progress. Detach closes them,
// so that a seal drops their ciphers at once and not only at their uploads' next call.
type uploadFiles struct {
	mu sync.Mutex
	m  map[*content.File]struct{}
}

func (s *uploadFiles) add(f *content.File) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[*content.File]struct{})
	}
	s.m[f] = struct{}{}
}

func (s *uploadFiles) remove(f *content.File) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, f)
}

// closeAll closes every upload's content; a Write running meanwhile fails, and every
// upload of the detached backend fails with ErrSealed from then on. Whatever was not
// flushed is dropped: the staged files are removed at the next attach anyway.
func (s *uploadFiles) closeAll() {
	s.mu.Lock()
	m := s.m
	s.m = nil
	s.mu.Unlock()
	for f := range m {
		f.Close()
	}
}
