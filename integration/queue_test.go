package integration_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/orgperm/orgperm/pkg/listener"
	"github.com/orgperm/orgperm/pkg/membership"
	"github.com/orgperm/orgperm/pkg/pgtest"
	"github.com/orgperm/orgperm/pkg/relay"
)

// forTransports runs f as a parallel subtest per transport: notify (the
// default) and queue (orgperm.set_transport('queue'), a relay on the
// instances that queueConfig configures).
func forTransports(t *testing.T, f func(t *testing.T, queue bool)) {
	t.Helper()
	for _, queue := range []bool{false, true} {
		name := "notify"
		if queue {
			name = "queue"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f(t, queue)
		})
	}
}

// setQueue puts w's database in queue mode, and relays the switch's own
// "ddl" payload at once, so that instances started next do not see it (its
// resync would look like a fault's to a test waiting for listener states).
func setQueue(t *testing.T, w *world) {
	t.Helper()
	var mode string
	if err := w.raw.QueryRow(context.Background(), `SELECT orgperm.set_transport('queue')`).Scan(&mode); err != nil || mode != "queue" {
		t.Fatalf("set_transport('queue') = %q, %v", mode, err)
	}
	if _, err := w.raw.Exec(context.Background(), `SELECT orgperm.relay()`); err != nil {
		t.Fatal(err)
	}
}

// relayConnect returns a RelayConnect that dials w's database after g
// opens, under the relay's application_name.
func relayConnect(t *testing.T, w *world, g *gate) func(context.Context) (*pgx.Conn, error) {
	t.Helper()
	connect := connectVia(t, w.url, "", g)
	return func(ctx context.Context) (*pgx.Conn, error) {
		c, err := connect(ctx)
		if err != nil {
			return nil, err
		}
		// connectVia names the connection as a listener's; rename it.
		if _, err := c.Exec(ctx, `SET application_name = '`+relay.ApplicationName+`'`); err != nil {
			c.Close(context.Background())
			return nil, err
		}
		return c, nil
	}
}

