package store

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"golang.org/x/crypto/chacha20poly1305"

	"dsh/audit"
	"dsh/internal/diskio"
	"dsh/kv"
	"dsh/vault"
)

// The store's epoch: evidence that its three parts are from one point in time.
//
// Each part is authenticated on its own (sealed kv values, AEAD content chunks, a
// hash-chained audit log), but each could still be put back, whole, from an older copy:
// metadata from before a member was removed, with today's audit log that records the
// removal; or a file's metadata and objects from last week. So the store keeps a number,
// the epoch, that only grows, and writes it into all three parts at every checkpoint, in
// this order:
//
//  1. the blob store: the file "epoch" in the blob folder, sealed under a key derived
//     from the root key, replaced atomically;
//  2. the metadata: the record "store/epoch" in kv (sealed like every value), which also
//     holds the audit log's last fsync'd record (Position: seq, hash, where it lies);
//  3. the audit log: a record "store.epoch" naming the number.
//
// A crash between two steps leaves an earlier part one epoch ahead of a later one, never
// behind. At unseal the parts must agree: blobs = meta or meta+1, meta = audit or audit+1,
// and the audit log must still hold the record the metadata saw it reach. Anything else
// means a part was put back from another time, and unseal is refused (ErrRollback),
// counted and audited. Between checkpoints the metadata's copy of the audit position is
// refreshed every second or so (NoteAuditHead), so that an audit log whose tail was cut is
// caught to within that.
//
// Checkpoints happen at init, at every unseal and seal, after every change of accounts,
// projects, shares and memberships (the daemon calls Checkpoint), and every few minutes
// while the store changes. A part put back from a copy taken in the same epoch goes
// unnoticed; so does the whole store put back at once, which no evidence on the same disk
// can reveal: that needs the signed audit checkpoints kept off the host (a later step).

// ErrRollback is wrapped when the parts of the store do not agree on their epoch.
var ErrRollback = errors.New("the store's parts are from different points in time (a part was put back from an older copy?)")

// Names of the epoch's records.
const (
	epochRecordKey = "store/epoch"
	blobEpochFile  = "epoch"
	epochAction    = "store.epoch"
)

// Layouts, version 1. The kv record (inside kv's own sealing):
//
//	version 1 | epoch u64 | audit seq u64 | audit hash [32] | audit segment u64 | audit offset i64
//
// The blob store's file: version 1 | nonce [24] | XChaCha20-Poly1305(epoch key, nonce,
// epoch u64, "dsh v1 blob epoch"), where the epoch key is the root key's "dsh v1 epoch".
const (
	epochVersion   = 1
	epochRecordLen = 1 + 8 + 8 + 32 + 8 + 8
	blobEpochAD    = "dsh v1 blob epoch"
)

type epochRecord struct {
	epoch uint64
	audit audit.Position
}

func (r epochRecord) encode() []byte {
	b := make([]byte, 0, epochRecordLen)
	b = append(b, epochVersion)
	b = binary.BigEndian.AppendUint64(b, r.epoch)
	b = binary.BigEndian.AppendUint64(b, r.audit.Seq)
	b = append(b, r.audit.Hash[:]...)
	b = binary.BigEndian.AppendUint64(b, r.audit.Segment)
	return binary.BigEndian.AppendUint64(b, uint64(r.audit.Offset))
}

func decodeEpochRecord(b []byte) (epochRecord, error) {
	if len(b) != epochRecordLen || b[0] != epochVersion {
		return epochRecord{}, fmt.Errorf("%w: the metadata's epoch record is malformed", ErrRollback)
	}
	var r epochRecord
	r.epoch = binary.BigEndian.Uint64(b[1:])
	r.audit.Seq = binary.BigEndian.Uint64(b[9:])
	copy(r.audit.Hash[:], b[17:49])
	r.audit.Segment = binary.BigEndian.Uint64(b[49:])
	r.audit.Offset = int64(binary.BigEndian.Uint64(b[57:]))
	return r, nil
}

// epochState is the epoch as the open Parts know it.
type epochState struct {
	key     vault.Key // seals the blob store's file
	blobDir string

	mu sync.Mutex
	// epoch is the current epoch; written is how far the audit log has recorded it.
	epoch, written uint64
	// noted is the audit position last written to the metadata.
	noted audit.Position
}

