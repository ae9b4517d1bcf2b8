package localcache

import "sync/atomic"

// Stats is a snapshot of a Cache's counters. Counters only grow; Entries and
// InFlight are gauges read at the time of the snapshot. The snapshot is not
// atomic across shards: each counter is exact, but two counters may have been
// read a few operations apart.
type Stats struct {
	// Hits counts Get and Do calls answered from the cache.
	Hits uint64
	// Misses counts Get and Do calls that found no live entry while synced
	// (an expired entry counts here and in Expired).
	Misses uint64
	// Bypassed counts Get and Do calls that skipped the cache because it
	// was unsynced.
	Bypassed uint64
	// LeaseExpired counts Get and Do calls that skipped the cache because
	// its lease had run out (no proof of delivery recent enough; see
	// Config.Lease).
	LeaseExpired uint64
	// Loads counts load functions started by Do.
	Loads uint64
	// Coalesced counts Do calls that joined a load already in flight
	// instead of starting one.
	Coalesced uint64
	// Fills counts results stored, by Do or by Ticket.Store.
	Fills uint64
	// StaleFills counts successful results refused because an invalidation
	// covering the key, MarkUnsynced or Resync happened after the fill began
	// (or the fill began while unsynced).
	StaleFills uint64
	// Expired counts entries found expired by a lookup (and removed), plus
	// results already expired when they were about to be stored.
	Expired uint64
	// CapacityEvictions counts entries evicted (by CLOCK, which spares an
	// entry used since the eviction hand last passed it) to make
	// room for a new one.
	CapacityEvictions uint64
	// EvictedKey counts entries removed by InvalidateKey.
	EvictedKey uint64
	// EvictedOrg counts entries removed by InvalidateOrg.
	EvictedOrg uint64
	// EvictedUser counts entries removed by InvalidateUser.
	EvictedUser uint64
	// EvictedAll counts entries removed by InvalidateAll and by Resync.
	EvictedAll uint64
	// Entries is the number of entries held, including expired entries no
	// lookup has removed yet.
	Entries int
	// InFlight is the number of registered fills not yet released: Do
	// loads still running and Tickets neither stored nor cancelled.
	InFlight int
}

// counters are one shard's statistics. They are atomics so that Stats can
// read them without the shard lock, and they live in the shard (padded from
// its neighbours) so the hit path of one shard never writes a cache line
// another shard's hit path writes.
//
// The hit counter is not here: a hit writes no line of its shard (see
// hitCounter).
type counters struct {
	misses, bypassed           atomic.Uint64
	leaseExpired               atomic.Uint64
	loads, coalesced           atomic.Uint64
	fills, staleFills, expired atomic.Uint64
	capacityEvictions          atomic.Uint64
	evicted                    [numScopes]atomic.Uint64
}

// addTo adds the shard's counters to st.
func (c *counters) addTo(st *Stats) {
	st.Misses += c.misses.Load()
	st.Bypassed += c.bypassed.Load()
	st.LeaseExpired += c.leaseExpired.Load()
	st.Loads += c.loads.Load()
	st.Coalesced += c.coalesced.Load()
	st.Fills += c.fills.Load()
	st.StaleFills += c.staleFills.Load()
	st.Expired += c.expired.Load()
	st.CapacityEvictions += c.capacityEvictions.Load()
	st.EvictedKey += c.evicted[scopeKey].Load()
	st.EvictedOrg += c.evicted[scopeOrg].Load()
	st.EvictedUser += c.evicted[scopeUser].Load()
	st.EvictedAll += c.evicted[scopeAll].Load()
}

// countLookup records the outcome of a lookup.
func (c *Cache[V]) countLookup(s *shard[V], r lookupResult) {
	ct := &s.counters
	switch r {
	case lookupHit:
		c.hits.add()
	case lookupMiss:
		ct.misses.Add(1)
	case lookupExpired:
		ct.misses.Add(1)
		ct.expired.Add(1)
	case lookupBypassed:
		ct.bypassed.Add(1)
	case lookupLeaseExpired:
		ct.leaseExpired.Add(1)
	}
}

// countStore records the outcome of a store.
func (c *counters) countStore(r storeResult) {
	switch r {
	case storeLanded:
		c.fills.Add(1)
	case storeLandedEvicted:
		c.fills.Add(1)
		c.capacityEvictions.Add(1)
	case storeStale:
		c.staleFills.Add(1)
	case storeExpired:
		c.expired.Add(1)
	}
}
