// Package blob stores immutable objects: the encrypted contents of files, each under a random
// ID chosen by the caller or reserved from the store. It never sees plaintext and never
// interprets the bytes it holds.
//
// An object is written once, through a Pending writer, and becomes visible under its ID only
// when the writer is committed. A store must never overwrite an object in place (an ID, once
// committed, names the same bytes until it is deleted), never expose a half-written object
// to Open, Stat or List while it runs (after a crash, what an interrupted writer left may
// show as an object nobody references, for the collector), and never report success for a
// commit that a crash could undo.
// Those three rules are what let the filesystem treat its metadata commit, which points at
// objects by ID, as the one moment a write becomes durable.
//
// The Store interface is shaped so that an S3-compatible object store (MinIO, Ceph RGW) can
// implement it without changing callers: a Pending maps onto a multipart upload, Commit
// onto completing it with If-None-Match, ReadAt onto ranged GETs and List onto a paginated
// listing. Local is the implementation on a local folder; package blobtest holds the
// conformance suite every implementation must pass.
package blob

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"
)

// Errors callers are expected to match with errors.Is.
var (
	// ErrNotFound reports that no committed object has the ID. Deleting a missing object
	// returns it too, so the collector can ignore races with itself.
	ErrNotFound = errors.New("blob: object not found")
	// ErrExists reports that an object with the ID has already been committed. The existing
	// object is left unchanged.
	ErrExists = errors.New("blob: object already exists")
	// ErrFinished reports a Write or Commit on a Pending that was already committed or
	// aborted.
	ErrFinished = errors.New("blob: pending object already committed or aborted")
	// ErrInvalidID reports a string that is not the canonical form of an ID.
	ErrInvalidID = errors.New("blob: invalid object id")
)

// IDLen is the length of an ID in bytes; its string form is twice as long.
const IDLen = 16

// ID names an object. IDs are random rather than content hashes: the stored bytes are
// ciphertext under a per-file key, so equal plaintexts never share an object anyway, and a
// random name reveals nothing about the contents.
type ID [IDLen]byte

// NewID returns a fresh random ID.
func NewID() ID {
	var id ID
	// crypto/rand.Read never fails on supported platforms (it aborts the program instead),
	// so there is no error to hand back.
	rand.Read(id[:])
	return id
}

// ParseID parses the string form of an ID: exactly 32 lower-case hexadecimal characters.
// Anything else is refused, so a parsed ID can be used as a file or key name without any
// chance of path traversal or of two spellings naming one object.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 2*IDLen {
		return id, fmt.Errorf("parse object id: %w: length %d, want %d", ErrInvalidID, len(s), 2*IDLen)
	}
	for i := range id {
		hi, ok1 := fromHex(s[2*i])
		lo, ok2 := fromHex(s[2*i+1])
		if !ok1 || !ok2 {
			return ID{}, fmt.Errorf("parse object id %q: %w", s, ErrInvalidID)
		}
		id[i] = hi<<4 | lo
	}
	return id, nil
}

// fromHex accepts lower-case digits only; encoding/hex would also take upper case, giving
// one object two spellings.
func fromHex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// String returns the canonical form: 32 lower-case hexadecimal characters.
func (id ID) String() string {
	return hex.EncodeToString(id[:])
}

// Reserver is a Store that can prepare objects ahead of time, so that writing one under an
// ID it handed out costs less than under an ID the caller drew itself (Local creates the
// files and makes their names durable in batches, off the writer's path).
type Reserver interface {
	// Reserve returns a fresh random ID, as NewID does, for a Create soon after. The store
	// keeps the object invisible to Open, Stat and List until a Pending created under it
	// commits. An ID reserved and never used is given back by Delete (which still reports
	// ErrNotFound: nothing was committed), or at the latest when the store is closed; after
	// a crash it shows as an unreferenced object for the collector.
	Reserve() ID
}

// NewIDFor returns an ID for a new object in s: a reserved one if s can reserve, else NewID.
func NewIDFor(s Store) ID {
	if r, ok := s.(Reserver); ok {
		return r.Reserve()
	}
	return NewID()
}

