package localcache

import (
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// cacheLine is the padding between shards. 128 bytes covers CPUs that fetch
// cache lines in adjacent pairs.
const cacheLine = 128

// entry is a cached value with its key and the instant it stops being
// valid.
type entry[V any] struct {
	key     Key
	value   V
	expires int64 // ns after Cache.base: fill began + min(time left, TTL); invalid at and after it
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

// shard is one lock domain: a non-thread-safe simplelru core and the fill
// bookkeeping for the keys hashed to it, all guarded by mu. Methods named
// ...Locked must be called with mu held.
type shard[V any] struct {
	mu sync.Mutex
	// lru holds the entries, by key hash (Cache.locate).
	lru *simplelru.LRU[uint64, entry[V]]
	// byOrg and byUser index the entries of lru by Key.Org and Key.User
	// (user-wide keys under Org ""), so that evicting an org or a user
	// costs in proportion to the entries it removes, not to the shard's
	// size. They are kept in step by lru's eviction callback.
	byOrg, byUser map[string]map[uint64]struct{}
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
	// NewLRU fails only for a size <= 0, which resolve rules out.
	s.lru, _ = simplelru.NewLRU[uint64, entry[V]](capacity, s.unindex)
	s.flights = make(map[Key]*flight[V])
	s.fills = make(map[*fill]struct{})
	s.byOrg = make(map[string]map[uint64]struct{})
	s.byUser = make(map[string]map[uint64]struct{})
}

// index records the entry of k under hash h in byOrg and byUser. It must be
// called with mu held.
func (s *shard[V]) index(k Key, h uint64) {
	addIndex(s.byOrg, k.Org, h)
	addIndex(s.byUser, k.User, h)
}

// unindex is lru's eviction callback (Remove, Purge, capacity evictions):
// it drops the entry from byOrg and byUser. It runs with mu held.
func (s *shard[V]) unindex(h uint64, e entry[V]) {
	dropIndex(s.byOrg, e.key.Org, h)
	dropIndex(s.byUser, e.key.User, h)
}

func addIndex(ix map[string]map[uint64]struct{}, name string, h uint64) {
	set := ix[name]
	if set == nil {
		set = make(map[uint64]struct{}, 1)
		ix[name] = set
	}
	set[h] = struct{}{}
}

func dropIndex(ix map[string]map[uint64]struct{}, name string, h uint64) {
	if set := ix[name]; set != nil {
		delete(set, h)
		if len(set) == 0 {
			delete(ix, name)
		}
	}
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

// lookupLocked returns k's value if it has a live entry at now. An expired
// entry is removed. It does not check the synced flag.
func (s *shard[V]) lookupLocked(k Key, h uint64, now int64) (V, lookupResult) {
	e, ok := s.lru.Get(h)
	if !ok || e.key != k {
		var zero V
		return zero, lookupMiss
	}
	if now >= e.expires {
		s.lru.Remove(h)
		var zero V
		return zero, lookupExpired
	}
	return e.value, lookupHit
}

// storeResult is the outcome of a store, for the counters.
type storeResult uint8

const (
	storeNone storeResult = iota // the load failed: nothing to store
	storeLanded
	storeLandedEvicted // landed, and evicted the least recently used entry
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
	if old, ok := s.lru.Peek(f.hash); ok && old.key != f.key {
		// A 64-bit collision: the new key replaces the old one.
		s.lru.Remove(f.hash)
	}
	evicted := s.lru.Add(f.hash, entry[V]{key: f.key, value: v, expires: expires})
	s.index(f.key, f.hash)
	if evicted {
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
		if e, ok := s.lru.Peek(sc.hash); ok && e.key == sc.key && s.lru.Remove(sc.hash) {
			n = 1
		}
		delete(s.flights, sc.key)
	case scopeAll:
		n = s.lru.Len()
		s.lru.Purge()
		clear(s.flights)
		clear(s.byOrg)
		clear(s.byUser)
	default:
		// Org and user scopes find their entries through the index: the
		// cost is the entries removed, never the shard's size, so that a
		// flood of payloads naming orgs nobody caches costs next to
		// nothing.
		ix, name := s.byOrg, sc.key.Org
		if sc.kind == scopeUser {
			ix, name = s.byUser, sc.key.User
		}
		if set := ix[name]; set != nil {
			hs := make([]uint64, 0, len(set))
			for h := range set {
				hs = append(hs, h)
			}
			for _, h := range hs {
				if e, ok := s.lru.Peek(h); ok && sc.covers(e.key) && s.lru.Remove(h) {
					n++
				}
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
