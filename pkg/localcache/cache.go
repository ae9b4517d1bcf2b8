package localcache

import (
	"context"
	"hash/maphash"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// syncedBit is the low bit of Cache.state; the bits above it count
// MarkUnsynced calls (see Cache.state).
const syncedBit = 1

// Cache is a sharded cache (CLOCK eviction, an approximate LRU) of values
// of type V with race-free fills. It is safe for concurrent use. Create one
// with New.
type Cache[V any] struct {
	shards []shard[V]
	mask   uint64 // len(shards)-1; len(shards) is a power of two
	seed   maphash.Seed
	ttl    time.Duration
	now    func() time.Time

	// base is the cache's epoch: entries expire at a number of nanoseconds
	// after it. With the default clock, lookups read only the monotonic
	// clock (time.Since), which costs about half of a time.Now.
	base      time.Time
	monoClock bool

	// lease is Config.Lease; 0 disables it. leaseEnd is the instant, in
	// nanoseconds after base, from which the cache no longer answers
	// (Prove moves it forward); leaseLow is the instant from which a lookup
	// asks for a new proof, once (asked). onLeaseLow is Config.OnLeaseLow.
	lease      int64
	leaseEnd   atomic.Int64
	leaseLow   atomic.Int64
	asked      atomic.Bool
	onLeaseLow func()

	// state is epoch<<1 | synced. MarkUnsynced clears synced and bumps
	// epoch in one CAS; Resync sets synced only if epoch has not moved
	// since it began, so a MarkUnsynced racing a Resync always wins.
	state atomic.Uint64

	// hits counts hits (see hitCounter); the other counters are per shard.
	hits hitCounter

	// Test hooks, nil in production. Tests set them before any concurrent
	// use. They are called outside every lock.
	onJoin         func(Key) // after a Do call joined a flight
	onResyncWalked func()    // after Resync walked the shards, before it sets the flag
}

// New returns an empty Cache configured by cfg, after filling its defaults.
// It fails with a *ConfigError (matching ErrInvalidConfig) naming the first
// field it cannot accept.
//
// The Cache starts synced, so that it caches without a listener. A listener
// that keeps it coherent calls MarkUnsynced before it connects and Resync once
// LISTEN is in place.
func New[V any](cfg Config) (*Cache[V], error) {
	defaultClock := cfg.Now == nil
	cfg, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	c := &Cache[V]{
		shards:     make([]shard[V], cfg.Shards),
		mask:       uint64(cfg.Shards - 1),
		seed:       maphash.MakeSeed(),
		ttl:        cfg.TTL,
		now:        cfg.Now,
		base:       cfg.Now(),
		monoClock:  defaultClock,
		lease:      int64(cfg.Lease),
		onLeaseLow: cfg.OnLeaseLow,
		hits:       newHitCounter(),
	}
	if c.lease == 0 {
		c.leaseEnd.Store(math.MaxInt64)
		c.leaseLow.Store(math.MaxInt64)
	}
	// Split Capacity exactly: the first Capacity%Shards shards take one
	// more entry than the others.
	per, extra := cfg.Capacity/cfg.Shards, cfg.Capacity%cfg.Shards
	for i := range c.shards {
		n := per
		if i < extra {
			n++
		}
		c.shards[i].init(n)
	}
	c.state.Store(syncedBit)
	return c, nil
}

// locate returns k's hash and shard. The hash, of Org and User with the
// cache's seed, also keys the shard's map, so a lookup hashes the strings
// once; entries keep their Key, and a lookup that finds another key under
// the same hash (a 64-bit collision) is a miss.
func (c *Cache[V]) locate(k Key) (*shard[V], uint64) {
	// Two one-shot string hashes are cheaper than a streaming maphash.Hash;
	// the multiplier keeps (a, b) and (b, a) apart.
	h := maphash.String(c.seed, k.Org)*0x9e3779b97f4a7c15 ^ maphash.String(c.seed, k.User)
	return &c.shards[h&c.mask], h
}

// nowMono is the current instant in nanoseconds after c.base.
func (c *Cache[V]) nowMono() int64 {
	if c.monoClock {
		return int64(time.Since(c.base))
	}
	return int64(c.now().Sub(c.base))
}

// expiry is the instant, in nanoseconds after c.base, at which a value
// whose fill began at began and that stays true for left after it (0: no
// end; negative: already expired) expires: began + min(left, TTL). The time left is counted on the
// monotonic clock from the fill's start, which is no later than the instant
// the source evaluated the value at: the entry errs early, never late.
func (c *Cache[V]) expiry(began time.Time, left time.Duration) int64 {
	d := c.ttl
	if left != 0 {
		d = min(d, left)
	}
	return int64(began.Sub(c.base)) + int64(d)
}

// leased reports whether the lease allows answering at now, and asks for a
// new proof (once per proof) when the lease is in its last half.
func (c *Cache[V]) leased(now int64) bool {
	if now < c.leaseLow.Load() {
		return true
	}
	if !c.asked.Load() && c.asked.CompareAndSwap(false, true) && c.onLeaseLow != nil {
		c.onLeaseLow()
	}
	return now < c.leaseEnd.Load()
}

// Prove records a proof that every invalidation issued before the instant
// at has been applied: the cache may answer until at + Config.Lease. A
// proof older than one already recorded changes nothing. Prove does not
// mark the cache synced (see Resync).
func (c *Cache[V]) Prove(at time.Time) {
	if c.lease == 0 {
		return
	}
	end := int64(at.Sub(c.base)) + c.lease
	for {
		old := c.leaseEnd.Load()
		if end <= old {
			break
		}
		if c.leaseEnd.CompareAndSwap(old, end) {
			c.leaseLow.Store(end - c.lease/2 + askDelay(c.lease/4, rand.Float64()))
			c.asked.Store(false)
			break
		}
	}
}

// askSpread is λT of askDelay's distribution: ln 1024, sized so that up to
// about a thousand instances send one or two proofs per round (see below).
const askSpread = 6.931471805599453

// askDelay returns when, within a window of w nanoseconds that opens once
// half the lease is gone, a cache asks for the next proof, for a uniform
// u in [0, 1).
//
// One instance's proof refreshes every instance's lease at once, so all
// leases run low together; every instance that asks before the first proof
// of the round comes back sends one more. A uniform draw makes that
// number grow with the instance count k (k times the round trip over w).
// The draw here has a density growing exponentially across the window
// (F(t) = (e^(λt)-1)/(e^(λw)-1)), the feedback-suppression timer of
// Nonnenmacher and Biersack ("Optimal multicast feedback", 1998): the
// earliest of k draws keeps a gap to the next that does not shrink with k,
// so a round sends about one proof for any k up to about e^(λw). The
// price is that a lone instance asks late in the window, still a quarter
// of the lease before it ends.
func askDelay(w int64, u float64) int64 {
	return int64(float64(w) * math.Log1p(u*math.Expm1(askSpread)) / askSpread)
}

// Proven returns the instant of the newest proof (see Prove), and false if
// there is none or the cache has no lease.
func (c *Cache[V]) Proven() (time.Time, bool) {
	end := c.leaseEnd.Load()
	if c.lease == 0 || end == 0 {
		return time.Time{}, false
	}
	return c.base.Add(time.Duration(end - c.lease)), true
}

// Trusted reports whether a lookup now may answer from the cache: the cache
// is synced and its lease, if any, has not run out. It does not ask for a
// proof.
func (c *Cache[V]) Trusted() bool {
	return c.Synced() && c.nowMono() < c.leaseEnd.Load()
}

// Synced reports whether the cache is synced: whether Get may answer from it
// and fills may land.
func (c *Cache[V]) Synced() bool {
	return c.state.Load()&syncedBit != 0
}

// Get returns k's value if the cache is synced, its lease has not run out,
// and it holds a live entry for k. An expired entry is removed and is a
// miss; a lookup refused by the lease counts as LeaseExpired. Get does not
// allocate.
//
// A hit takes no lock (its shard's table is read with atomic loads),
// reorders nothing (it sets the entry's CLOCK reference bit, and only when
// clear), writes one per-shard counter, and reads the clock once: the
// lease, valid_until and the TTL are all judged on that one reading.
func (c *Cache[V]) Get(k Key) (V, bool) {
	s, h := c.locate(k)
	if !c.Synced() {
		s.bypassed.Add(1)
		var zero V
		return zero, false
	}
	now := c.nowMono()
	if !c.leased(now) {
		s.leaseExpired.Add(1)
		var zero V
		return zero, false
	}
	e, live := s.peek(k, h, now)
	if live {
		c.hits.add()
		return e.value, true
	}
	r := lookupMiss
	if e != nil {
		// Expired: remove it under the write lock, unless it was
		// replaced or removed meanwhile.
		r = lookupExpired
		s.mu.Lock()
		if s.tab.get(h) == e {
			s.remove(e)
		}
		s.mu.Unlock()
	}
	c.countLookup(s, r)
	var zero V
	return zero, false
}

// Do returns k's value from the cache or, on a miss, from load.
//
// Concurrent misses of one key share one call of load (a flight); Do calls
// that arrive while it runs wait for its result. load returns the value and
// the time it stays true after the load began (0 for no limit; the TTL
// applies either way). The result is stored only if no
// invalidation covering k, no MarkUnsynced and no Resync happened since the
// load began; either way every waiter gets it. An invalidation also detaches
// the flight, so a Do that arrives after it starts a fresh load. While the
// cache is unsynced Do skips the cache but still coalesces, and stores
// nothing.
//
// load runs in a goroutine of its own, with no lock held, and with a context
// that carries the values of the ctx of the Do call that started it, but
// neither its deadline nor its cancellation: load should bound its own work.
// That context is cancelled once every waiting Do call has gone.
//
// Each Do call returns ctx.Err() as soon as its own ctx is done, and returns
// it without looking at the cache if ctx is done on entry. A load error is
// returned to every waiter of the flight and never cached. If load panics,
// every waiter gets a *PanicError holding the panic value and stack, and
// nothing is re-panicked: load runs in its own goroutine, where a panic would
// crash the process. If load calls runtime.Goexit, every waiter gets
// ErrLoadGoexit.
func (c *Cache[V]) Do(ctx context.Context, k Key, load LoadFunc[V]) (V, error) {
	return c.do(ctx, k, load, true)
}

// LoadFunc loads a value for Do: it returns the value and the time the value
// stays true after the load began (0 for no limit but the TTL).
type LoadFunc[V any] func(ctx context.Context) (V, time.Duration, error)

// DoAfterGet is Do for a caller that has just missed with Get (to keep its
// hit path free of a closure allocation): a second miss is not counted.
func (c *Cache[V]) DoAfterGet(ctx context.Context, k Key, load LoadFunc[V]) (V, error) {
	return c.do(ctx, k, load, false)
}

func (c *Cache[V]) do(ctx context.Context, k Key, load LoadFunc[V], countMiss bool) (V, error) {
	if err := ctx.Err(); err != nil {
		var zero V
		return zero, err
	}
	s, h := c.locate(k)
	now := c.now()
	synced := c.Synced()
	// Past the lease the cache does not answer, but fills still land: a
	// fill reads the database after it began, and rule 1 refuses it if an
	// invalidation of its key arrives meanwhile.
	leased := synced && c.leased(int64(now.Sub(c.base)))

	s.mu.Lock()
	r := lookupBypassed
	if synced && !leased {
		r = lookupLeaseExpired
	}
	if leased {
		var v V
		if v, r = s.lookupLocked(k, h, int64(now.Sub(c.base))); r == lookupHit {
			s.mu.Unlock()
			c.countLookup(s, r)
			return v, nil
		}
	}
	f := s.flights[k]
	if f != nil && !leased && f.loading {
		// The cache cannot answer, so this caller expects what a read of
		// the database at its start gives: the running load may have
		// taken its snapshot before a write this caller must see. Join
		// the flight queued behind it instead, or queue one: at most one
		// load running and one waiting per key.
		if f.next == nil {
			g := newFlight[V](ctx, k, now)
			g.hash, g.after, g.prev = h, f.done, f
			s.registerLocked(&g.fill, c.Synced())
			f.next = g
			s.mu.Unlock()
			s.loads.Add(1)
			go c.run(s, g, load)
			if countMiss {
				c.countLookup(s, r)
			}
			return c.wait(ctx, s, g)
		}
		f = f.next
	}
	joined := f != nil
	if joined {
		f.waiters++
	} else {
		f = newFlight[V](ctx, k, now)
		f.hash = h
		// Register under the same lock that invalidations take: from
		// here on, any invalidation covering k marks f stale.
		s.registerLocked(&f.fill, c.Synced())
		s.flights[k] = f
	}
	s.mu.Unlock()

	if countMiss {
		c.countLookup(s, r)
	}
	if joined {
		s.coalesced.Add(1)
		if c.onJoin != nil {
			c.onJoin(k)
		}
	} else {
		s.loads.Add(1)
		go c.run(s, f, load)
	}
	return c.wait(ctx, s, f)
}

// Begin registers a fill of k made outside Do, such as a batch warm-up: call
// it before the query begins, then Store the result or Cancel. The result
// lands only if no invalidation covering k, no MarkUnsynced and no Resync
// happened in between; a Ticket taken while unsynced never lands. A Ticket
// that is never stored nor cancelled stays registered, so release every one
// (defer t.Cancel() is safe after Store).
func (c *Cache[V]) Begin(k Key) *Ticket[V] {
	s, h := c.locate(k)
	t := &Ticket[V]{c: c, s: s}
	t.fill.key, t.fill.hash = k, h
	t.fill.began = c.now()
	s.mu.Lock()
	s.registerLocked(&t.fill, c.Synced())
	s.mu.Unlock()
	return t
}

// InvalidateKey removes k's entry and makes every fill of k in flight stale.
func (c *Cache[V]) InvalidateKey(k Key) {
	c.invalidate(scope{kind: scopeKey, key: k})
}

// InvalidateOrg removes every entry whose Key.Org is org and makes every such
// fill in flight stale. InvalidateOrg("") does so for all user-wide keys.
func (c *Cache[V]) InvalidateOrg(org string) {
	c.invalidate(scope{kind: scopeOrg, key: Key{Org: org}})
}

// InvalidateUser removes every entry whose Key.User is user, in any org and
// user-wide, and makes every such fill in flight stale.
func (c *Cache[V]) InvalidateUser(user string) {
	c.invalidate(scope{kind: scopeUser, key: Key{User: user}})
}

// InvalidateAll removes every entry and makes every fill in flight stale. It
// leaves the synced state alone.
func (c *Cache[V]) InvalidateAll() {
	c.invalidate(scope{kind: scopeAll})
}

// invalidate applies sc to every shard it can touch, one shard lock at a time.
func (c *Cache[V]) invalidate(sc scope) {
	if sc.kind == scopeKey {
		var s *shard[V]
		s, sc.hash = c.locate(sc.key)
		s.mu.Lock()
		n := s.invalidateLocked(sc)
		s.mu.Unlock()
		s.evicted[sc.kind].Add(uint64(n))
		return
	}
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n := s.invalidateLocked(sc)
		s.mu.Unlock()
		s.evicted[sc.kind].Add(uint64(n))
	}
}

