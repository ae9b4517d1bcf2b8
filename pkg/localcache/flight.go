package localcache

import (
	"context"
	"runtime/debug"
	"time"
)

// flight is one call of a Do load, shared by every Do call of its key that
// arrives while it is attached to its shard's flights map.
type flight[V any] struct {
	fill

	// ctx is the load's context: the starting caller's values, cancelled
	// by cancel once the load returns or every waiter has gone.
	ctx    context.Context
	cancel context.CancelFunc

	// waiters counts Do calls still waiting; finished is set when the
	// load has returned. Both are guarded by the shard lock.
	waiters  int
	finished bool
	// loading is set once the load has begun (its query may have taken
	// its snapshot): a caller that needs a fresh read no longer joins it,
	// but the flight queued behind it, next, which begins its load once
	// this one is done (after). prev is the flight next hangs on. All
	// guarded by the shard lock.
	loading    bool
	next, prev *flight[V]
	after      <-chan struct{}

	// done is closed once val and err are set.
	done chan struct{}
	val  V
	err  error
}

// newFlight returns a flight for k begun at began, with one waiter.
func newFlight[V any](ctx context.Context, k Key, began time.Time) *flight[V] {
	f := &flight[V]{waiters: 1, done: make(chan struct{})}
	f.key = k
	f.began = began
	f.ctx, f.cancel = context.WithCancel(context.WithoutCancel(ctx))
	return f
}

// run calls load for f and publishes the result. It finishes the flight in a
// deferred call so that waiters are released even if load calls
// runtime.Goexit.
func (c *Cache[V]) run(s *shard[V], f *flight[V], load LoadFunc[V]) {
	var (
		v    V
		left time.Duration
		err  = ErrLoadGoexit // kept only if load never returns
	)
	defer func() { c.finish(s, f, v, left, err) }()
	if f.after != nil {
		select {
		case <-f.after:
		case <-f.ctx.Done():
		}
	}
	s.mu.Lock()
	f.loading = true
	s.mu.Unlock()
	v, left, err = callLoad(f.ctx, load)
}

// callLoad calls load, turning a panic into a *PanicError.
func callLoad[V any](ctx context.Context, load LoadFunc[V]) (v V, left time.Duration, err error) {
	defer func() {
		if r := recover(); r != nil {
			var zero V
			v, left, err = zero, 0, &PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	return load(ctx)
}

// finish detaches and unregisters f, stores its result if it may land, and
// releases its waiters.
func (c *Cache[V]) finish(s *shard[V], f *flight[V], v V, left time.Duration, err error) {
	f.cancel() // the load is over; release its context
	now := c.nowMono()

	s.mu.Lock()
	f.finished = true
	if s.flights[f.key] == f {
		delete(s.flights, f.key)
		if g := f.next; g != nil && !g.finished && g.waiters > 0 {
			s.flights[f.key] = g // the queued flight takes over
		}
	}
	if g := f.next; g != nil {
		g.prev = nil
	}
	s.unregisterLocked(&f.fill)
	r := storeNone
	if err == nil {
		r = s.storeLocked(&f.fill, c.Synced(), c.expiry(f.began, left), now, v)
	}
	s.mu.Unlock()

	// Count before releasing the waiters, so a caller that reads Stats
	// after Do returns sees this flight's outcome.
	s.countStore(r)
	if err != nil {
		var zero V
		v = zero
	}
	f.val, f.err = v, err
	close(f.done)
}

// wait waits for f's result or for ctx. The last waiter to leave before the
// load returns detaches f and cancels the load's context, so that a later Do
// starts afresh instead of joining a load nobody waits for.
func (c *Cache[V]) wait(ctx context.Context, s *shard[V], f *flight[V]) (V, error) {
	select {
	case <-f.done:
		return f.val, f.err
	case <-ctx.Done():
	}
	// Both may be ready; prefer the result.
	select {
	case <-f.done:
		return f.val, f.err
	default:
	}

	s.mu.Lock()
	f.waiters--
	abandoned := f.waiters == 0 && !f.finished
	if abandoned && s.flights[f.key] == f {
		delete(s.flights, f.key)
	}
	if abandoned && f.prev != nil && f.prev.next == f {
		f.prev.next = nil
	}
	s.mu.Unlock()
	if abandoned {
		f.cancel()
	}
	var zero V
	return zero, ctx.Err()
}
