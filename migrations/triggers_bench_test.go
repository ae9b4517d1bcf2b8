package migrations_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orgperm/orgperm/internal/interleave"
	"github.com/orgperm/orgperm/internal/sidecheck"
	"github.com/orgperm/orgperm/migrations"
	"github.com/orgperm/orgperm/pkg/pgtest"
	"github.com/orgperm/orgperm/pkg/relay"
)

// BenchmarkTriggerOverhead measures membership writes with the current
// invalidation triggers, with those of the previous release (schema
// version 6, migrations/00006_queue.sql), with the current triggers in
// queue mode, in wal mode (no trigger: a relay decodes the WAL; walMode),
// with a statement trigger that only NOTIFYs a constant (the
// yardstick: the least a notifying trigger can cost) and with no trigger at
// all, interleaved in one run (in blocks of statements per side, in a new
// random order every round: package interleave) so that all seven see the
// same machine, and reports the throughput ratios to no
// trigger: throughput-ratio for the current triggers (issue #12 asks for at
// least 0.9), throughput-ratio-v6 for version 6's, queue-ratio for queue
// mode, notify-only-ratio for the yardstick, and wal-ratio for wal mode,
// whose sessions and yardstick's commit with synchronous_commit on (see
// walMode); and current-over-v6, the
// current triggers' throughput over version 6's. The audit triggers
// (migrations/00005_audit.sql) are disabled everywhere:
// BenchmarkAuditTriggerOverhead in pkg/membership measures them. A listener
// drains the notifications, as an app instance would.
//
//	go test -run '^$' -bench 'TriggerOverhead/single' -benchtime 4000x ./migrations
//	go test -run '^$' -bench 'TriggerOverhead/bulk' -benchtime 300x ./migrations
//
// bulk-1000 names its 1,000 members in an array (user_id = ANY ($1)), a
// statement of about 8 ms here; bulk-org-1000 updates every member of an
// org of 1,000 (WHERE org_id = 'bulk'), which finds its rows for less, so
// the triggers' share of it is larger.
func BenchmarkTriggerOverhead(b *testing.B) {
	for _, bc := range []struct {
		name string
		rows int           // rows per statement
		cost time.Duration // about what one statement takes on a quiet machine
		org  bool          // the statement is orgFlip, not sidecheck.BenchFlip
	}{
		{"single-row", 1, 300 * time.Microsecond, false},
		{"bulk-1000", 1000, 8 * time.Millisecond, false},
		{"bulk-org-1000", 1000, 3 * time.Millisecond, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			const (
				current = iota
				v6
				none
				notifyOnly
				queue
				wal
				noneS
			)
			pools := []*pgxpool.Pool{
				current:    benchDB(b, ctx, 0),
				v6:         benchDB(b, ctx, 6),
				none:       benchDB(b, ctx, -1),
				notifyOnly: benchDB(b, ctx, notifyConst),
				queue:      benchDB(b, ctx, queueMode),
				wal:        benchDB(b, ctx, walMode),
				noneS:      benchDB(b, ctx, noneSync),
			}
			stmt, args := sidecheck.BenchFlip, flipArgs(bc.rows)
			if bc.org {
				stmt, args = orgFlip, func(int) []any { return nil }
			}
			took := timeFlips(b, ctx, pools, bc.cost, stmt, args)
			n := float64(b.N)
			b.ReportMetric(float64(took[current].Nanoseconds())/n, "ns/stmt-triggers")
			b.ReportMetric(float64(took[v6].Nanoseconds())/n, "ns/stmt-triggers-v6")
			b.ReportMetric(float64(took[none].Nanoseconds())/n, "ns/stmt-no-triggers")
			b.ReportMetric(float64(took[notifyOnly].Nanoseconds())/n, "ns/stmt-notify-only")
			b.ReportMetric(float64(took[queue].Nanoseconds())/n, "ns/stmt-queue")
			b.ReportMetric(float64(took[wal].Nanoseconds())/n, "ns/stmt-wal")
			b.ReportMetric(float64(took[noneS].Nanoseconds())/n, "ns/stmt-no-triggers-sync")
			b.ReportMetric(float64(took[none])/float64(took[current]), "throughput-ratio")
			b.ReportMetric(float64(took[none])/float64(took[v6]), "throughput-ratio-v6")
			b.ReportMetric(float64(took[none])/float64(took[queue]), "queue-ratio")
			b.ReportMetric(float64(took[noneS])/float64(took[wal]), "wal-ratio")
			b.ReportMetric(float64(took[none])/float64(took[notifyOnly]), "notify-only-ratio")
			b.ReportMetric(float64(took[v6])/float64(took[current]), "current-over-v6")
		})
	}
}

