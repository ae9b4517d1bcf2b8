package membership

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orgperm/orgperm/internal/pgstandby"
	"github.com/orgperm/orgperm/pkg/pgtest"
)

func TestReplicaWaitConfig(t *testing.T) {
	t.Parallel()
	_, err := New(context.Background(), pgtest.NewPool(t), Config{ReplicaWait: -time.Millisecond})
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Field != "ReplicaWait" || !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("New with a negative ReplicaWait: %v; want a ConfigError on ReplicaWait", err)
	}
}

// applyDelay is the standby's recovery_min_apply_delay in these tests: a
// replica that lags at least this much behind every commit.
const applyDelay = 500 * time.Millisecond

// replicaSetup starts a standby of the shared server whose apply is delayed
// by applyDelay, and returns a pool on a fresh database of the primary and
// a pool on the same database on the standby, each counting its round trips.
func replicaSetup(t testing.TB, delay time.Duration) (primary, replica *pgxpool.Pool, pc, rc *countingTracer, url string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv := pgtest.Shared(t)
	url = srv.NewDatabase(t)
	sb := pgstandby.StartTB(t, pgstandby.Config{PrimaryURL: srv.URL, ApplyDelay: delay})
	newPool := func(url string, tr *countingTracer) *pgxpool.Pool {
		cfg, err := pgxpool.ParseConfig(url)
		if err != nil {
			t.Fatal(err)
		}
		cfg.ConnConfig.Tracer = tr
		p, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		return p
	}
	pc, rc = &countingTracer{}, &countingTracer{}
	primary = newPool(url, pc)
	surl, err := sb.ConnStringFor(url)
	if err != nil {
		t.Fatal(err)
	}
	return primary, newPool(surl, rc), pc, rc, url
}

// awaitReplica returns once replica can connect to its database and has
// replayed every write committed on primary before the call.
func awaitReplica(tb testing.TB, ctx context.Context, primary, replica *pgxpool.Pool) {
	tb.Helper()
	var lsn string
	if err := primary.QueryRow(ctx, `SELECT pg_current_wal_insert_lsn()::text`).Scan(&lsn); err != nil {
		tb.Fatal(err)
	}
	for {
		var ok bool
		err := replica.QueryRow(ctx, `SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn`, lsn).Scan(&ok)
		if err == nil && ok {
			return
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("the standby never replayed %s: %v", lsn, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestReplicaFills runs a Client with a replica whose apply lags by 500 ms
// and checks, after each write, that a check shows it: the fill waited for
// the replica (ReplicaWait 3 s), or read the primary (ReplicaWait 10 ms),
// and the counters say which.
func TestReplicaFills(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a standby (-short; make test runs it)")
	}
	primary, replica, _, _, _ := replicaSetup(t, applyDelay)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin := NewStore(primary) // evicts nothing itself: only notifications do
	if err := admin.AddMember(ctx, "o1", "u1", MemberOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"x.a", "x.b", "x.c", "x.d"} {
		if err := admin.EnsurePermission(ctx, p, ""); err != nil {
			t.Fatal(err)
		}
	}
	role, err := admin.CreateRole(ctx, "o1", "r", "x.a")
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.AssignRole(ctx, "o1", "u1", role, nil); err != nil {
		t.Fatal(err)
	}
	awaitReplica(t, ctx, primary, replica)

	newClient := func(wait time.Duration, replica *pgxpool.Pool) *Client {
		return newTestClient(t, primary, Config{Replica: replica, ReplicaWait: wait})
	}
	// expect checks that c shows codename after a write that began at
	// began and whose notification c has applied; lagged says whether the
	// replica must still have been behind that write when the check began.
	expect := func(t *testing.T, c *Client, codename string, began time.Time) (lagged bool) {
		t.Helper()
		asked := time.Now()
		ok, err := c.HasPermission(ctx, "o1", "u1", codename)
		if err != nil || !ok {
			t.Fatalf("after the write and its notification: HasPermission(%s) = %v, %v; want true (stats %+v)", codename, ok, err, c.Stats().Replica)
		}
		return asked.Sub(began) < applyDelay
	}

	t.Run("waits", func(t *testing.T) {
		c := newClient(3*time.Second, replica)
		if _, err := c.Permissions(ctx, "o1", "u1"); err != nil {
			t.Fatal(err)
		}
		// Another writer's write: this instance learns it by notification.
		began := time.Now()
		if err := admin.GrantPermissions(ctx, role, "x.b"); err != nil {
			t.Fatal(err)
		}
		if err := c.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		before := c.Stats().Replica
		lagged := expect(t, c, "x.b", began)
		st := c.Stats().Replica
		if st.Fills != before.Fills+1 || st.Fallbacks != 0 {
			t.Fatalf("replica stats %+v, before the check %+v: want one more replica fill, no fallback", st, before)
		}
		if lagged && st.Waits == before.Waits {
			t.Fatalf("the check began less than %v after the write but did not wait for the replica: %+v", applyDelay, st)
		}
		// This instance's own write, through its Store: read-your-writes.
		began = time.Now()
		if err := c.Store().GrantPermissions(ctx, role, "x.c"); err != nil {
			t.Fatal(err)
		}
		before = c.Stats().Replica
		lagged = expect(t, c, "x.c", began)
		st = c.Stats().Replica
		if st.Fills != before.Fills+1 || (lagged && st.Waits == before.Waits) {
			t.Fatalf("own write: replica stats %+v, before %+v (lagged %v)", st, before, lagged)
		}
		// Once the own write's notification is in too, a fill reads the
		// position once; a fill after it, with no eviction in between,
		// asks the primary nothing.
		if err := c.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := c.UserHasActiveMembership(ctx, "u1"); err != nil {
			t.Fatal(err)
		}
		reads := c.Stats().Replica.PositionReads
		if _, err := c.Permissions(ctx, "o2", "u1"); err != nil {
			t.Fatal(err)
		}
		if st = c.Stats().Replica; st.PositionReads != reads || st.Fills != before.Fills+3 {
			t.Fatalf("a fill with no eviction since the last position read asked the primary again: %+v", st)
		}
		t.Logf("waited for the replica: %+v", st)
	})

	t.Run("falls back", func(t *testing.T) {
		c := newClient(10*time.Millisecond, replica)
		began := time.Now()
		if err := admin.GrantPermissions(ctx, role, "x.d"); err != nil {
			t.Fatal(err)
		}
		if err := c.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		before := c.Stats().Replica
		lagged := expect(t, c, "x.d", began)
		st := c.Stats().Replica
		if lagged && (st.Lagging != before.Lagging+1 || st.Fallbacks != before.Fallbacks+1) {
			t.Fatalf("a replica behind by more than ReplicaWait: stats %+v, before %+v; want one more Lagging fallback", st, before)
		}
		t.Logf("fell back to the primary: %+v", st)
	})

	t.Run("not a standby", func(t *testing.T) {
		c := newClient(time.Second, primary)
		if _, err := c.Permissions(ctx, "o1", "u1"); err != nil {
			t.Fatal(err)
		}
		if st := c.Stats().Replica; st.Fills != 0 || st.Errors != 1 {
			t.Fatalf("a Replica that is not in recovery: %+v; want no replica fill, one error", st)
		}
	})
}