// Small is implemented by stores that can keep a small object next to the metadata that
// names it: the object of a small write, which a metadata commit names right after. Such
// an object costs no file and no sync of its own.
type Small interface {
	// CreateSmall starts an object as Create does, for a caller that expects it to be
	// small (a few KiB; a larger one is stored as Create would) and commits metadata naming
	// it as soon as Commit returns. The store may then make the object durable with that
	// metadata commit rather than in Commit: when Commit returns nil, the object is
	// visible, and it is durable once the next durable commit of the metadata store
	// (kv.Store.Update or Sync) returns.
	CreateSmall(ctx context.Context, id ID) (Pending, error)
}

// NewSmallIDFor returns an ID for an object started with CreateSmall: a fresh one when s
// keeps small objects itself (a reservation would go unused), else NewIDFor.
func NewSmallIDFor(s Store) ID {
	if _, ok := s.(Small); ok {
		return NewID()
	}
	return NewIDFor(s)
}

// CreateSmall starts an object that is expected to be small in s: with Small.CreateSmall
// when s has it, else with Create.
func CreateSmall(ctx context.Context, s Store, id ID) (Pending, error) {
	if sm, ok := s.(Small); ok {
		return sm.CreateSmall(ctx, id)
	}
	return s.Create(ctx, id)
}

// Info describes a committed object.
type Info struct {
	// ID names the object.
	ID ID
	// Size is the object's length in bytes.
	Size int64
	// ModTime is when the object was committed, by the store's clock. The collector deletes
	// unreferenced objects only once ModTime is older than a grace period, so a store must
	// never report a time earlier than the start of the Commit that made the object visible
	// (an upload that took hours must not look hours old the moment it lands).
	ModTime time.Time
}

// Store holds immutable objects. Implementations are safe for concurrent use by many
// goroutines. Every method honours ctx for the call itself; a store may also bind the ctx
// given to Create to the whole upload (a remote store's connection).
type Store interface {
	// Create starts a new object under id. The object stays invisible to Open, Stat and
	// List until Commit succeeds. Create may fail at once with ErrExists if id is already
	// committed; otherwise Commit reports the clash.
	Create(ctx context.Context, id ID) (Pending, error)
	// Open opens a committed object for random-access reads. It returns an error wrapping
	// ErrNotFound if there is none.
	Open(ctx context.Context, id ID) (Object, error)
	// Stat describes a committed object, or returns an error wrapping ErrNotFound.
	Stat(ctx context.Context, id ID) (Info, error)
	// Delete removes a committed object. Deleting a missing object returns an error
	// wrapping ErrNotFound. Delete need not be durable: after a crash a deleted object may
	// reappear, and being unreferenced it is collected again. An Object already open may
	// or may not stay readable, depending on the store.
	Delete(ctx context.Context, id ID) error
	// List calls fn for every committed object, in no particular order. Objects created or
	// deleted while List runs may or may not be reported. If fn returns an error, List stops
	// and returns that error unchanged. fn may call other methods of the store.
	List(ctx context.Context, fn func(Info) error) error
}

// Pending is an object being written. Writes stream: an implementation holds at most a
// bounded buffer in memory, however large the object grows. A Pending is not safe for
// concurrent use. Every Pending must end in Commit or Abort; one that is dropped leaves its
// partial data (a temporary file, an incomplete multipart upload, a reserved file) for the
// store's own cleanup or, after a restart, for the collector to find.
type Pending interface {
	// Write appends to the object. After Commit or Abort it returns ErrFinished.
	io.Writer
	// Commit makes the object durable and then visible under its ID. When it returns nil,
	// the object survives a crash of the process or machine. It fails with ErrExists if the
	// ID was committed meanwhile, leaving that object untouched, and with ctx's error,
	// leaving nothing visible, if ctx is already done. Commit finishes the Pending whether
	// or not it succeeds: after other failures the object may or may not exist (a remote
	// store cannot always tell), so callers must not reference it, and it is collected as
	// unreferenced. A second Commit returns ErrFinished.
	Commit(ctx context.Context) error
	// Abort discards the object. It is a no-op returning nil once the Pending is finished,
	// so `defer p.Abort()` right after Create is the intended pattern.
	Abort() error
}

// Object is an open committed object. ReadAt follows the io.ReaderAt contract, as os.File
// does: it may be called from many goroutines at once, and a read reaching past the end
// returns the bytes there are together with io.EOF (never wrapped).
type Object interface {
	io.ReaderAt
	io.Closer
	// Size is the object's length in bytes.
	Size() int64
}
