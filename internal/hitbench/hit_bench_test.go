package hitbench

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/maypok86/otter/v2"

	"github.com/orgperm/orgperm/pkg/localcache"
	"github.com/orgperm/orgperm/pkg/membership"
	"github.com/orgperm/orgperm/pkg/pgtest"
)

const (
	members  = 1000
	org      = "bench"
	codename = "app3.perm_53" // granted by role a3: a quarter of the members hold it
)

// seedSQL writes the population described in the package documentation.
var seedSQL = []string{
	`INSERT INTO orgperm.permissions (codename)
	 SELECT 'app' || (c % 10) || '.perm_' || c FROM generate_series(0, 150) c`,
	`INSERT INTO orgperm.roles (org_id, name)
	 SELECT 'bench', n FROM unnest(array['a0','a1','a2','a3','b0','b1','b2','c0','c1']) n`,
	// Role k of the 9 grants codenames [start, start+len): 17 each for
	// the a and b pools, 16 each for the c pool.
	`INSERT INTO orgperm.role_permissions (role_id, codename)
	 SELECT r.id, 'app' || (c % 10) || '.perm_' || c
	 FROM orgperm.roles r
	 JOIN (VALUES ('a0', 0, 17), ('a1', 17, 17), ('a2', 34, 17), ('a3', 51, 17),
	              ('b0', 68, 17), ('b1', 85, 17), ('b2', 102, 17),
	              ('c0', 119, 16), ('c1', 135, 16)) AS v(name, start, len) ON v.name = r.name
	 CROSS JOIN LATERAL generate_series(v.start, v.start + v.len - 1) c`,
	`INSERT INTO orgperm.memberships (org_id, user_id)
	 SELECT 'bench', 'user-' || lpad(i::text, 6, '0') FROM generate_series(0, 999) i`,
	`INSERT INTO orgperm.membership_roles (org_id, user_id, role_id)
	 SELECT 'bench', 'user-' || lpad(i::text, 6, '0'), r.id
	 FROM generate_series(0, 999) i
	 JOIN orgperm.roles r ON r.name IN ('a' || (i % 4), 'b' || (i % 3), 'c' || (i % 2))`,
	// Through roles: a-roles grant 4 records, b-roles 3, c-roles 3 (10
	// per member), spread over the 5 types.
	`INSERT INTO orgperm.data_access (org_id, role_id, resource_type, resource_id)
	 SELECT 'bench', r.id, 'type' || (j % 5), r.name || '-rec-' || j
	 FROM orgperm.roles r
	 CROSS JOIN LATERAL generate_series(0, CASE WHEN r.name LIKE 'a%' THEN 3 ELSE 2 END) j`,
	// To the member alone: 2 records of each type.
	`INSERT INTO orgperm.data_access (org_id, user_id, resource_type, resource_id)
	 SELECT 'bench', 'user-' || lpad(i::text, 6, '0'), 'type' || (j % 5), 'u' || i || '-rec-' || j
	 FROM generate_series(0, 999) i CROSS JOIN generate_series(0, 9) j`,
	`ANALYZE`,
}

// env is a seeded database and the keys of its members.
type env struct {
	pool *pgxpool.Pool
	keys []membership.Key
}

func setup(b testing.TB) *env {
	b.Helper()
	pool := pgtest.NewPool(b)
	for _, q := range seedSQL {
		if _, err := pool.Exec(context.Background(), q); err != nil {
			b.Fatalf("seed: %v\n%s", err, q)
		}
	}
	e := &env{pool: pool, keys: make([]membership.Key, members)}
	for i := range e.keys {
		e.keys[i] = membership.Key{Org: org, User: fmt.Sprintf("user-%06d", i)}
	}
	return e
}

