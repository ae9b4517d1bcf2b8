package listener

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/orgperm/orgperm/pkg/pgtest"
)

// TestIdleSessionTimeout: a database whose idle_session_timeout (14+)
// would end every session idle for 500 ms does not end the listening
// one, which waits for notifications and runs no query: the listener
// turns the timeout off for its own session. Without that, each timeout
// would replace the connection and purge the cache.
func TestIdleSessionTimeout(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	ctx := context.Background()
	var supported bool
	if err := pool.QueryRow(ctx, `SELECT count(*) > 0 FROM pg_settings WHERE name = 'idle_session_timeout'`).Scan(&supported); err != nil {
		t.Fatal(err)
	}
	if !supported {
		t.Skip("this server has no idle_session_timeout (PostgreSQL 13)")
	}
	exec(t, pool, `DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET idle_session_timeout = 500', current_database()); END $$`)
	// A pool whose sessions take the setting: proofs go through it.
	timed, err := pgxpool.New(ctx, pool.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(timed.Close)
	l, rt, _ := setup(t, timed, Config{})
	start(t, l, rt)
	// Wait until the listening session has been idle for three timeouts.
	deadline := time.Now().Add(waitTimeout)
	for {
		var idle bool
		if err := pool.QueryRow(ctx, `
			SELECT coalesce(bool_or(state = 'idle' AND now() - state_change > interval '1500 ms'), false)
			FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()`, ApplicationName).Scan(&idle); err != nil {
			t.Fatal(err)
		}
		if idle {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the listening session was never idle for 1.5 s: %d reconnects, %v", l.Stats().Reconnects, l.Err())
		}
		time.Sleep(50 * time.Millisecond) // polling pg_stat_activity
	}
	// A proof through the pool, whose idle sessions the server has ended
	// meanwhile.
	if err := l.Sync(ctx); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if st := l.Stats(); st.Reconnects != 0 || st.State != Synced || st.ProofFailures != 0 {
		t.Fatalf("%d reconnects, %d proof failures, %v (%v); want 0, 0, synced", st.Reconnects, st.ProofFailures, st.State, st.Reason)
	}
}