// MarkUnsynced marks the cache unsynced: from now until the next Resync, Get
// and Do bypass the cache (counted as Bypassed), nothing is stored, and every
// fill in flight is stale. Entries are kept (unused) until Resync purges
// them. Call it as soon as notifications may have been lost, and before the
// first connection.
//
// The flag is cleared first, then each shard is walked under its lock: a
// fill registered in a shard before the walk reaches it is marked stale by
// the walk, and one registered after sees the cleared flag under the same
// lock and is stale from birth. A store that runs before the walk reaches
// its shard sees the cleared flag and is refused.
func (c *Cache[V]) MarkUnsynced() {
	for {
		old := c.state.Load()
		if c.state.CompareAndSwap(old, (old>>1+1)<<1) {
			break
		}
	}
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		s.staleLocked(scope{kind: scopeAll})
		clear(s.flights)
		s.mu.Unlock()
	}
}

// Resync purges every entry (counted in EvictedAll), makes every fill in
// flight stale, then marks the cache synced. Call it once notifications flow
// again (LISTEN is in place). Take a Keys snapshot before it to re-warm hot
// keys afterwards.
//
// The shards are walked first and the flag set last: a fill registered in a
// shard before the walk reaches it is marked stale by the walk, and one
// registered after the walk but before the flag is set is stale from birth,
// so every entry present once the cache is synced again comes from a fill
// that began after Resync. If MarkUnsynced runs while Resync walks, the
// cache stays unsynced: Resync sets the flag only if no MarkUnsynced happened
// since it began.
func (c *Cache[V]) Resync() {
	start := c.state.Load()
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n := s.invalidateLocked(scope{kind: scopeAll})
		s.mu.Unlock()
		s.evicted[scopeAll].Add(uint64(n))
	}
	if c.onResyncWalked != nil {
		c.onResyncWalked()
	}
	// Fails only if a MarkUnsynced moved the epoch (stay unsynced) or a
	// concurrent Resync already set the flag (synced either way).
	c.state.CompareAndSwap(start, start|syncedBit)
}

