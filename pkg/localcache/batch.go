package localcache

import (
	"context"
	"time"
)

// Batch is a set of flights begun together by Cache.BeginBatch and filled by
// one load made outside Do, such as a batch warm-up after a resync. Do calls
// for its keys join its flights instead of starting loads of their own, so a
// key is loaded once even when readers arrive while the batch runs.
//
// A Batch is used by one goroutine: call Finish once for every index of
// Keys, or Abort.
type Batch[V any] struct {
	c       *Cache[V]
	keys    []Key
	flights []*flight[V]
	shards  []*shard[V]
	done    []bool
}

// BeginBatch begins a flight for each of keys that is neither cached nor
// already being loaded, and returns them as a Batch; Keys lists the ones it
// owns, which may be none. As with Do, each flight is registered before the
// load begins, so an invalidation covering its key makes it stale. ctx's
// values are kept for the flights (not its cancellation).
func (c *Cache[V]) BeginBatch(ctx context.Context, keys []Key) *Batch[V] {
	b := &Batch[V]{c: c}
	now := c.now()
	nowMono := int64(now.Sub(c.base))
	for _, k := range keys {
		s, h := c.locate(k)
		s.mu.Lock()
		synced := c.Synced()
		if synced {
			if _, r := s.lookupLocked(k, h, nowMono); r == lookupHit {
				s.mu.Unlock()
				continue
			}
		}
		if s.flights[k] != nil {
			s.mu.Unlock()
			continue
		}
		f := newFlight[V](ctx, k, now) // its one waiter is the batch itself
		f.hash = h
		f.loading = true // the batch's query may begin at once
		s.registerLocked(&f.fill, synced)
		s.flights[k] = f
		s.mu.Unlock()
		s.loads.Add(1)
		b.keys = append(b.keys, k)
		b.flights = append(b.flights, f)
		b.shards = append(b.shards, s)
	}
	b.done = make([]bool, len(b.keys))
	return b
}

// Keys returns the keys the batch loads, in the order of the keys given to
// BeginBatch.
func (b *Batch[V]) Keys() []Key { return b.keys }

// Finish publishes the result for Keys()[i] to the Do calls waiting on it,
// and stores it under the same rules as Do. Later calls for the same i do
// nothing.
func (b *Batch[V]) Finish(i int, v V, left time.Duration) {
	b.finish(i, v, left, nil)
}

func (b *Batch[V]) finish(i int, v V, left time.Duration, err error) {
	if b.done[i] {
		return
	}
	b.done[i] = true
	b.c.finish(b.shards[i], b.flights[i], v, left, err)
}

// Abort finishes every flight not yet finished with err.
func (b *Batch[V]) Abort(err error) {
	var zero V
	for i := range b.keys {
		b.finish(i, zero, 0, err)
	}
}