// terminateRelays terminates every relay backend of w's database and
// returns how many there were.
func terminateRelays(t *testing.T, w *world) int {
	t.Helper()
	var n int
	if err := w.raw.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = $1 AND datname = current_database()`, relay.ApplicationName).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestQueueRelayDies: in queue mode, while no relay runs (its backend
// terminated, its reconnects held), proofs of delivery stop coming back:
// the cache bypasses itself (ErrBypassed for a cache-only read), every read
// sees the database, and once a relay leads again the instance proves
// delivery and reads are fresh.
func TestQueueRelayDies(t *testing.T) {
	skipShort(t)
	t.Parallel()
	w := newWorld(t, pgtest.Shared(t))
	setQueue(t, w)
	g := &gate{}
	in := newInstance(t, w.pool, membership.Config{Relay: true, RelayConnect: relayConnect(t, w, g)})
	warm(t, w, in)
	if st := in.c.Stats().Relay; !st.Leading {
		t.Fatalf("relay stats %+v: not leading", st)
	}

	l := startLoad(t, w, in)
	g.block()
	if n := terminateRelays(t, w); n != 1 {
		t.Fatalf("terminated %d relay backends, want 1", n)
	}
	in.waitState(listener.Unsynced)
	l.stop()
	checkBypass(t, w, in)
	if err := in.c.Check(context.Background()); !errors.Is(err, membership.ErrBypassed) {
		t.Errorf("Check with no relay: %v, want ErrBypassed", err)
	}

	g.open()
	resynced(t, w, in)
}

// TestQueueLeaderFailover: two instances each run a relay; one leads. Its
// instance closes (the relay's connection and lock go with it): the other
// relay takes the lead and the surviving instance stays correct.
func TestQueueLeaderFailover(t *testing.T) {
	skipShort(t)
	t.Parallel()
	w := newWorld(t, pgtest.Shared(t))
	setQueue(t, w)
	a := newInstance(t, w.pool, membership.Config{Relay: true})
	b := newInstance(t, w.pool, membership.Config{Relay: true})
	leader, other := a, b
	if !a.c.Stats().Relay.Leading {
		leader, other = b, a
	}
	if !leader.c.Stats().Relay.Leading || other.c.Stats().Relay.Leading {
		t.Fatalf("leading: %v and %v, want exactly one", a.c.Stats().Relay.Leading, b.c.Stats().Relay.Leading)
	}
	warm(t, w, other)
	if err := leader.c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	l := startLoad(t, w, other)
	syncAll(t, w.raw, other) // relayed: another relay leads
	l.stop()
	syncAll(t, w.raw, other)
	checkAll(t, w, other, "after failover")
	if !other.c.Stats().Relay.Leading {
		t.Errorf("the surviving relay does not lead")
	}
}

// faultConfig is the instance configuration of the fault tests: the
// listener's connection through g, and in queue mode w's database switched
// to queue mode and a relay on the instance.
func faultConfig(t *testing.T, w *world, g *gate, queue bool) membership.Config {
	t.Helper()
	cfg := membership.Config{ListenerConnect: connectVia(t, w.url, "", g)}
	if queue {
		setQueue(t, w)
		cfg.Relay = true
		cfg.RelayConnect = relayConnect(t, w, &gate{})
	}
	return cfg
}

// setTransport switches w's database to mode.
func setTransport(t *testing.T, w *world, mode string) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		var got string
		err := w.raw.QueryRow(context.Background(), `SELECT orgperm.set_transport($1)`, mode).Scan(&got)
		// Under a write load the switch, which locks the six tables, can
		// be a deadlock's victim: it rolled back whole, so try again.
		if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) && pe.Code == "40P01" && attempt < 5 {
			continue
		}
		if err != nil || got != mode {
			t.Fatalf("set_transport(%q) = %q, %v", mode, got, err)
		}
		return
	}
}

// TestQueueSwitchWhileRunning: an instance (running a relay) in service
// sees the database switched to queue mode and back while raw writers go
// on: each switch makes it purge, verify and prove again on the new path
// (the switch's "ddl" payload), and after each no read is stale.
func TestQueueSwitchWhileRunning(t *testing.T) {
	skipShort(t)
	t.Parallel()
	w := newWorld(t, pgtest.Shared(t))
	in := newInstance(t, w.pool, membership.Config{Relay: true})
	warm(t, w, in)
	for _, mode := range []string{"queue", "notify", "queue"} {
		l := startLoad(t, w, in)
		setTransport(t, w, mode)
		in.waitState(listener.Unsynced) // the switch's "ddl" payload
		l.stop()
		resynced(t, w, in)
		var got string
		if err := w.raw.QueryRow(context.Background(), `SELECT orgperm.transport()`).Scan(&got); err != nil || got != mode {
			t.Fatalf("transport() = %q, %v; want %q", got, err, mode)
		}
	}
}

// TestQueueWithoutRelay: switched to queue mode while no instance runs a
// relay, an instance in service stops trusting its cache and cannot prove
// delivery again: every read goes to the database, and Check says why.
func TestQueueWithoutRelay(t *testing.T) {
	skipShort(t)
	t.Parallel()
	w := newWorld(t, pgtest.Shared(t))
	in := newInstance(t, w.pool, membership.Config{})
	warm(t, w, in)
	setTransport(t, w, "queue")
	in.waitState(listener.Unsynced)
	checkBypass(t, w, in)
	if err := in.c.Check(context.Background()); !errors.Is(err, membership.ErrBypassed) {
		t.Errorf("Check in queue mode with no relay: %v, want ErrBypassed", err)
	}
}

// TestRelayUsesListenerConnect: an app whose pool goes through a
// transaction pooler gives the listener a direct connection
// (ListenerConnect); the relay, which holds a session-level lock, must use
// it too when RelayConnect is not set, not the pool's configuration.
func TestRelayUsesListenerConnect(t *testing.T) {
	skipShort(t)
	t.Parallel()
	w := newWorld(t, pgtest.Shared(t))
	setQueue(t, w)
	cfg, err := pgx.ParseConfig(w.url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["application_name"] = "app_listener_connect"
	in := newInstance(t, w.pool, membership.Config{
		Relay:           true,
		ListenerConnect: func(ctx context.Context) (*pgx.Conn, error) { return pgx.ConnectConfig(ctx, cfg) },
	})
	warm(t, w, in) // in service: the relay relays the proofs
	leader, ok, err := relay.FindLeader(context.Background(), w.pool)
	if err != nil || !ok {
		t.Fatalf("the relay's session: %v, %v", ok, err)
	}
	app := leader.ApplicationName
	if app != "app_listener_connect" {
		t.Fatalf("the relay's session is %q, want the ListenerConnect connection", app)
	}
}
