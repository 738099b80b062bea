package content

import (
	"context"
	"errors"
	"fmt"

	"dsh/vault"
)

// ErrLocked is returned by the methods of a File that need its content key after Forget
// dropped it; Unlock gives it back to a caller that holds the share key.
var ErrLocked = errors.New("content: file key dropped; unlock with the share key")

// Forget drops what the File holds that only a reader entitled to the file may have: its
// content key (the cipher made from it), the decrypted read-ahead windows and the open
// objects. The filesystem calls it when nobody who has the file open may read it any more
// (removal, logout, disable, expiry). Unflushed writes are flushed first, with the key,
// since they were accepted while their writer had access; if that fails, or a write comes
// in meanwhile, Forget returns the error and keeps the key (losing data would be worse),
// and the caller tries again later. The File stays open: Unlock makes it usable again.
func (f *File) Forget(ctx context.Context) error {
	if err := f.Flush(ctx); err != nil {
		return fmt.Errorf("forget key of file %s: %w", f.id, err)
	}
	f.flushMu.Lock()
	defer f.flushMu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed || f.cipher == nil {
		return nil
	}
	if len(f.dirty) > 0 || f.size != f.committedSize || f.segsChanged {
		return fmt.Errorf("forget key of file %s: written meanwhile", f.id)
	}
	f.pauseReadAhead()
	f.evict(nil)
	// Go's AES keeps its expanded key where no caller can zero it; dropping the last
	// reference is what is left (the raw key was wiped when the cipher was made).
	f.cipher = nil
	return nil
}

// DropReadAhead wipes the File's decrypted read-ahead windows, keeping its key: one of
// its readers lost access while others still read.
func (f *File) DropReadAhead() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closed {
		f.pauseReadAhead()
	}
}

// Locked reports whether Forget dropped the File's key.
func (f *File) Locked() bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return !f.closed && f.cipher == nil
}

// Unlock unwraps the File's content key again with shareKey, after Forget. It does
// nothing if the File holds its key.
func (f *File) Unlock(shareKey *vault.Key) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return ErrClosed
	}
	if f.cipher != nil {
		return nil
	}
	c, err := openCipher(shareKey, f.share, f.id, f.wrapped)
	if err != nil {
		return err
	}
	f.cipher = c
	return nil
}

// needKey fails with ErrLocked while the key is dropped. f.mu must be held.
func (f *File) needKey() error {
	if f.cipher == nil {
		return ErrLocked
	}
	return nil
}

// openCipher unwraps a file's content key and makes its cipher, wiping the key.
func openCipher(shareKey *vault.Key, share string, id vault.FileID, wrapped vault.WrappedKey) (*vault.ContentCipher, error) {
	key, err := vault.UnwrapKey(shareKey, wrapped, wrapContext(share, id))
	if err != nil {
		return nil, fmt.Errorf("open file %s in share %q: %w", id, share, err)
	}
	c, err := vault.NewContentCipher(&key)
	key.Wipe()
	if err != nil {
		return nil, fmt.Errorf("open file %s: %w", id, err)
	}
	return c, nil
}
