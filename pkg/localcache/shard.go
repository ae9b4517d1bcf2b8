package localcache

import (
	"sync"
	"sync/atomic"
	"time"
)

// cacheLine is the padding between shards. 128 bytes covers CPUs that fetch
// cache lines in adjacent pairs.
const cacheLine = 128

// entry is a cached value with its key, the instant it stops being valid,
// its CLOCK reference bit and its links in the shard's org and user
// indexes.
type entry[V any] struct {
	// A hit reads hash, next, key, expires, ref and value: they come
	// first, to share the entry's first cache line where they fit.
	hash    uint64
	expires int64 // ns after Cache.base: fill began + min(time left, TTL); invalid at and after it
	value   V
	key     Key
	// ref is the CLOCK reference bit: set by a hit (with no lock,
	// written only when clear, so a hot entry's line is not written on
	// every hit), cleared by the eviction hand (under the write lock).
	ref  atomic.Bool
	slot int32 // index in shard.ring
	// next links the entries of one bucket of shard.tab.
	next atomic.Pointer[entry[V]]
	// orgPrev/orgNext and userPrev/userNext link the entries of one
	// Key.Org and of one Key.User (shard.byOrg, shard.byUser).
	orgPrev, orgNext, userPrev, userNext *entry[V]
}

// fill is one registered, in-flight fill: a Do flight or a Ticket. It is
// registered in its key's shard when it begins, and every invalidation
// covering its key marks it stale under that shard's lock, so a result whose
// query may predate the invalidation can never land (rule 1).
type fill struct {
	key   Key
	hash  uint64 // the key's hash (Cache.locate)
	began time.Time
	stale bool // guarded by the shard lock
}

// shard is one lock domain: a hash map of entries evicted by CLOCK (second
// chance), the org and user indexes, and the fill bookkeeping for the keys
// hashed to it. mu guards every change and everything but the table's
// lookups, the counters and the entries' ref bits. A hit takes no lock
// (see table) and reorders nothing: recency is a bit the eviction hand
// reads later. Methods named ...Locked must be called with mu held for
// writing unless they say otherwise.
type shard[V any] struct {
	mu sync.RWMutex

	// tab holds the entries by key hash (Cache.locate); a hit reads it
	// with no lock (see table).
	tab table[V]
	// ring holds the entries in CLOCK order, at most capacity of them;
	// free lists slots of ring emptied by removals, and hand is the next
	// slot the eviction sweep looks at.
	ring     []*entry[V]
	free     []int32
	hand     int
	capacity int
	// byOrg and byUser are the heads of the lists of entries of one
	// Key.Org and one Key.User (user-wide keys under Org ""), so that
	// evicting an org or a user costs in proportion to the entries it
	// removes, not to the shard's size.
	byOrg, byUser map[string]*entry[V]
	// flights maps a key to the Do flight later callers of that key join.
	// A flight is removed ("detached") when it finishes, when an
	// invalidation covering its key happens, when the cache is marked
	// unsynced or resynced, and when its last waiter leaves, so callers
	// never join a load whose result cannot be stored for a reason they
	// could not see.
	flights map[Key]*flight[V]
	// fills is the set of registered fills not yet released, attached or
	// not.
	fills map[*fill]struct{}

	counters
	_ [cacheLine]byte
}

func (s *shard[V]) init(capacity int) {
	s.capacity = capacity
	s.tab.init()
	s.flights = make(map[Key]*flight[V])
	s.fills = make(map[*fill]struct{})
	s.byOrg = make(map[string]*entry[V])
	s.byUser = make(map[string]*entry[V])
}

// len returns the number of entries. It must be called with mu held (read
// or write).
func (s *shard[V]) len() int { return s.tab.n }

// add stores e (whose hash is not in m), evicting by CLOCK when the shard
// is full. It reports whether an entry was evicted.
func (s *shard[V]) add(e *entry[V]) (evicted bool) {
	switch {
	case len(s.free) > 0:
		e.slot = s.free[len(s.free)-1]
		s.free = s.free[:len(s.free)-1]
	case len(s.ring) < s.capacity:
		e.slot = int32(len(s.ring))
		s.ring = append(s.ring, nil)
	default:
		// Full: the hand clears reference bits until it finds an entry
		// not used since it last passed (at most one lap plus one).
		for {
			if s.hand >= len(s.ring) {
				s.hand = 0
			}
			v := s.ring[s.hand]
			if v.ref.Load() {
				v.ref.Store(false)
				s.hand++
				continue
			}
			s.remove(v)
			evicted = true
			e.slot = s.free[len(s.free)-1]
			s.free = s.free[:len(s.free)-1]
			s.hand++
			break
		}
	}
	s.ring[e.slot] = e
	s.tab.insert(e)
	e.orgNext = s.byOrg[e.key.Org]
	if e.orgNext != nil {
		e.orgNext.orgPrev = e
	}
	s.byOrg[e.key.Org] = e
	e.userNext = s.byUser[e.key.User]
	if e.userNext != nil {
		e.userNext.userPrev = e
	}
	s.byUser[e.key.User] = e
	return evicted
}

// remove drops e from the map, the ring and both indexes.
func (s *shard[V]) remove(e *entry[V]) {
	s.tab.delete(e)
	s.ring[e.slot] = nil
	s.free = append(s.free, e.slot)
	unlink(s.byOrg, e.key.Org, e, func(x *entry[V]) (**entry[V], **entry[V]) { return &x.orgPrev, &x.orgNext })
	unlink(s.byUser, e.key.User, e, func(x *entry[V]) (**entry[V], **entry[V]) { return &x.userPrev, &x.userNext })
}

