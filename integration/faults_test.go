package integration_test

import (
	"context"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orgperm/orgperm/internal/faultproxy"
	"github.com/orgperm/orgperm/internal/pgcluster"
	"github.com/orgperm/orgperm/pkg/listener"
	"github.com/orgperm/orgperm/pkg/membership"
	"github.com/orgperm/orgperm/pkg/pgtest"
)

// gate holds the listener's reconnects while a test looks at the unsynced
// cache; it is open by default.
type gate struct {
	mu sync.Mutex
	ch chan struct{}
}

func (g *gate) block() { g.mu.Lock(); g.ch = make(chan struct{}); g.mu.Unlock() }

func (g *gate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ch != nil {
		close(g.ch)
		g.ch = nil
	}
}

func (g *gate) wait(ctx context.Context) error {
	g.mu.Lock()
	ch := g.ch
	g.mu.Unlock()
	if ch == nil {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// connectVia returns a ListenerConnect that dials addr (host:port), after
// the gate opens.
func connectVia(t *testing.T, url, addr string, g *gate) func(context.Context) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	return func(ctx context.Context) (*pgx.Conn, error) {
		if err := g.wait(ctx); err != nil {
			return nil, err
		}
		cc := cfg.Copy()
		if addr != "" {
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			p, err := strconv.ParseUint(port, 10, 16)
			if err != nil {
				return nil, err
			}
			cc.Host, cc.Port = host, uint16(p)
		}
		cc.RuntimeParams["application_name"] = listener.ApplicationName
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		return pgx.ConnectConfig(ctx, cc)
	}
}

var faultKeys = []membership.Key{{Org: "o1", User: "u1"}, {Org: "o1", User: "u2"}, {Org: "o2", User: "u1"}, {Org: "o2", User: "u2"}}

// load runs raw SQL writers and cached readers until stop is called; it
// returns the number of writes and reads. Reads may fail while the server
// is down (fail closed); they are never checked here, only after a sync.
type load struct {
	stop   func()
	writes int
	reads  int
}

func startLoad(t *testing.T, w *world, in *instance) *load {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{}
	var wg sync.WaitGroup
	var mu sync.Mutex
	wg.Add(2)
	go func() { // writer: toggles statuses and role assignments with raw SQL
		defer wg.Done()
		r := rand.New(rand.NewPCG(1, 2))
		// A write is never cancelled halfway: one whose connection is cut by
		// the cancellation may still commit after stop returned, after the
		// test's last sentinel (in queue mode its notification then comes a
		// relay round later, and the test would see it as stale).
		wctx := context.WithoutCancel(ctx)
		for ctx.Err() == nil {
			k := faultKeys[r.IntN(len(faultKeys))]
			var err error
			if r.IntN(2) == 0 {
				_, err = w.raw.Exec(wctx, `INSERT INTO orgperm.memberships AS m (org_id, user_id) VALUES ($1, $2)
					ON CONFLICT (org_id, user_id) DO UPDATE SET status = CASE m.status WHEN 'active' THEN 'suspended' ELSE 'active' END`, k.Org, k.User)
			} else {
				_, err = w.raw.Exec(wctx, `UPDATE orgperm.membership_roles SET valid_until = CASE WHEN valid_until IS NULL THEN now() - interval '1 hour' END
					WHERE org_id = $1 AND user_id = $2`, k.Org, k.User)
			}
			if err == nil {
				mu.Lock()
				l.writes++
				mu.Unlock()
			}
		}
	}()
	go func() { // reader
		defer wg.Done()
		r := rand.New(rand.NewPCG(3, 4))
		for ctx.Err() == nil {
			k := faultKeys[r.IntN(len(faultKeys))]
			_, _ = in.c.Permissions(ctx, k.Org, k.User)
			mu.Lock()
			l.reads++
			mu.Unlock()
		}
	}()
	l.stop = func() { cancel(); wg.Wait() }
	return l
}

// checkAll reads every key twice through the instance (a miss, then a hit)
// and fails on any difference from the database.
func checkAll(t *testing.T, w *world, in *instance, when string) {
	t.Helper()
	for _, k := range faultKeys {
		want := w.truth(t, k.Org, k.User)
		for range 2 {
			s, err := in.c.Permissions(context.Background(), k.Org, k.User)
			if err != nil {
				t.Fatalf("%s: %v", when, err)
			}
			if got := fingerprint(s); got != want {
				t.Errorf("%s: stale read of %v:\n got %s\nwant %s", when, k, got, want)
			}
		}
	}
}

// checkBypass writes with raw SQL while the listener is down (so the
// notification is lost) and shows that reads still see it, from the
// database, and are counted as bypassed.
func checkBypass(t *testing.T, w *world, in *instance) {
	t.Helper()
	bypassed := in.c.Stats().Cache.Bypassed
	if _, err := w.raw.Exec(context.Background(), `UPDATE orgperm.memberships SET status = CASE status WHEN 'active' THEN 'suspended' ELSE 'active' END
		WHERE org_id = 'o1' AND user_id = 'u2'`); err != nil {
		t.Fatal(err)
	}
	checkAll(t, w, in, "while unsynced")
	if got := in.c.Stats().Cache.Bypassed; got < bypassed+uint64(2*len(faultKeys)) {
		t.Errorf("bypassed reads went from %d to %d, want every read while unsynced to bypass", bypassed, got)
	}
}

// resynced waits for the listener to resync, runs the load a little longer
// so that some writes land after the resync, and then shows that no read is
// stale once the instance has caught up with every write.
func resynced(t *testing.T, w *world, in *instance) {
	t.Helper()
	in.waitState(listener.Synced)
	l := startLoad(t, w, in)
	syncAll(t, w.raw, in)
	l.stop()
	syncAll(t, w.raw, in)
	checkAll(t, w, in, "after resync")
}

func warm(t *testing.T, w *world, in *instance) {
	t.Helper()
	checkAll(t, w, in, "warming")
}

// TestFaultTerminatedBackend: the listener's backend is terminated during a
// write loop. Reads bypass the cache while it is unsynced, and after resync
// there are no stale reads.
func TestFaultTerminatedBackend(t *testing.T) {
	skipShort(t)
	t.Parallel()
	forTransports(t, testFaultTerminatedBackend)
}

func testFaultTerminatedBackend(t *testing.T, queue bool) {
	w := newWorld(t, pgtest.Shared(t))
	g := &gate{}
	in := newInstance(t, w.pool, faultConfig(t, w, g, queue))
	warm(t, w, in)

	l := startLoad(t, w, in)
	g.block()
	var n int
	if err := w.raw.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = $1 AND datname = current_database()`, listener.ApplicationName).Scan(&n); err != nil || n != 1 {
		t.Fatalf("terminated %d listener backends, %v; want 1", n, err)
	}
	in.waitState(listener.Unsynced)
	l.stop()
	checkBypass(t, w, in)

	g.open()
	resynced(t, w, in)
	if st := in.c.Stats().Listener; st.Reconnects < 1 {
		t.Errorf("reconnects = %d, want >= 1", st.Reconnects)
	}
}

// TestFaultServerRestart: the server restarts under the client.
func TestFaultServerRestart(t *testing.T) {
	skipShort(t)
	t.Parallel()
	forTransports(t, testFaultServerRestart)
}

func testFaultServerRestart(t *testing.T, queue bool) {
	cluster := pgcluster.StartTB(t)
	w := newWorld(t, pgtest.NewServer(cluster.URL))
	g := &gate{}
	in := newInstance(t, w.pool, faultConfig(t, w, g, queue))
	warm(t, w, in)

	l := startLoad(t, w, in)
	g.block()
	if err := cluster.Restart(); err != nil {
		t.Fatal(err)
	}
	in.waitState(listener.Unsynced)
	l.stop()
	// Connections in the pools died with the server.
	w.pool.Reset()
	w.raw.Reset()
	checkBypass(t, w, in)

	g.open()
	resynced(t, w, in)
}

// TestFaultSilentConnection: the listener's connection goes silent through
// a TCP proxy (no FIN, no RST). The next proof of delivery, asked for by
// the reads, does not come back: the cache is marked unsynced, and after the
// network returns it resyncs with no stale reads.
func TestFaultSilentConnection(t *testing.T) {
	skipShort(t)
	t.Parallel()
	server := pgtest.Shared(t)
	w := newWorld(t, server)
	proxy := faultproxy.New(t, hostPort(t, server.URL))
	in := newInstance(t, w.pool, membership.Config{
		ListenerConnect: connectVia(t, w.url, proxy.Addr(), &gate{}),
		Lease:           200 * time.Millisecond,
		ProofTimeout:    300 * time.Millisecond,
	})
	warm(t, w, in)

	l := startLoad(t, w, in)
	proxy.Blackhole()
	in.waitState(listener.Unsynced)
	l.stop()
	if st := in.c.Stats().Listener; st.ProofFailures < 1 {
		t.Fatalf("unsynced without a proof failure: %+v", st)
	}
	checkBypass(t, w, in)

	proxy.Restore()
	resynced(t, w, in)
}

// TestGarbagePayload: a malformed NOTIFY purges the cache, is counted, and
// the listener goes on working.
func TestGarbagePayload(t *testing.T) {
	t.Parallel()
	w := newWorld(t, pgtest.Shared(t))
	in := newInstance(t, w.pool, membership.Config{})
	warm(t, w, in)
	if n := in.c.Stats().Cache.Entries; n != len(faultKeys) {
		t.Fatalf("%d entries cached, want %d", n, len(faultKeys))
	}
	for _, p := range []string{"garbage", `{"v":2,"all":true}`, `{"v":1,"members":[["o1"]]}`, "\x00\xff"} {
		if _, err := w.raw.Exec(context.Background(), "SELECT pg_notify('orgperm_invalidate', $1)", p); err != nil {
			if p == "\x00\xff" {
				continue // PostgreSQL itself refuses invalid text
			}
			t.Fatal(err)
		}
	}
	syncAll(t, w.raw, in)
	st := in.c.Stats()
	if st.Listener.Malformed != 3 {
		t.Errorf("malformed = %d, want 3", st.Listener.Malformed)
	}
	if st.Cache.Entries != 0 {
		t.Errorf("%d entries left after malformed payloads, want a purge", st.Cache.Entries)
	}
	checkAll(t, w, in, "after garbage")
}
