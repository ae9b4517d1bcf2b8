package relay_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/orgperm/orgperm/pkg/pgtest"
	"github.com/orgperm/orgperm/pkg/relay"
)

func TestMain(m *testing.M) {
	ignore := goleak.IgnoreCurrent()
	os.Exit(pgtest.Run(m, pgtest.After(func() error { return goleak.Find(ignore) })))
}

// waitTimeout bounds every wait; reaching it is a failure.
const waitTimeout = 20 * time.Second

// setup returns a database in queue mode, its switch's payloads relayed,
// and a connection listening on the invalidation channel.
func setup(t *testing.T) (url string, listen *pgx.Conn) {
	t.Helper()
	ctx := context.Background()
	url = pgtest.NewDatabase(t)
	conn := connect(t, url)
	if _, err := conn.Exec(ctx, `SELECT orgperm.set_transport('queue')`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `SELECT orgperm.relay()`); err != nil {
		t.Fatal(err)
	}
	listen = connect(t, url)
	if _, err := listen.Exec(ctx, `LISTEN orgperm_invalidate`); err != nil {
		t.Fatal(err)
	}
	return url, listen
}

// connect returns a connection to url, closed when the test ends.
func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// leads returns a relay on url whose leadership changes arrive on the
// returned channel, started; it is stopped at cleanup.
func leads(t *testing.T, url string) (*relay.Relay, chan bool) {
	t.Helper()
	return startRelay(t, func(ctx context.Context) (*pgx.Conn, error) { return pgx.Connect(ctx, url) })
}

// startRelay is leads with connect as the relay's Connect; before, when
// given, sees the relay before it starts.
func startRelay(t *testing.T, connect func(context.Context) (*pgx.Conn, error), before ...func(*relay.Relay)) (*relay.Relay, chan bool) {
	t.Helper()
	ch := make(chan bool, 256)
	r, err := relay.New(relay.Config{
		Connect: connect,
		// Never blocks the relay: a test that does not read the changes
		// (or stops reading after a failure) must not hang its Stop.
		OnLead: func(l bool) {
			select {
			case ch <- l:
			default:
			}
		},
		// Short, so that the failover test does not wait a second.
		LeaderRetry: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range before {
		f(r)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return r, ch
}

func wait(t *testing.T, ch chan bool, want bool) {
	t.Helper()
	select {
	case got := <-ch:
		if got != want {
			t.Fatalf("leading = %v, want %v", got, want)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("no leadership change to %v within %v", want, waitTimeout)
	}
}

// evict queues an eviction of user u and waits until it arrives on listen.
func evict(t *testing.T, url string, listen *pgx.Conn, u string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `SELECT orgperm.evict_user($1)`, u); err != nil {
		t.Fatal(err)
	}
	evicted(t, listen, u)
}

// evicted waits until an eviction of user u arrives on listen.
func evicted(t *testing.T, listen *pgx.Conn, u string) {
	t.Helper()
	want := `{"v":1,"t":"evict","users":["` + u + `"]}`
	wctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for {
		n, err := listen.WaitForNotification(wctx)
		if err != nil {
			t.Fatalf("waiting for %s: %v", want, err)
		}
		if n.Payload == want {
			return
		}
	}
}

// TestOneLeaderRelays: of two relays one leads and relays the queue; when
// it stops, the other takes the lock and relays.
func TestOneLeaderRelays(t *testing.T) {
	t.Parallel()
	url, listen := setup(t)
	a, aCh := leads(t, url)
	wait(t, aCh, true)
	b, bCh := leads(t, url)
	evict(t, url, listen, "u1")
	// A round's rows are counted once orgperm.relay() has returned, after
	// its commit sent them, so u1 may arrive before a counted it; a second
	// eviction arriving means a's loop went past u1's round.
	evict(t, url, listen, "u1b")
	if !a.Stats().Leading || b.Stats().Leading {
		t.Fatalf("leading: a %v, b %v; want a only", a.Stats().Leading, b.Stats().Leading)
	}
	if err := a.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	wait(t, aCh, false)
	wait(t, bCh, true)
	evict(t, url, listen, "u2")
	evict(t, url, listen, "u3") // as u1b: b counted u2's round
	if err := b.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if sa, sb := a.Stats(), b.Stats(); sa.Relayed == 0 || sb.Relayed == 0 || sb.Rounds == 0 {
		t.Errorf("stats: a %+v, b %+v; want rows relayed by each", sa, sb)
	}
	for name, st := range map[string]relay.Stats{"a": a.Stats(), "b": b.Stats()} {
		if st.Running || st.Leading || st.Leaderships != 1 || st.LastRound.IsZero() || st.Errors != 0 {
			t.Errorf("stats of %s after Stop: %+v; want stopped, led once, a last round, no error", name, st)
		}
	}
}

// TestRelayTerminated: the leader's backend is terminated; it reconnects,
// takes the lock again and relays.
func TestRelayTerminated(t *testing.T) {
	t.Parallel()
	url, listen := setup(t)
	r, ch := leads(t, url)
	wait(t, ch, true)
	if st := r.Stats(); !st.Running || !st.Leading || st.Leaderships != 1 {
		t.Errorf("stats once leading: %+v; want running, leading, led once", st)
	}
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("terminated %d lock holders, %v; want 1", n, err)
	}
	wait(t, ch, false)
	wait(t, ch, true)
	evict(t, url, listen, "u1")
	if st := r.Stats(); st.Errors == 0 || st.Leaderships != 2 || !st.Running || !st.Leading {
		t.Errorf("stats %+v: want the lost connection counted, the lock taken twice, leading", st)
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	var ce *relay.ConfigError
	if _, err := relay.New(relay.Config{}); !errors.As(err, &ce) || ce.Field != "Connect" {
		t.Errorf("New without Connect: %v, want a ConfigError on Connect", err)
	}
	r, err := relay.New(relay.Config{Connect: func(context.Context) (*pgx.Conn, error) { return nil, errors.New("no") }})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Stop(context.Background()); err != nil {
		t.Errorf("Stop before Start: %v", err)
	}
	if err := r.Start(context.Background()); !errors.Is(err, relay.ErrStopped) {
		t.Errorf("Start after Stop: %v, want ErrStopped", err)
	}
}
