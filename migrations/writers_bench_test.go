package migrations_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orgperm/orgperm/internal/sidecheck"
)

// BenchmarkConcurrentWriters measures single-row membership writes
// (autocommit UPDATEs, each writer on its own connection and its own
// users) by 1, 8 and 32 concurrent writers, with the invalidation triggers
// (notify mode, the default), with them disabled, with them in queue
// mode (relayed by package relay), and in wal mode (no trigger; a relay
// decodes the WAL) against no trigger with the same synchronous commits
// (walMode, noneSync), in rotating 1 s phases over 3 rounds of
// one run, while a listener drains the notifications. It reports writes/s
// of each and their ratios to no triggers: every notifying commit takes
// PostgreSQL's database-wide notify lock, held through its commit's WAL
// flush, so notifying writers commit one at a time.
//
//	go test -run '^$' -bench ConcurrentWriters -benchtime 1x ./migrations
func BenchmarkConcurrentWriters(b *testing.B) {
	ctx := context.Background()
	wide := func(p *pgxpool.Pool) *pgxpool.Pool { // one connection per writer
		cfg := p.Config()
		cfg.MaxConns = 40
		w, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(w.Close)
		return w
	}
	pools := []*pgxpool.Pool{wide(benchDB(b, ctx, 0)), wide(benchDB(b, ctx, -1)), wide(benchDB(b, ctx, queueMode)),
		wide(benchDB(b, ctx, walMode)), wide(benchDB(b, ctx, noneSync))}
	for _, writers := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			took := make([]time.Duration, len(pools))
			done := make([]int64, len(pools))
			for b.Loop() {
				for round := range 3 {
					for k := range pools {
						p := (round + k) % len(pools)
						n, d := writeFor(b, ctx, pools[p], writers, time.Second)
						done[p] += n
						took[p] += d
					}
				}
			}
			withT := float64(done[0]) / took[0].Seconds()
			without := float64(done[1]) / took[1].Seconds()
			b.ReportMetric(withT, "writes/s-triggers")
			b.ReportMetric(without, "writes/s-no-triggers")
			b.ReportMetric(withT/without, "ratio")
			queued := float64(done[2]) / took[2].Seconds()
			b.ReportMetric(queued, "writes/s-queue")
			b.ReportMetric(queued/without, "ratio-queue")
			wal := float64(done[3]) / took[3].Seconds()
			b.ReportMetric(wal, "writes/s-wal")
			b.ReportMetric(wal/(float64(done[4])/took[4].Seconds()), "ratio-wal")
		})
	}
}

// writeFor runs writers concurrent writers on pool for d and returns the
// writes made and the time taken.
func writeFor(b *testing.B, ctx context.Context, pool *pgxpool.Pool, writers int, d time.Duration) (int64, time.Duration) {
	var n atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	start := time.Now()
	deadline := start.Add(d)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := pool.Acquire(ctx)
			if err != nil {
				failed.Store(err)
				return
			}
			defer conn.Release()
			for i := 0; time.Now().Before(deadline); i++ {
				// 5,000 users: writer w takes users w, w+writers, ...
				user := fmt.Sprintf("user-%d", (w+i*writers)%5000)
				if _, err := conn.Exec(ctx, sidecheck.FlipStatus+`
					WHERE org_id = 'bench' AND user_id = $1`, user); err != nil {
					failed.Store(err)
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	return n.Load(), time.Since(start)
}
