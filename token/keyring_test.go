package token

import "dsh/vault"

// key returns the pointer to share's key, for tests that check what the keyring holds and
// that a revocation zeroed it. Production code uses UseKey, which holds the lock.
func (r *Keyring) key(share string) (*vault.Key, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if !r.live() {
		return nil, false
	}
	k, ok := r.shares[share]
	return k, ok
}

// arrivalsKey is key for the Arrivals key.
func (r *Keyring) arrivalsKey() (*vault.Key, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if !r.live() || r.arrivals == nil {
		return nil, false
	}
	return r.arrivals, true
}