// client returns a warm, synced client holding every member's set.
func (e *env) client(b testing.TB) *membership.Client {
	b.Helper()
	ctx := context.Background()
	// The longest lease: a hit costs the same whatever the lease, and on a
	// loaded machine a proof late by a second would turn hits into reads.
	c, err := membership.New(ctx, e.pool, membership.Config{Lease: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close(context.Background()) })
	select {
	case <-c.Ready():
	case <-time.After(30 * time.Second):
		b.Fatal("client not ready after 30s")
	}
	if err := c.Warm(ctx, e.keys); err != nil {
		b.Fatal(err)
	}
	// Check the population once: the typical set, every key cached.
	s, err := c.Permissions(ctx, org, e.keys[3].User)
	if err != nil {
		b.Fatal(err)
	}
	ids := 0
	for _, typ := range s.ResourceTypes() {
		_, list := s.AccessibleIDs(typ)
		ids += len(list)
	}
	if len(s.Roles()) != 3 || len(s.Permissions()) != 50 || len(s.ResourceTypes()) != 5 || ids != 20 {
		b.Fatalf("member holds %d roles, %d codenames, %d types, %d records; want 3, 50, 5, 20",
			len(s.Roles()), len(s.Permissions()), len(s.ResourceTypes()), ids)
	}
	if st := c.Stats().Cache; st.Entries != members {
		b.Fatalf("cache holds %d entries, want %d", st.Entries, members)
	}
	return c
}

// TestHitDoesNotAllocate checks that a cached HasPermission, the check
// BenchmarkHit measures, allocates nothing, hit or denial.
func TestHitDoesNotAllocate(t *testing.T) {
	if testing.Short() {
		t.Skip("seeds 1,000 members for the benchmarks (-short; make test runs it)")
	}
	e := setup(t)
	c := e.client(t)
	ctx := context.Background()
	before := c.Stats().Cache
	for _, code := range []string{codename, "app0.perm_0", "nope.nope"} {
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := c.HasPermission(ctx, org, e.keys[7].User, code); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("HasPermission(%q) allocates %v times per hit, want 0", code, allocs)
		}
	}
	if st := c.Stats().Cache; st.Hits-before.Hits < 300 || st.Misses != before.Misses {
		t.Errorf("%d hits, %d misses: not every check was a hit", st.Hits-before.Hits, st.Misses-before.Misses)
	}
}

// sets returns every member's set, from c's cache.
func (e *env) sets(b *testing.B, c *membership.Client) []*membership.PermissionSet {
	b.Helper()
	sets := make([]*membership.PermissionSet, len(e.keys))
	for i, k := range e.keys {
		s, err := c.Permissions(context.Background(), k.Org, k.User)
		if err != nil {
			b.Fatal(err)
		}
		sets[i] = s
	}
	return sets
}

// walk runs fn over the keys from a per-goroutine offset, by a stride
// coprime with the key count, in parallel.
func walk(b *testing.B, fn func(i int)) {
	var seq atomic.Uint32
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seq.Add(1)) * 97
		for pb.Next() {
			fn(i % members)
			i += 31
		}
	})
}

// rounds is the number of interleaved rounds BenchmarkHit runs: go test's
// -count repeats a sub-benchmark back to back, so the rounds are made here.
var rounds = flag.Int("hitbench.rounds", 6, "interleaved rounds of BenchmarkHit")