// Len returns the number of entries held, including expired entries that no
// lookup has removed yet.
func (c *Cache[V]) Len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += s.len()
		s.mu.RUnlock()
	}
	return n
}

// Keys returns a snapshot of the keys of live entries, for re-warming hot
// keys after a Resync. Recency is tracked per shard, by CLOCK reference
// bits, so the order is approximate: in each shard, entries used since the
// eviction hand last passed come first, newest slot first, then the others;
// the shards are interleaved (the first key of every shard, then the second
// of every shard, and so on). Keys does not change recency.
func (c *Cache[V]) Keys() []Key {
	now := c.nowMono()
	perShard := make([][]Key, len(c.shards))
	total, longest := 0, 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		live := make([]Key, 0, s.len())
		for _, used := range []bool{true, false} {
			for j := len(s.ring) - 1; j >= 0; j-- {
				if e := s.ring[j]; e != nil && e.ref.Load() == used && now < e.expires {
					live = append(live, e.key)
				}
			}
		}
		s.mu.RUnlock()
		perShard[i] = live
		total += len(live)
		longest = max(longest, len(live))
	}
	keys := make([]Key, 0, total)
	for rank := range longest {
		for _, ks := range perShard {
			if rank < len(ks) {
				keys = append(keys, ks[rank])
			}
		}
	}
	return keys
}

// Stats returns a snapshot of the counters.
func (c *Cache[V]) Stats() Stats {
	var st Stats
	for i := range c.shards {
		s := &c.shards[i]
		s.addTo(&st)
		s.mu.Lock()
		st.Entries += s.len()
		st.InFlight += len(s.fills)
		s.mu.Unlock()
	}
	st.Hits = c.hits.load()
	return st
}
