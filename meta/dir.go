package meta

import (
	"context"
	"fmt"
	"math"

	"dsh/kv"
)

// readDirBatch is how many entries one read transaction of ReadDir collects: about one FUSE
// readdir buffer, so that a listing reads little ahead, and each transaction stays short.
const readDirBatch = 128

// ReadDir calls fn for the entries of dir after the cookie off (0 means from the start), in
// the order they were created, until fn returns false or the entries run out. "." and ".."
// are not reported.
//
// An entry's cookie is its sequence number in dir, so cookies stay valid for ever: an entry
// present throughout a listing is reported exactly once, whatever else is added, removed or
// renamed meanwhile (an entry renamed away and back may be seen under both names, as POSIX
// allows). fn runs outside any transaction and may call the Store.
func (s *Store) ReadDir(ctx context.Context, dir Ino, off uint64, fn func(Dirent) bool) error {
	batch := make([]Dirent, 0, readDirBatch)
	for first := true; ; first = false {
		batch = batch[:0]
		err := s.db.View(ctx, func(tx kv.Txn) error {
			if first {
				if _, err := loadDir(tx, dir); err != nil {
					return err
				}
			}
			if off == math.MaxUint64 {
				return nil
			}
			return tx.Scan(orderDirPrefix(dir), orderKey(dir, off+1), func(k, v []byte) (bool, error) {
				seq, err := parseOrderKey(k)
				if err != nil {
					return false, err
				}
				ino, kind, name, err := decodeOrder(v)
				if err != nil {
					return false, fmt.Errorf("entry %d: %w", seq, err)
				}
				batch = append(batch, Dirent{Name: name, Ino: ino, Kind: kind, Off: seq})
				return len(batch) < readDirBatch, nil
			})
		})
		if err != nil {
			return fmt.Errorf("meta: readdir %d: %w", dir, err)
		}
		for _, d := range batch {
			if !fn(d) {
				return nil
			}
			off = d.Off
		}
		if len(batch) < readDirBatch {
			return nil
		}
	}
}