// unlink removes e from the list of name in heads; links returns the
// addresses of an entry's prev and next pointers of that list.
func unlink[V any](heads map[string]*entry[V], name string, e *entry[V], links func(*entry[V]) (**entry[V], **entry[V])) {
	prev, next := links(e)
	if *prev != nil {
		_, pn := links(*prev)
		*pn = *next
	} else if *next != nil {
		heads[name] = *next
	} else {
		delete(heads, name)
	}
	if *next != nil {
		np, _ := links(*next)
		*np = *prev
	}
	*prev, *next = nil, nil
}

// purge removes every entry and returns how many there were.
func (s *shard[V]) purge() int {
	n := s.tab.n
	s.tab.clear()
	clear(s.byOrg)
	clear(s.byUser)
	clear(s.ring) // let the collector have the entries
	s.ring = s.ring[:0]
	s.free = s.free[:0]
	s.hand = 0
	return n
}

// lookupResult is the outcome of a lookup, for the counters.
type lookupResult uint8

const (
	lookupMiss lookupResult = iota
	lookupHit
	lookupExpired
	lookupBypassed
	lookupLeaseExpired
)

// peek returns k's entry and whether it is live at now, marking a live
// entry referenced. It needs no lock (see table) and writes nothing but the
// entry's ref bit, and that only when clear. A nil entry is a miss; a
// non-nil entry that is not live is expired, and the caller removes it
// under the write lock.
func (s *shard[V]) peek(k Key, h uint64, now int64) (*entry[V], bool) {
	e := s.tab.get(h)
	if e == nil || e.key != k {
		return nil, false
	}
	if now >= e.expires {
		return e, false
	}
	if !e.ref.Load() {
		e.ref.Store(true)
	}
	return e, true
}

// lookupLocked returns k's value if it has a live entry at now. An expired
// entry is removed. It does not check the synced flag.
func (s *shard[V]) lookupLocked(k Key, h uint64, now int64) (V, lookupResult) {
	e, live := s.peek(k, h, now)
	if live {
		return e.value, lookupHit
	}
	var zero V
	if e == nil {
		return zero, lookupMiss
	}
	s.remove(e)
	return zero, lookupExpired
}

// storeResult is the outcome of a store, for the counters.
type storeResult uint8

const (
	storeNone storeResult = iota // the load failed: nothing to store
	storeLanded
	storeLandedEvicted // landed, and evicted an entry (CLOCK)
	storeStale
	storeExpired
)

// storeLocked stores v for f's key unless f is stale or the cache is unsynced,
// with the given expiry (Cache.expiry). A result already expired at now is
// not stored. The caller unregisters f.
func (s *shard[V]) storeLocked(f *fill, synced bool, expires, now int64, v V) storeResult {
	// The synced check is belt and braces: MarkUnsynced marks every
	// registered fill stale, but it clears the flag before it reaches this
	// shard, and a store in between must not land either.
	if f.stale || !synced {
		return storeStale
	}
	if now >= expires {
		return storeExpired
	}
	if old := s.tab.get(f.hash); old != nil {
		// The same key refilled, or a 64-bit collision: the new entry
		// replaces the old one.
		s.remove(old)
	}
	if s.add(&entry[V]{key: f.key, value: v, expires: expires, hash: f.hash}) {
		return storeLandedEvicted
	}
	return storeLanded
}

// registerLocked registers f as in flight. A fill registered while unsynced is
// stale from birth: synced must be read with mu held, so that against a
// concurrent MarkUnsynced either its walk of this shard comes after this
// registration (and marks f) or the flag it cleared is seen here.
func (s *shard[V]) registerLocked(f *fill, synced bool) {
	f.stale = !synced
	s.fills[f] = struct{}{}
}

// unregisterLocked releases f.
func (s *shard[V]) unregisterLocked(f *fill) {
	delete(s.fills, f)
}

// invalidateLocked removes the entries sc covers, marks the registered fills
// it covers stale and detaches the flights it covers. It returns the number of
// entries removed.
func (s *shard[V]) invalidateLocked(sc scope) int {
	n := 0
	switch sc.kind {
	case scopeKey:
		if e := s.tab.get(sc.hash); e != nil && e.key == sc.key {
			s.remove(e)
			n = 1
		}
		delete(s.flights, sc.key)
	case scopeAll:
		n = s.purge()
		clear(s.flights)
	default:
		// Org and user scopes walk their index list: the cost is the
		// entries removed, never the shard's size, so that a flood of
		// payloads naming orgs nobody caches costs next to nothing.
		if sc.kind == scopeOrg {
			for e := s.byOrg[sc.key.Org]; e != nil; {
				next := e.orgNext
				s.remove(e)
				n++
				e = next
			}
		} else {
			for e := s.byUser[sc.key.User]; e != nil; {
				next := e.userNext
				s.remove(e)
				n++
				e = next
			}
		}
		// In-flight loads are few: a walk is cheap.
		for k := range s.flights {
			if sc.covers(k) {
				delete(s.flights, k)
			}
		}
	}
	s.staleLocked(sc)
	return n
}

// staleLocked marks every registered fill sc covers stale.
func (s *shard[V]) staleLocked(sc scope) {
	for f := range s.fills {
		if sc.covers(f.key) {
			f.stale = true
		}
	}
}
