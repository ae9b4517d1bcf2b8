package integration_test

import (
	"context"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orgperm/orgperm/internal/hooks"
	"github.com/orgperm/orgperm/pkg/listener"
	"github.com/orgperm/orgperm/pkg/localcache"
	"github.com/orgperm/orgperm/pkg/membership"
	"github.com/orgperm/orgperm/pkg/pgtest"
)

// queryCounter is a pgx tracer that counts what a pool sends: round trips
// (a query, or a whole batch) and queries (each query of a batch too).
type queryCounter struct{ roundTrips, queries atomic.Int64 }

func (q *queryCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	q.roundTrips.Add(1)
	q.queries.Add(1)
	return ctx
}
func (q *queryCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (q *queryCounter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	q.roundTrips.Add(1)
	return ctx
}
func (q *queryCounter) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {
	q.queries.Add(1)
}
func (q *queryCounter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// countingPool is a pool on url whose round trips are counted. The
// heartbeat, which goes through the pool, is disabled by the callers that
// count.
func countingPool(tb testing.TB, url string) (*pgxpool.Pool, *queryCounter) {
	tb.Helper()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		tb.Fatal(err)
	}
	qc := &queryCounter{}
	cfg.ConnConfig.Tracer = qc
	cfg.MaxConns = 16
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	return pool, qc
}

// TestConcurrentMissesOneQuery: 1,000 concurrent misses of one key make
// exactly one query (rule 5).
func TestConcurrentMissesOneQuery(t *testing.T) {
	t.Parallel()
	w := newWorld(t, pgtest.Shared(t))
	pool, qc := countingPool(t, w.url)
	release := make(chan struct{})
	var held atomic.Bool
	in := newInstance(t, pool, membership.Config{Lease: time.Minute}, hooks.Client{
		AfterLoad: func(string, string) {
			if held.CompareAndSwap(false, true) {
				<-release
			}
		},
	})
	before := qc.queries.Load()
	const callers = 1000
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := in.c.HasPermission(context.Background(), "o1", "u1", "billing.view_invoice"); err != nil {
				errs <- err
			}
		}()
	}
	// Wait until every caller is either the loader or has joined its
	// flight: a signal from the cache's own counters, not a sleep.
	deadline := time.Now().Add(waitTimeout)
	for {
		st := in.c.Stats().Cache
		if st.Loads == 1 && st.Coalesced == callers-1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("callers never all joined one flight: %+v", st)
		}
		runtime.Gosched()
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := qc.queries.Load() - before; got != 1 {
		t.Fatalf("%d concurrent misses made %d queries, want 1", callers, got)
	}
}

// benchSetup is a world with a warmed client, for the check benchmarks.
func benchSetup(b *testing.B) (*world, *instance) {
	b.Helper()
	url := pgtest.NewDatabase(b)
	w := &world{url: url, pool: benchPool(b, url), raw: benchPool(b, url)}
	if _, err := w.raw.Exec(context.Background(), fixture); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c, err := membership.New(ctx, w.pool, membership.Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close(context.Background()) })
	<-c.Ready()
	return w, &instance{c: c}
}

func benchPool(b *testing.B, url string) *pgxpool.Pool {
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	return pool
}

// BenchmarkCheck compares, in one run, a check answered from the local
// cache with the same check read straight from the database.
//
//	go test -run '^$' -bench Check -benchmem -cpu 1,2 ./integration
func BenchmarkCheck(b *testing.B) {
	w, in := benchSetup(b)
	ctx := context.Background()
	b.Run("cached-hit", func(b *testing.B) {
		if ok, err := in.c.HasPermission(ctx, "o1", "u1", "billing.view_invoice"); err != nil || !ok {
			b.Fatal(ok, err)
		}
		before := in.c.Stats().Cache
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if ok, _ := in.c.HasPermission(ctx, "o1", "u1", "billing.view_invoice"); !ok {
					b.Error("denied")
					return
				}
			}
		})
		b.StopTimer()
		checkAllHits(b, before, in.c.Stats().Cache)
	})
	b.Run("user-wide-cached-hit", func(b *testing.B) {
		if ok, err := in.c.UserHasActiveMembership(ctx, "u1"); err != nil || !ok {
			b.Fatal(ok, err)
		}
		before := in.c.Stats().Cache
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if ok, _ := in.c.UserHasActiveMembership(ctx, "u1"); !ok {
					b.Error("denied")
					return
				}
			}
		})
		b.StopTimer()
		checkAllHits(b, before, in.c.Stats().Cache)
	})
	b.Run("store-read", func(b *testing.B) {
		store := membership.NewStore(w.raw)
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				s, err := store.Load(ctx, "o1", "u1", time.Now())
				if err != nil || !s.Has("billing.view_invoice") {
					b.Error("denied", err)
					return
				}
			}
		})
	})
}