// BenchmarkHit is the cached HasPermission hit against otter v2's Get with
// a TTL on the same keys, in -hitbench.rounds interleaved rounds (each
// round runs every impl once): run it with -cpu 1,2 -count 1.
//
//   - impl=orgperm: Client.HasPermission answered from the cache (request
//     options from the context, lease, shard read lock, expiry, codename
//     bit test).
//   - impl=otter: otter.Cache.GetIfPresent of the same keys, holding the
//     same sets, with a 5-minute TTL (ExpiryWriting): a lookup with no
//     permission check, the yardstick. It reads the monotonic
//     clock on every call, as orgperm's hit does.
//   - impl=otter+has: the same Get followed by PermissionSet.Has, the
//     whole check a cache built on otter would make.
//   - impl=localcache: localcache.Cache.Get alone (what the client's hit
//     does below its context handling and the permission check), on a
//     cache with the client's configuration holding the same sets: the
//     like-for-like of impl=otter.
func BenchmarkHit(b *testing.B) {
	e := setup(b)
	c := e.client(b)
	sets := e.sets(b, c)
	oc := otter.Must(&otter.Options[membership.Key, *membership.PermissionSet]{
		MaximumSize:      10 * members,
		ExpiryCalculator: otter.ExpiryWriting[membership.Key, *membership.PermissionSet](5 * time.Minute),
	})
	b.Cleanup(func() { oc.StopAllGoroutines() })
	lc, err := localcache.New[*membership.PermissionSet](localcache.Config{
		Capacity: 10_000, TTL: 5 * time.Minute, Lease: time.Minute, OnLeaseLow: func() {},
	})
	if err != nil {
		b.Fatal(err)
	}
	lc.Prove(time.Now())
	lkeys := make([]localcache.Key, len(e.keys))
	for i, k := range e.keys {
		oc.Set(k, sets[i])
		lkeys[i] = localcache.Key{Org: k.Org, User: k.User}
		if !lc.Begin(lkeys[i]).Store(sets[i], 0) {
			b.Fatal("localcache refused a store")
		}
	}
	keys := e.keys
	ctx := context.Background()

	impls := []struct {
		name string
		run  func(b *testing.B)
	}{
		{"orgperm", func(b *testing.B) {
			before := c.Stats().Cache
			walk(b, func(i int) {
				if _, err := c.HasPermission(ctx, org, keys[i].User, codename); err != nil {
					b.Fatal(err)
				}
			})
			b.StopTimer()
			if st := c.Stats().Cache; st.Misses != before.Misses || st.LeaseExpired != before.LeaseExpired || st.Bypassed != before.Bypassed {
				b.Fatalf("not every check was a hit: %d misses, %d lease expired, %d bypassed",
					st.Misses-before.Misses, st.LeaseExpired-before.LeaseExpired, st.Bypassed-before.Bypassed)
			}
		}},
		{"otter", func(b *testing.B) {
			walk(b, func(i int) {
				if _, ok := oc.GetIfPresent(keys[i]); !ok {
					b.Fatal("otter miss")
				}
			})
		}},
		{"localcache", func(b *testing.B) {
			lc.Prove(time.Now()) // a minute of lease for this run
			walk(b, func(i int) {
				if _, ok := lc.Get(lkeys[i]); !ok {
					b.Fatal("localcache miss")
				}
			})
		}},
		{"otter+has", func(b *testing.B) {
			walk(b, func(i int) {
				s, ok := oc.GetIfPresent(keys[i])
				if !ok {
					b.Fatal("otter miss")
				}
				_ = s.Has(codename)
			})
		}},
	}
	for r := range *rounds {
		for _, impl := range impls {
			b.Run(fmt.Sprintf("impl=%s/round=%d", impl.name, r), impl.run)
		}
	}
}

// heap returns the live heap after a full collection.
func heap() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkEntryMemory reports the heap per cached typical entry, cache
// overhead included (B/entry), measured with runtime.MemStats before and
// after a client's cache is filled with every member; and, as its
// yardstick, the heap otter v2 (5-minute TTL) adds per entry when it holds
// the same sets (otter-B/entry: its overhead alone, the sets being already
// held). One iteration is one fill (its ns/op means nothing); the figures
// are those of the last iteration.
func BenchmarkEntryMemory(b *testing.B) {
	e := setup(b)
	ctx := context.Background()
	for range b.N {
		c, err := membership.New(ctx, e.pool, membership.Config{Lease: time.Minute})
		if err != nil {
			b.Fatal(err)
		}
		<-c.Ready()
		// Fill one member first: the catalog, the schema check and the
		// pool's connections are per process, not per entry.
		if err := c.Warm(ctx, e.keys[:1]); err != nil {
			b.Fatal(err)
		}
		c.EvictAll()
		before := heap()
		if err := c.Warm(ctx, e.keys); err != nil {
			b.Fatal(err)
		}
		after := heap()
		if n := c.Stats().Cache.Entries; n != members {
			b.Fatalf("cache holds %d entries, want %d", n, members)
		}
		b.ReportMetric(float64(int64(after)-int64(before))/members, "B/entry")

		sets := e.sets(b, c)
		oc := otter.Must(&otter.Options[membership.Key, *membership.PermissionSet]{
			MaximumSize:      10 * members,
			ExpiryCalculator: otter.ExpiryWriting[membership.Key, *membership.PermissionSet](5 * time.Minute),
		})
		before = heap()
		for i, k := range e.keys {
			oc.Set(k, sets[i])
		}
		after = heap()
		b.ReportMetric(float64(int64(after)-int64(before))/members, "otter-B/entry")
		oc.StopAllGoroutines()
		runtime.KeepAlive(sets)
		if err := c.Close(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
