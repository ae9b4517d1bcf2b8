// Package localcache is an in-process, sharded cache (CLOCK eviction) of values keyed by
// (org, user), with the bookkeeping that keeps fills race-free against
// invalidations. It knows nothing of SQL or permissions: the membership
// package stores permission sets in it, and the listener package evicts from
// it when the database says something changed.
//
// # Structure
//
// A Cache is a power-of-two number of shards. A key picks its shard by a
// seeded hash/maphash of Org and User. Each shard is a hash table of
// entries evicted by CLOCK (second chance, an approximation of LRU), changed
// only under the shard's own lock, plus intrusive per-org and per-user
// lists of its entries, the shard's in-flight fills and its counters,
// padded so that the hit paths of two shards never write the same cache
// line. A hit takes no lock: the table's buckets are chains of atomic
// pointers, so a lookup only loads (a read lock would write its reader
// count on every hit, and two cores hitting one shard would hand that line
// back and forth). A hit reorders nothing (it sets the entry's reference
// bit, only when clear), adds to one per-shard counter, reads the clock
// once, and does not allocate. A store or an eviction takes the write lock;
// the eviction hand clears reference bits until it finds an entry not used
// since its last pass.
//
// Values are stored and returned as they are: store immutable values (or
// values nobody mutates), since every caller that hits shares them.
//
// # Rules
//
// The numbers are those of the cache rules in DESIGN.md; the cache keeps
// rule 3's lease (4b below), its owner obtains the proofs; rule 6 (fail
// closed) belongs to the membership package, which must treat a Do error as
// "no permission".
//
// 1. A fill that began before an invalidation covering its key never lands.
// Every fill, a Do flight or a Ticket from Begin, is registered in its key's
// shard, under the shard lock, before its load begins. An invalidation
// (InvalidateKey, InvalidateOrg, InvalidateUser, InvalidateAll), under each
// affected shard's lock, removes the entries it covers and marks every
// registered fill it covers stale; a store checks the stale flag under the
// same lock. Since registration, invalidation and store of one key all
// serialise on one lock, either the invalidation comes after the store (and
// removes the entry) or before it (and the fill is stale). Nothing is kept per
// key once its fills are released: no generation map grows with the key
// space.
//
// 1b. A lookup that begins after an invalidation returned never answers
// from an entry it removed. Lookups take no lock; they read a shard's table
// with atomic loads, and every removal unlinks its entry with an atomic
// store before the invalidation returns (sync/atomic is sequentially
// consistent). A lookup that overlaps an invalidation may answer either
// way, as one that took a read lock just before it would have.
//
// 2. While the cache is unsynced (notifications may have been lost), Get and
// Do bypass it and nothing is stored. MarkUnsynced clears an atomic flag
// first and then walks the shards marking every registered fill stale.
// Registration reads the flag under the shard lock, so in every shard each
// fill either registered before the walk got there (the walk marks it) or
// after (it reads the cleared flag and is stale from birth); a store reads
// the flag under the lock too, so a store between the flag and the walk is
// refused. Resync walks the shards purging entries and marking fills stale,
// then sets the flag: a fill registered during the walk sees the flag still
// clear and is stale from birth, so after Resync every entry comes from a
// fill that began after the cache was synced. The flag carries an epoch that
// MarkUnsynced bumps: Resync sets it only if no MarkUnsynced happened since
// Resync began, so a connection lost during a resync keeps the cache
// unsynced.
//
// A Cache starts synced, so that it works without a listener. A listener
// calls MarkUnsynced before it first connects, and Resync once LISTEN is in
// place (and again after every reconnection).
//
// 4. An entry expires at fill began + min(time left, Config.TTL), where the
// time left is what the load says the value stays true for (its source
// evaluates it at its own clock, at or after the fill began); it is valid
// on [began, expiry). A lookup that finds it expired removes it and misses.
// Everything is counted on the monotonic clock from the fill's start, so
// that no wall clock, skewed or stepped, can stretch an entry's life: an
// entry errs early, never late.
//
// 4b. A freshness lease (Config.Lease) bounds staleness when the
// invalidation stream may have gone quiet without anyone noticing (a
// half-open connection): the cache answers only until Lease after the
// newest proof its owner recorded with Prove, and asks its owner for a new
// one (Config.OnLeaseLow) once half the lease is gone and lookups arrive.
//
// Evicting an org or a user finds the entries through a per-shard index by
// org and by user: it costs what it evicts, not the size of the cache.
//
// 5. Concurrent Do calls for one key share one load (single flight). While
// the cache cannot answer (unsynced, or past its lease), a caller expects
// what a database read at its own start gives, so it joins a load only if
// that load has not begun; otherwise it shares the one load queued behind
// it, which begins once the running one is done. The
// flight is detached from its key when an invalidation covering the key,
// MarkUnsynced or Resync happens, so that later callers start a fresh load
// instead of joining one whose result cannot be stored; those already waiting
// still get its result. While unsynced, loads are still shared, and their
// results are returned but not stored.
//
// No lock is held while a load runs: the load runs in a goroutine of its own,
// with a context that is cancelled only when every waiting caller has gone.
// Each caller waits for the result or its own context, whichever is first.
// Load errors and panics reach every waiter and are never cached.
package localcache
