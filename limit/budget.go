package limit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sync/semaphore"
)

// Budget is a process-wide amount (bytes of memory, say) shared by everyone who needs a part
// of it for a while. Waiters are served first come, first served, so a large request is not
// passed over forever by small ones.
type Budget struct {
	sem  *semaphore.Weighted
	size int64
	wait time.Duration
}

// NewBudget returns a Budget of size units whose Acquire waits at most wait.
func NewBudget(size int64, wait time.Duration) *Budget {
	size = max(size, 1)
	return &Budget{sem: semaphore.NewWeighted(size), size: size, wait: wait}
}

// Size is the whole budget.
func (b *Budget) Size() int64 { return b.size }

// Acquire takes n units, waiting for them up to the Budget's wait (or until ctx ends), and
// returns the function that gives them back. A request larger than the whole budget takes
// the whole budget, so it runs alone instead of never. It fails with ErrBusy when the wait
// ran out.
func (b *Budget) Acquire(ctx context.Context, n int64) (release func(), err error) {
	n = min(max(n, 1), b.size)
	wctx, cancel := context.WithTimeout(ctx, b.wait)
	defer cancel()
	if err := b.sem.Acquire(wctx, n); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("%w: no share of the budget within %s", ErrBusy, b.wait)
		}
		return nil, err
	}
	return func() { b.sem.Release(n) }, nil
}
