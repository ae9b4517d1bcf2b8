package localcache

import "time"

// Ticket is a fill registered by Cache.Begin, for values loaded outside Do.
// Its methods are safe for concurrent use; the first Store or Cancel releases
// it and later calls do nothing.
type Ticket[V any] struct {
	c *Cache[V]
	s *shard[V]
	fill
	released bool // guarded by s.mu
}

// Key returns the key the ticket fills.
func (t *Ticket[V]) Key() Key { return t.key }

// Store stores v for the ticket's key, with the time left as in Cache.Do, unless
// an invalidation covering the key, MarkUnsynced or Resync happened since
// Begin, or the cache is unsynced, or the value has already expired. It
// reports whether the value landed, and releases the ticket: once released,
// Store does nothing and returns false.
func (t *Ticket[V]) Store(v V, left time.Duration) bool {
	now := t.c.nowMono()
	s := t.s
	s.mu.Lock()
	if t.released {
		s.mu.Unlock()
		return false
	}
	t.released = true
	s.unregisterLocked(&t.fill)
	r := s.storeLocked(&t.fill, t.c.Synced(), t.c.expiry(t.fill.began, left), now, v)
	s.mu.Unlock()
	s.countStore(r)
	return r == storeLanded || r == storeLandedEvicted
}

// Cancel releases the ticket without storing. It does nothing if the ticket
// is already released.
func (t *Ticket[V]) Cancel() {
	s := t.s
	s.mu.Lock()
	if !t.released {
		t.released = true
		s.unregisterLocked(&t.fill)
	}
	s.mu.Unlock()
}