// checkAllHits fails b unless every check between the two snapshots of a
// client's cache counters was a hit: a check that missed, found its lease
// expired or bypassed the cache read the database, and a "cached" figure
// that includes it measures something else.
func checkAllHits(b *testing.B, before, after localcache.Stats) {
	b.Helper()
	if after.Misses != before.Misses || after.LeaseExpired != before.LeaseExpired || after.Bypassed != before.Bypassed {
		b.Fatalf("not every check was a hit: %d misses, %d lease expired, %d bypassed",
			after.Misses-before.Misses, after.LeaseExpired-before.LeaseExpired, after.Bypassed-before.Bypassed)
	}
}

// BenchmarkReadYourWrites reports, in one run, what read-your-writes on
// request costs next to its yardstick, a bare primary-key select on the
// same pool: Sync (one shared proof of delivery), a check with a token the
// instance must wait for (a write, its token, then the check), and a check
// with a token the instance is already past (no round trip).
//
//	go test -run '^$' -bench ReadYourWrites -count 5 ./integration
func BenchmarkReadYourWrites(b *testing.B) {
	w, in := benchSetup(b)
	ctx := context.Background()
	b.Run("pk-select", func(b *testing.B) {
		for b.Loop() {
			var s string
			if err := w.pool.QueryRow(ctx, `SELECT status FROM orgperm.memberships WHERE org_id = $1 AND user_id = $2`, "o1", "u1").Scan(&s); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sync", func(b *testing.B) {
		sent := in.c.Stats().Listener.ProofsSent
		for b.Loop() {
			if err := in.c.Sync(ctx); err != nil {
				b.Fatal(err)
			}
		}
		// Each Sync waits for a proof sent after it began, so one after
		// the other they send one each; fewer means some returned at once
		// (a cache not in service: Sync then waits for nothing).
		if n := in.c.Stats().Listener.ProofsSent - sent; n < uint64(b.N) {
			b.Fatalf("%d Syncs sent %d proofs: some did not wait for one", b.N, n)
		}
	})
	b.Run("token-check-waits", func(b *testing.B) {
		// Each token is taken after a notifying write (outside the timer),
		// so that the instance has not yet proven it: checked before each
		// check, which would otherwise not wait. A proof of the instance's
		// lease may pass a token now and then; more than a tenth means the
		// side does not measure the wait.
		proven := 0
		for b.Loop() {
			b.StopTimer()
			if _, err := w.raw.Exec(ctx, `SELECT orgperm.evict_user('bench')`); err != nil {
				b.Fatal(err)
			}
			tok, err := in.c.Token(ctx)
			if err != nil {
				b.Fatal(err)
			}
			tctx, err := membership.WithToken(ctx, tok)
			if err != nil {
				b.Fatal(err)
			}
			if in.c.Stats().Listener.ProvenLSN >= tokenLSN(b, tok) {
				proven++
			}
			b.StartTimer()
			if ok, err := in.c.HasPermission(tctx, "o1", "u1", "billing.view_invoice"); err != nil || !ok {
				b.Fatal(ok, err)
			}
		}
		if proven*10 > b.N {
			b.Fatalf("%d of %d tokens were proven before their check: those checks did not wait", proven, b.N)
		}
	})
	b.Run("token-check-past", func(b *testing.B) {
		tok, err := in.c.Token(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := in.c.Sync(ctx); err != nil {
			b.Fatal(err)
		}
		tctx, err := membership.WithToken(ctx, tok)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if ok, err := in.c.HasPermission(tctx, "o1", "u1", "billing.view_invoice"); err != nil || !ok {
				b.Fatal(ok, err)
			}
		}
	})
}

// tokenLSN returns the WAL position a token ("o2.<timeline>.<LSN>") stands
// for.
func tokenLSN(b *testing.B, tok membership.Token) uint64 {
	b.Helper()
	parts := strings.Split(string(tok), ".")
	lsn, err := listener.ParseLSN(parts[len(parts)-1])
	if err != nil {
		b.Fatalf("token %q: %v", tok, err)
	}
	return lsn
}
