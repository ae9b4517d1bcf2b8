package relay_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"

	"github.com/orgperm/orgperm/pkg/listener"
	"github.com/orgperm/orgperm/pkg/relay"
)

// TestBacklogOutlastsDeadline: a round takes the whole queue, so after an
// outage one round can need longer than the statement deadline. With a
// connection that cancels its statement on deadline (a cancel request, as
// pgconn's CancelRequestContextWatcherHandler sends), every round cut at
// the same deadline rolls back, and the queue would never drain; the
// relay doubles a cut round's deadline until one fits, and drains it.
func TestBacklogOutlastsDeadline(t *testing.T) {
	t.Parallel()
	url, listen := setup(t)
	ctx := context.Background()
	conn := connect(t, url)
	const backlog = 20000
	if _, err := conn.Exec(ctx, `SELECT orgperm.evict_user('backlog-' || i) FROM pg_catalog.generate_series(1, $1) i`, backlog); err != nil {
		t.Fatal(err)
	}
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, DeadlineDelay: time.Second}
	}
	// The first deadline far shorter than a round of the backlog takes,
	// long enough for the lock's query.
	r, _ := startRelay(t, func(ctx context.Context) (*pgx.Conn, error) { return pgx.ConnectConfig(ctx, cfg) },
		func(r *relay.Relay) { relay.SetStatementTimeout(r, 20*time.Millisecond) })
	// Rounds are cut and retried with doubled deadlines: allow more than
	// one wait on a loaded machine (the race detector, other packages'
	// tests).
	deadline := time.Now().Add(3 * waitTimeout)
	for {
		var left int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM orgperm.queue`).Scan(&left); err != nil {
			t.Fatal(err)
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d rows still queued after %v; relay stats %+v", left, backlog, 3*waitTimeout, r.Stats())
		}
		time.Sleep(50 * time.Millisecond)
	}
	st := r.Stats()
	if st.Errors == 0 {
		t.Fatalf("relay stats %+v: want at least one round cut by its deadline", st)
	}
	// Every row's eviction arrived. Not judged by Stats().Relayed: a round
	// whose COMMIT went through while its deadline's cancel request was on
	// its way reports an error, and its rows are not counted, though sent.
	wctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	seen := map[string]bool{}
	for all := false; !all && len(seen) < backlog; {
		n, err := listen.WaitForNotification(wctx)
		if err != nil {
			t.Fatalf("%d of %d evictions arrived: %v; relay stats %+v", len(seen), backlog, err, st)
		}
		inv, err := listener.ParsePayload(n.Payload)
		if err != nil {
			t.Fatalf("payload %q: %v", n.Payload, err)
		}
		all = inv.All // everything evicted: every row's eviction is in it
		for _, u := range inv.Users {
			if strings.HasPrefix(u, "backlog-") {
				seen[u] = true
			}
		}
	}
	t.Logf("drained %d rows after %d rounds cut by their deadline; stats %+v", backlog, st.Errors, st)
}
