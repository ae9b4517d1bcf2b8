package membership

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orgperm/orgperm/internal/interleave"
	"github.com/orgperm/orgperm/internal/sidecheck"
	"github.com/orgperm/orgperm/pkg/pgtest"
)

// BenchmarkAuditTriggerOverhead is the trigger benchmark of
// migrations/triggers_bench_test.go with the audit trail: the same
// membership UPDATE (one row, or 1,000 rows per statement) on three
// databases, interleaved in blocks of statements per database, in a new
// random order every round (package interleave), so that all three see the
// same machine and each pays for what its own commits leave behind: no
// triggers at all, the invalidation triggers only, and the invalidation and
// audit triggers. A listener drains the notifications, as
// an app instance would. It reports the time per statement of each and the
// throughput ratios: no-triggers/audit-on (the whole cost of both trigger
// sets, comparable to the trigger benchmark's throughput-ratio) and
// notify-only/audit-on (the audit's own cost).
//
//	go test -run '^$' -bench AuditTriggerOverhead ./pkg/membership
func BenchmarkAuditTriggerOverhead(b *testing.B) {
	for _, bc := range []struct {
		name string
		rows int
		cost time.Duration // about what one statement takes on a quiet machine
	}{{"single-row", 1, 300 * time.Microsecond}, {"bulk-1000", 1000, 10 * time.Millisecond}} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			dbs := []*pgxpool.Pool{
				auditBenchDB(b, ctx, false, false),
				auditBenchDB(b, ctx, true, false),
				auditBenchDB(b, ctx, true, true),
			}
			batch := sidecheck.Batches(5000, bc.rows) // auditBenchDB's 5,000 members
			// Blocks of statements per database, so that each pays for the
			// listener wake-ups its own commits cause: package interleave.
			b.ResetTimer()
			spent, err := interleave.Blocks(b.N, len(dbs), interleave.BlockOf(bc.cost), func(d, i int) error {
				_, err := dbs[d].Exec(ctx, sidecheck.BenchFlip, batch(i))
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			n := float64(b.N)
			b.ReportMetric(float64(spent[0].Nanoseconds())/n, "ns/stmt-no-triggers")
			b.ReportMetric(float64(spent[1].Nanoseconds())/n, "ns/stmt-notify")
			b.ReportMetric(float64(spent[2].Nanoseconds())/n, "ns/stmt-notify+audit")
			b.ReportMetric(float64(spent[0])/float64(spent[2]), "ratio-none/audit")
			b.ReportMetric(float64(spent[1])/float64(spent[2]), "ratio-notify/audit")
		})
	}
}

// auditBenchDB returns a pool on a fresh database of 5,000 memberships of
// org bench, with the memberships' invalidation triggers and audit
// triggers enabled as asked, and a listener draining the channel when
// notify is on.
func auditBenchDB(b *testing.B, ctx context.Context, notify, audit bool) *pgxpool.Pool {
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
	for _, ev := range []string{"insert", "update", "delete"} {
		if !notify {
			if _, err := pool.Exec(ctx, "ALTER TABLE orgperm.memberships DISABLE TRIGGER memberships_notify_"+ev); err != nil {
				b.Fatal(err)
			}
		}
		if !audit {
			if _, err := pool.Exec(ctx, "ALTER TABLE orgperm.memberships DISABLE TRIGGER memberships_audit_"+ev); err != nil {
				b.Fatal(err)
			}
		}
	}
	checkAuditSide(b, ctx, url, pool, notify, audit)
	if !notify {
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

// checkAuditSide fails b unless one membership UPDATE on pool does what
// the side is named for: it records audit rows exactly when audit is on,
// and sends one payload naming its member exactly when notify is on (what
// a new listener gets before a marker sent after it). A side whose
// triggers were left on, or off, by mistake fails here, not in the docs.
func checkAuditSide(b *testing.B, ctx context.Context, url string, pool *pgxpool.Pool, notify, audit bool) {
	b.Helper()
	var recorded int
	got, err := sidecheck.Notified(ctx, url, func(ctx context.Context) error {
		if _, err := pool.Exec(ctx, sidecheck.Flip, "bench", "user-0"); err != nil {
			return err
		}
		return pool.QueryRow(ctx, `SELECT count(*) FROM orgperm.audit_log WHERE user_id = 'user-0' AND operation = 'UPDATE'`).Scan(&recorded)
	})
	if err != nil {
		b.Fatal(err)
	}
	sent := len(got) == 1 && strings.Contains(got[0], `"user-0"`)
	if (recorded > 0) != audit || sent != notify || (!notify && len(got) > 0) {
		b.Fatalf("side notify=%v audit=%v: a membership UPDATE recorded %d audit rows and sent %q", notify, audit, recorded, got)
	}
}