// BenchmarkNotifyParts splits what a one-row membership UPDATE pays for
// its invalidation in notify mode into parts, on the statement and data of
// BenchmarkTriggerOverhead, every side interleaved in blocks in one run
// (package interleave), each reported as a throughput ratio to no
// trigger:
//
//   - silent-ratio: the current triggers with orgperm.send sending
//     nothing (the payload still built): the triggers' own work;
//   - unheard-ratio: the current triggers with nobody listening on the
//     database: the above plus the NOTIFY at commit (the notify lock, the
//     queue entry);
//   - throughput-ratio: the current triggers with a listener draining
//     the notifications, as in BenchmarkTriggerOverhead: the above plus
//     the listener's backend and client woken at every commit;
//   - notify-only-unheard-ratio and notify-only-ratio: the NOTIFY-only
//     yardstick without and with the listener.
//
// The listeners of the other sides' databases still read every entry of
// the server's one notification queue, the unheard sides' included.
//
//	go test -run '^$' -bench NotifyParts -benchtime 4000x -count 3 ./migrations
func BenchmarkNotifyParts(b *testing.B) {
	ctx := context.Background()
	const (
		none = iota
		silent
		unheard
		heard
		constUnheard
		constHeard
	)
	pools := []*pgxpool.Pool{
		none:         benchDB(b, ctx, -1),
		silent:       benchDB(b, ctx, silentSend),
		unheard:      benchDBListened(b, ctx, 0, false),
		heard:        benchDB(b, ctx, 0),
		constUnheard: benchDBListened(b, ctx, notifyConst, false),
		constHeard:   benchDB(b, ctx, notifyConst),
	}
	took := timeFlips(b, ctx, pools, 300*time.Microsecond, sidecheck.BenchFlip, flipArgs(1))
	n := float64(b.N)
	b.ReportMetric(float64(took[none].Nanoseconds())/n, "ns/stmt-no-triggers")
	for _, m := range []struct {
		side int
		name string
	}{
		{silent, "silent"}, {unheard, "unheard"}, {heard, "throughput"},
		{constUnheard, "notify-only-unheard"}, {constHeard, "notify-only"},
	} {
		b.ReportMetric(float64(took[none])/float64(took[m.side]), m.name+"-ratio")
	}
}

// orgFlip flips the status of every member of org "bulk" (benchDB's 1,000).
const orgFlip = sidecheck.FlipStatus + `
	WHERE org_id = 'bulk'`

// flipArgs returns the arguments of sidecheck.BenchFlip's statement i, for
// rows members per statement out of benchDB's 5,000 of org "bench".
func flipArgs(rows int) func(i int) []any {
	batch := sidecheck.Batches(5000, rows)
	return func(i int) []any { return []any{batch(i)} }
}

// timeFlips times stmt with args(i) as statement i on every pool, b.N
// statements each, in blocks of statements per side (each about cost) in a
// random order per round, so that each side pays for the work its own
// commits leave behind (the listener's wake-ups, the relay's next round):
// package interleave. It returns each side's time, with the benchmark's
// timer stopped.
func timeFlips(b *testing.B, ctx context.Context, pools []*pgxpool.Pool, cost time.Duration, stmt string, args func(i int) []any) []time.Duration {
	b.Helper()
	b.ResetTimer()
	took, err := interleave.Blocks(b.N, len(pools), interleave.BlockOf(cost), func(p, i int) error {
		_, err := pools[p].Exec(ctx, stmt, args(i)...)
		return err
	})
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	return took
}

// notifyConst, as benchDB's version, is the current schema with the
// membership triggers replaced by one statement-level UPDATE trigger that
// NOTIFYs constPayload.
const notifyConst = -2

// constPayload is what the NOTIFY-only yardstick sends.
const constPayload = `{"v":1,"t":"memberships","orgs":["bench"]}`

// queueMode, as benchDB's version, is the current schema in queue mode
// (orgperm.set_transport('queue')) with a relay (package relay, default
// interval) sending the queue to the listener.
const queueMode = -3

// silentSend, as benchDB's version, is the current schema with
// orgperm.send replaced by an inlined SQL function that reads the
// payload's length and sends nothing: the triggers' own work without the
// NOTIFY.
const silentSend = -4