// verifyEpoch holds the three parts against each other; see above.
func (p *Parts) verifyEpoch(ctx context.Context) error {
	e := &p.epoch
	var rec epochRecord
	found := false
	err := p.KV.View(ctx, func(tx kv.Txn) error {
		v, err := tx.Get([]byte(epochRecordKey))
		if errors.Is(err, kv.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		found = true
		rec, err = decodeEpochRecord(v)
		return err
	})
	if errors.Is(err, kv.ErrIntegrity) {
		return fmt.Errorf("%w: the metadata's epoch record does not authenticate: %w", ErrRollback, err)
	}
	if err != nil {
		return fmt.Errorf("read the metadata's epoch: %w", err)
	}
	if !found {
		return fmt.Errorf("%w: the metadata has no epoch record (it was made by an older dsh, or the record was removed)", ErrRollback)
	}
	blobs, err := readBlobEpoch(e.blobDir, &e.key)
	if err != nil {
		return err
	}
	// The latest epoch record of the audit log, which the log keeps in view (Track).
	var a uint64
	if t := p.Audit.Tracked(); t != "" {
		if a, err = strconv.ParseUint(t, 10, 64); err != nil {
			return fmt.Errorf("%w: the audit log's latest epoch record names %q", ErrRollback, t)
		}
	}
	m := rec.epoch
	switch {
	case m < a:
		return fmt.Errorf("%w: the metadata is at epoch %d but the audit log recorded epoch %d: the metadata is older than the audit log", ErrRollback, m, a)
	case m > a+1:
		return fmt.Errorf("%w: the metadata is at epoch %d but the audit log recorded only epoch %d: the audit log is older than the metadata", ErrRollback, m, a)
	case blobs < m:
		return fmt.Errorf("%w: the blob store is at epoch %d but the metadata at %d: the blob store is older than the metadata", ErrRollback, blobs, m)
	case blobs > m+1:
		return fmt.Errorf("%w: the blob store is at epoch %d but the metadata at %d: the metadata is older than the blob store", ErrRollback, blobs, m)
	}
	if err := p.Audit.CheckPosition(rec.audit); err != nil {
		return fmt.Errorf("%w: the audit log does not hold what the metadata saw it reach: %w", ErrRollback, err)
	}
	e.mu.Lock()
	e.epoch, e.written, e.noted = m, a, rec.audit
	e.mu.Unlock()
	return nil
}

// Epoch returns the store's current epoch.
func (p *Parts) Epoch() uint64 {
	p.epoch.mu.Lock()
	defer p.epoch.mu.Unlock()
	return p.epoch.epoch
}

// Checkpoint moves the store to the next epoch, in all three parts (see above); why goes
// into the audit record ("unseal", "seal", "acl", "interval"). If the audit record of the
// current epoch is missing (an earlier Checkpoint could not write it), it is written first
// and the epoch does not move until it is, so that the parts never drift more than one
// epoch apart.
func (p *Parts) Checkpoint(ctx context.Context, why string) error {
	e := &p.epoch
	e.mu.Lock()
	defer e.mu.Unlock()
	ctx = context.WithoutCancel(ctx)
	if e.written < e.epoch {
		if err := p.recordEpoch(ctx, e.epoch, why); err != nil {
			return err
		}
	}
	next := e.epoch + 1
	if err := writeBlobEpoch(e.blobDir, &e.key, next); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	pos := p.Audit.Stats().Synced
	err := p.KV.Update(ctx, func(tx kv.Txn) error {
		return tx.Set([]byte(epochRecordKey), epochRecord{epoch: next, audit: pos}.encode())
	})
	if err != nil {
		return fmt.Errorf("checkpoint: write the metadata's epoch: %w", err)
	}
	e.epoch, e.noted = next, pos
	return p.recordEpoch(ctx, next, why)
}

// recordEpoch writes the audit record of epoch n. e.mu must be held.
func (p *Parts) recordEpoch(ctx context.Context, n uint64, why string) error {
	_, err := p.Audit.Append(ctx, audit.Entry{UID: -1, Action: epochAction, Object: strconv.FormatUint(n, 10), Result: "ok", Detail: why}, audit.Durable)
	if err != nil {
		return fmt.Errorf("checkpoint: record epoch %d in the audit log: %w", n, err)
	}
	p.epoch.written = n
	return nil
}

// NoteAuditHead writes the audit log's last fsync'd record into the metadata's epoch
// record, if it moved, so that a later unseal can tell that the log still reaches it. It
// does not wait for the disk: losing the latest note in a crash only makes the check less
// recent.
func (p *Parts) NoteAuditHead(ctx context.Context) error {
	e := &p.epoch
	e.mu.Lock()
	defer e.mu.Unlock()
	pos := p.Audit.Stats().Synced
	if pos.Seq == e.noted.Seq || e.epoch == 0 {
		return nil
	}
	err := p.KV.UpdateLazy(ctx, func(tx kv.Txn) error {
		return tx.Set([]byte(epochRecordKey), epochRecord{epoch: e.epoch, audit: pos}.encode())
	})
	if err != nil {
		return fmt.Errorf("note the audit head: %w", err)
	}
	e.noted = pos
	return nil
}

func writeBlobEpoch(dir string, key *vault.Key, n uint64) error {
	aead, err := chacha20poly1305.NewX(key[:])
	if err != nil {
		return err
	}
	out := make([]byte, 1+chacha20poly1305.NonceSizeX, 1+chacha20poly1305.NonceSizeX+8+chacha20poly1305.Overhead)
	out[0] = epochVersion
	rand.Read(out[1:])
	out = aead.Seal(out, out[1:], binary.BigEndian.AppendUint64(nil, n), []byte(blobEpochAD))
	if err := diskio.WriteFileAtomic(filepath.Join(dir, blobEpochFile), out, 0o600); err != nil {
		return fmt.Errorf("write the blob store's epoch: %w", err)
	}
	return nil
}

func readBlobEpoch(dir string, key *vault.Key) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(dir, blobEpochFile))
	if errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("%w: the blob store has no epoch file", ErrRollback)
	}
	if err != nil {
		return 0, fmt.Errorf("read the blob store's epoch: %w", err)
	}
	aead, err := chacha20poly1305.NewX(key[:])
	if err != nil {
		return 0, err
	}
	const n = 1 + chacha20poly1305.NonceSizeX
	if len(b) != n+8+chacha20poly1305.Overhead || b[0] != epochVersion {
		return 0, fmt.Errorf("%w: the blob store's epoch file is malformed", ErrRollback)
	}
	plain, err := aead.Open(nil, b[1:n], b[n:], []byte(blobEpochAD))
	if err != nil {
		return 0, fmt.Errorf("%w: the blob store's epoch file does not authenticate", ErrRollback)
	}
	return binary.BigEndian.Uint64(plain), nil
}
