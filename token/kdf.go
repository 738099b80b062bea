package token

import (
	"context"
	"crypto/rand"
	"fmt"

	"dsh/metrics"
)

// newDecoy is a hash that nothing matches, with the parameters p: checking a secret against
// it costs exactly what checking against a real hash with p costs. The hash bytes are
// random, so no Argon2id work is needed to make it.
func newDecoy(p KDFParams) hashed {
	h := hashed{Salt: make([]byte, saltSize), Hash: make([]byte, hashSize), Params: p}
	rand.Read(h.Salt)
	rand.Read(h.Hash)
	return h
}

// kdfShare takes from the process-wide budget the memory an Argon2id computation with p
// needs, for as long as it runs.
func (s *Service) kdfShare(ctx context.Context, p KDFParams) (func(), error) {
	release, err := s.kdf.Acquire(ctx, int64(p.MemoryKiB))
	s.kdfRuns.Add(1)
	if err != nil {
		s.lim.Refused(metrics.LimitCredentialChecks)
		return nil, fmt.Errorf("%w: the daemon is checking too many logins at once; try again in a moment", ErrBusy)
	}
	return release, nil
}

// verify checks secret against h within the memory budget.
func (s *Service) verify(ctx context.Context, h hashed, secret []byte) (bool, error) {
	release, err := s.kdfShare(ctx, h.Params)
	if err != nil {
		return false, err
	}
	defer release()
	return h.matches(secret), nil
}

// hash hashes secret with p within the memory budget.
func (s *Service) hash(ctx context.Context, secret []byte, p KDFParams) (hashed, error) {
	release, err := s.kdfShare(ctx, p)
	if err != nil {
		return hashed{}, err
	}
	defer release()
	return newHash(secret, p)
}