// walMode, as benchDB's version, is the current schema in wal mode
// (orgperm.set_transport('wal')) with a relay (package relay, default
// interval) streaming the database's WAL and sending what it decodes to
// the listener. Its sessions commit with synchronous_commit on: the slot
// decodes only flushed WAL, so with the throwaway cluster's asynchronous
// commits the decoding would wait for the WAL writer and land in other
// sides' blocks; flushing at every commit keeps that work in the side's
// own block. Its yardstick is noneSync.
const walMode = -5

// noneSync, as benchDB's version, is -1 (no trigger) with the sessions
// committing with synchronous_commit on, as walMode's do.
const noneSync = -6

// benchDB returns a pool on a fresh database with 5,000 memberships of org
// "bench" and 1,000 of org "bulk": at the current schema (version 0), at
// an older one (version > 0), at the current one with the membership
// triggers disabled (version -1), replaced by a constant NOTIFY
// (notifyConst), in queue mode (queueMode) or sending nothing
// (silentSend). The audit triggers are disabled. With
// triggers, a listener drains the notifications. Before it returns, one
// membership UPDATE shows that the side sends what it is named for
// (checkSide).
func benchDB(b *testing.B, ctx context.Context, version int64) *pgxpool.Pool {
	return benchDBListened(b, ctx, version, true)
}

