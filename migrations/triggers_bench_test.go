package migrations_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orgperm/orgperm/pkg/pgtest"
)

// BenchmarkTriggerOverhead measures membership writes with the invalidation
// triggers installed and with them disabled, interleaved in one run so both
// see the same machine, and reports the ratio. A listener drains the
// notifications, as an app instance would.
//
//	go test -run '^$' -bench TriggerOverhead ./migrations
func BenchmarkTriggerOverhead(b *testing.B) {
	for _, bc := range []struct {
		name string
		rows int // rows per statement
	}{{"single-row", 1}, {"bulk-1000", 1000}} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			with := benchDB(b, ctx, true)
			without := benchDB(b, ctx, false)
			const users = 5000
			stmt := `UPDATE orgperm.memberships
				SET status = CASE status WHEN 'active' THEN 'suspended' ELSE 'active' END
				WHERE org_id = 'bench' AND user_id = ANY ($1)`
			batch := func(i int) []string {
				ids := make([]string, bc.rows)
				for j := range ids {
					ids[j] = fmt.Sprintf("user-%d", (i*bc.rows+j)%users)
				}
				return ids
			}
			var tWith, tWithout time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				ids := batch(i)
				start := time.Now()
				if _, err := with.Exec(ctx, stmt, ids); err != nil {
					b.Fatal(err)
				}
				mid := time.Now()
				if _, err := without.Exec(ctx, stmt, ids); err != nil {
					b.Fatal(err)
				}
				tWith += mid.Sub(start)
				tWithout += time.Since(mid)
			}
			b.StopTimer()
			n := float64(b.N)
			b.ReportMetric(float64(tWith.Nanoseconds())/n, "ns/stmt-triggers")
			b.ReportMetric(float64(tWithout.Nanoseconds())/n, "ns/stmt-no-triggers")
			b.ReportMetric(float64(tWithout)/float64(tWith), "throughput-ratio")
		})
	}
}

func benchDB(b *testing.B, ctx context.Context, triggers bool) *pgxpool.Pool {
	b.Helper()
	url := pgtest.NewDatabase(b)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	if _, err := pool.Exec(ctx, `INSERT INTO orgperm.memberships (org_id, user_id)
		SELECT 'bench', 'user-' || g FROM generate_series(0, 4999) g`); err != nil {
		b.Fatal(err)
	}
	if !triggers {
		for _, ev := range []string{"insert", "update", "delete"} {
			if _, err := pool.Exec(ctx, "ALTER TABLE orgperm.memberships DISABLE TRIGGER memberships_notify_"+ev); err != nil {
				b.Fatal(err)
			}
		}
		return pool
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "LISTEN orgperm_invalidate"); err != nil {
		b.Fatal(err)
	}
	lctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, err := conn.WaitForNotification(lctx); err != nil {
				return
			}
		}
	}()
	b.Cleanup(func() {
		cancel()
		<-done
		conn.Close(context.Background())
	})
	return pool
}
