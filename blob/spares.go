package blob

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"

	"dsh/internal/diskio"
)

// spareBatch is how many empty files one refill prepares, all in one fan-out folder so that
// a single folder fsync makes their names durable. Each costs an inode and nothing else.
const spareBatch = 64

var _ Reserver = (*Local)(nil)

// KeepSpares makes Reserve hand out IDs whose empty files are already in place and durable,
// refilled in the background as they are used. Call it once, before the store is shared;
// it makes the first batch before it returns. Close stops the refills and removes the
// files no writer claimed.
func (l *Local) KeepSpares() {
	l.spares = make(chan ID, 2*spareBatch)
	// The first batch is made now, so that the first writers already find spares.
	l.startRefill()
	l.refillWG.Wait()
}

// Reserve returns an ID for Create. With KeepSpares it is one whose file is ready; when
// none is (the refill lags behind a burst), or without KeepSpares, it is a plain NewID.
func (l *Local) Reserve() ID {
	if l.spares == nil {
		return NewID()
	}
	select {
	case id := <-l.spares:
		if len(l.spares) < spareBatch {
			l.startRefill()
		}
		return id
	default:
		l.startRefill()
		return NewID()
	}
}

// startRefill starts one refill unless one is running or the store is closed.
func (l *Local) startRefill() {
	if !l.refilling.CompareAndSwap(false, true) {
		return
	}
	// Add happens under spareMu so that it is ordered before Close's Wait or not at all.
	l.spareMu.Lock()
	defer l.spareMu.Unlock()
	if l.closed.Load() {
		l.refilling.Store(false)
		return
	}
	l.refillWG.Add(1)
	go func() {
		defer l.refillWG.Done()
		defer l.refilling.Store(false)
		l.refill()
	}()
}

// refill prepares up to spareBatch empty files in one random fan-out folder. It gives up
// quietly on the first error (a full disk, say): Reserve then falls back to plain IDs, and
// the writer that draws one meets the error itself, with its context.
func (l *Local) refill() {
	room := min(spareBatch, cap(l.spares)-len(l.spares))
	if room <= 0 {
		return
	}
	first := NewID()
	if err := l.prepareFanout(first); err != nil {
		return
	}
	ids := make([]ID, 0, room)
	for len(ids) < room && !l.closed.Load() {
		id := NewID()
		id[0] = first[0]
		l.resMu.Lock()
		l.reserved[id] = false
		l.resMu.Unlock()
		f, err := os.OpenFile(l.path(id), os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, fileMode)
		if err != nil {
			l.unreserve(id)
			break
		}
		// The empty file itself is not synced: a journalling filesystem commits its inode
		// with its folder entry (the folder's fsync below), and the commit's fsync writes
		// it in any case. Only ext4 without a journal could, after a power cut, keep the
		// entry without the inode; such a filesystem needs fsck after one anyway, which
		// removes the entry. Syncing each spare cost ~10 % of row 4 of make bench.
		f.Close()
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		return
	}
	if err := diskio.SyncDir(l.fanout(first)); err != nil || l.closed.Load() {
		l.dropSpares(ids)
		return
	}
	for _, id := range ids {
		l.spares <- id // never blocks: only this refill adds, and it counted the room
	}
}

// claim marks an unclaimed reserved ID as being written and reports whether it was one.
func (l *Local) claim(id ID) bool {
	l.resMu.Lock()
	defer l.resMu.Unlock()
	claimed, ok := l.reserved[id]
	if !ok || claimed {
		return false
	}
	l.reserved[id] = true
	return true
}

func (l *Local) unreserve(id ID) {
	l.resMu.Lock()
	delete(l.reserved, id)
	l.resMu.Unlock()
}

// release gives back a reserved ID, removing its file if no Pending claimed it, and reports
// whether id was reserved at all (claimed ones are left to their writer).
func (l *Local) release(id ID) bool {
	l.resMu.Lock()
	claimed, ok := l.reserved[id]
	if ok && !claimed {
		l.reserved[id] = true // no Create may claim it while it goes
	}
	l.resMu.Unlock()
	if ok && !claimed {
		l.dropSpares([]ID{id})
	}
	return ok
}

// isReserved reports whether id's file, if any, is not a committed object yet.
func (l *Local) isReserved(id ID) bool {
	l.resMu.RLock()
	_, ok := l.reserved[id]
	l.resMu.RUnlock()
	return ok
}

// dropSpares removes unclaimed spare files. A file that cannot be removed stays an empty,
// unreferenced object, which the collector removes after the next start.
func (l *Local) dropSpares(ids []ID) {
	for _, id := range ids {
		if err := os.Remove(l.path(id)); err == nil || errors.Is(err, fs.ErrNotExist) {
			l.unreserve(id)
		}
	}
}

// Close stops preparing spares and removes the files of reserved IDs no Pending claimed,
// handed out or not. Objects being written under reserved IDs are left to their writers.
// The store must not be used afterwards.
func (l *Local) Close() error {
	l.spareMu.Lock()
	was := l.closed.Swap(true)
	l.spareMu.Unlock()
	if was || l.spares == nil {
		return nil
	}
	l.refillWG.Wait()
	for len(l.spares) > 0 {
		<-l.spares
	}
	var ids []ID
	l.resMu.Lock()
	for id, claimed := range l.reserved {
		if !claimed {
			l.reserved[id] = true // no Create may claim it while it goes
			ids = append(ids, id)
		}
	}
	l.resMu.Unlock()
	l.dropSpares(ids)
	for _, id := range ids {
		if l.isReserved(id) {
			return fmt.Errorf("close blob store: spare %s could not be removed", id)
		}
	}
	return nil
}