// benchDBListened is benchDB with the listener optional: with listen
// false nobody LISTENs on the database, so a NOTIFY wakes no one.
func benchDBListened(b *testing.B, ctx context.Context, version int64, listen bool) *pgxpool.Pool {
	b.Helper()
	var url string
	if version > 0 {
		url = pgtest.Shared(b).NewEmptyDatabase(b)
		db, err := sql.Open("pgx", url)
		if err != nil {
			b.Fatal(err)
		}
		p, err := migrations.NewProvider(db)
		if err == nil {
			_, err = p.UpTo(ctx, version)
		}
		db.Close()
		if err != nil {
			b.Fatal(err)
		}
	} else {
		url = pgtest.NewDatabase(b)
	}
	pcfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		b.Fatal(err)
	}
	if version == walMode || version == noneSync {
		pcfg.ConnConfig.RuntimeParams["synchronous_commit"] = "on"
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	if _, err := pool.Exec(ctx, `INSERT INTO orgperm.memberships (org_id, user_id)
		SELECT 'bench', 'user-' || g FROM generate_series(0, 4999) g
		UNION ALL SELECT 'bulk', 'bulk-' || g FROM generate_series(0, 999) g`); err != nil {
		b.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `ANALYZE orgperm.memberships`); err != nil {
		b.Fatal(err)
	}
	if version <= 0 || version >= 5 { // the audit trail (00005_audit.sql) is off on every side
		for _, ev := range []string{"insert", "update", "delete"} {
			if _, err := pool.Exec(ctx, "ALTER TABLE orgperm.memberships DISABLE TRIGGER memberships_audit_"+ev); err != nil {
				b.Fatal(err)
			}
			if version == -1 || version == noneSync || version == notifyConst {
				if _, err := pool.Exec(ctx, "ALTER TABLE orgperm.memberships DISABLE TRIGGER memberships_notify_"+ev); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	if version == -1 || version == noneSync {
		checkSide(b, ctx, url, pool, version)
		return pool
	}
	if version == notifyConst {
		if _, err := pool.Exec(ctx, `
			CREATE FUNCTION public.bench_notify_const() RETURNS trigger
			LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
			BEGIN
				PERFORM pg_catalog.pg_notify('orgperm_invalidate', '`+constPayload+`');
				RETURN NULL;
			END
			$$;
			CREATE TRIGGER bench_notify_const AFTER UPDATE ON orgperm.memberships
				FOR EACH STATEMENT EXECUTE FUNCTION public.bench_notify_const();`); err != nil {
			b.Fatal(err)
		}
	}
	if version == silentSend {
		// Inlined like the notify body (one SELECT of a void function, no
		// SET clause), and it reads the payload, so the payload is built.
		if _, err := pool.Exec(ctx, `
			CREATE OR REPLACE FUNCTION orgperm.send(channel text, payload text) RETURNS void
			LANGUAGE sql VOLATILE AS $$
				SELECT pg_catalog.pg_sleep(pg_catalog.octet_length(payload) * 0);
			$$`); err != nil {
			b.Fatal(err)
		}
	}
	if version == queueMode {
		if _, err := pool.Exec(ctx, `SELECT orgperm.set_transport('queue')`); err != nil {
			b.Fatal(err)
		}
		r, err := relay.New(relay.Config{Connect: func(ctx context.Context) (*pgx.Conn, error) { return pgx.Connect(ctx, url) }})
		if err != nil {
			b.Fatal(err)
		}
		if err := r.Start(ctx); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			if err := r.Stop(context.Background()); err != nil {
				b.Error(err)
			}
		})
	}
	if version == walMode {
		if _, err := pool.Exec(ctx, `SELECT orgperm.set_transport('wal')`); err != nil {
			b.Fatal(err)
		}
		startWALRelay(b, ctx, url, relay.DefaultInterval)
	}
	checkSide(b, ctx, url, pool, version)
	if !listen || version == silentSend {
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

// checkSide fails b unless one membership UPDATE on pool sends what the
// side version is named for: in queue mode, a queue row naming its member
// (sidecheck.QueuedRows); otherwise, as what a new listener gets before a
// marker sent after it, constPayload alone (notifyConst), nothing (-1 and
// silentSend) or one payload naming its member. A side whose triggers were
// left off, or on, by mistake fails here, not in the docs.
func checkSide(b *testing.B, ctx context.Context, url string, pool *pgxpool.Pool, version int64) {
	b.Helper()
	if version == queueMode {
		if n, err := sidecheck.QueuedRows(ctx, pool, "bench", "user-0"); err != nil || n == 0 {
			b.Fatalf("queue mode: a membership UPDATE queued %d rows (%v)", n, err)
		}
		return
	}
	flip := func(ctx context.Context) error {
		_, err := pool.Exec(ctx, sidecheck.Flip, "bench", "user-0")
		return err
	}
	if version == walMode {
		// The write's triggers are off, and the relay sends the payload
		// they would have.
		if on, err := sidecheck.NotifyTriggersOn(ctx, pool); err != nil || on != 0 {
			b.Fatalf("wal mode: %d notify triggers are enabled (%v)", on, err)
		}
	}
	check := sidecheck.Notified
	if version == walMode {
		check = sidecheck.Relayed
	}
	got, err := check(ctx, url, flip)
	if err != nil {
		b.Fatal(err)
	}
	var ok bool
	switch version {
	case -1, noneSync, silentSend:
		ok = len(got) == 0
	case notifyConst:
		ok = len(got) == 1 && got[0] == constPayload
	default:
		ok = len(got) == 1 && strings.Contains(got[0], `"user-0"`)
	}
	if !ok {
		b.Fatalf("side %d: a membership UPDATE sent %q", version, got)
	}
}

// BenchmarkFingerprint measures orgperm.fingerprint() on the server: a
// statement that calls it 100 times against the same statement computing
// an md5 100 times (the yardstick), interleaved; per-call is the difference
// over 100. Plain round trips of both, and of orgperm.inspect(), are
// reported too.
//
//	go test -run '^$' -bench Fingerprint ./migrations
func BenchmarkFingerprint(b *testing.B) {
	ctx := context.Background()
	pool := pgtest.NewPool(b)
	if _, err := pool.Exec(ctx, fixture); err != nil {
		b.Fatal(err)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Release()
	const calls = 100
	stmts := []string{
		fmt.Sprintf("SELECT count(orgperm.fingerprint()) FROM generate_series(1, %d)", calls),
		fmt.Sprintf("SELECT count(md5(g::text)) FROM generate_series(1, %d) g", calls),
		"SELECT orgperm.fingerprint()",
		"SELECT 1",
		"SELECT count(*) FROM orgperm.inspect()",
	}
	var took [5]time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for k := range stmts {
			s := (i + k) % len(stmts)
			start := time.Now()
			if _, err := conn.Exec(ctx, stmts[s]); err != nil {
				b.Fatal(err)
			}
			took[s] += time.Since(start)
		}
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(float64((took[0]-took[1]).Nanoseconds())/n/calls, "ns/fingerprint-server")
	b.ReportMetric(float64(took[2].Nanoseconds())/n, "ns/roundtrip-fingerprint")
	b.ReportMetric(float64(took[3].Nanoseconds())/n, "ns/roundtrip-select-1")
	b.ReportMetric(float64(took[4].Nanoseconds())/n, "ns/roundtrip-inspect")
}
