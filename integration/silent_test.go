package integration_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orgperm/orgperm/internal/faultproxy"
	"github.com/orgperm/orgperm/internal/hooks"
	"github.com/orgperm/orgperm/internal/pgbouncer"
	"github.com/orgperm/orgperm/pkg/listener"
	"github.com/orgperm/orgperm/pkg/membership"
	"github.com/orgperm/orgperm/pkg/pgtest"
)

// The tests in this file judge every read against the writer's own commit
// timeline, never against what the listener says: a lost notification
// shows up as a stale read.

// version is one committed value of the key the timeline writer bumps:
// (o1, u2)'s membership window ends at versionBase + n seconds, so that a
// permission set shows which write it reflects. begin is just before
// COMMIT was sent, end just after it returned (local monotonic clock).
type version struct {
	n          int
	begin, end time.Time
}

var versionBase = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)

// versionOf is the version a permission set of (o1, u2) shows.
func versionOf(s *membership.PermissionSet) int {
	_, until := s.Window()
	return int(until.Sub(versionBase) / time.Second)
}

// timeline is the writer's record of its commits, in commit order.
type timeline struct {
	mu sync.Mutex
	vs []version
}

func (tl *timeline) add(v version) {
	tl.mu.Lock()
	tl.vs = append(tl.vs, v)
	tl.mu.Unlock()
}

// staleness judges a read that started at rs, returned at re and showed
// version n: 0 if n may have been current during [rs, re], else how long
// before rs it stopped being current (the commit of its successor
// returned): a lower bound of the true staleness, so no false alarms.
func (tl *timeline) staleness(n int, rs, re time.Time) time.Duration {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	for i, v := range tl.vs {
		if v.n != n {
			continue
		}
		if v.begin.After(re) {
			return time.Hour // committed after the read returned: impossible
		}
		if i+1 == len(tl.vs) || !tl.vs[i+1].end.Before(rs) {
			return 0 // current (or possibly current) during the read
		}
		return rs.Sub(tl.vs[i+1].end)
	}
	return time.Hour // a value never written: as stale as it gets
}

// readStats is what the readers saw.
type readStats struct {
	mu              sync.Mutex
	reads, failed   int
	stale           int           // reads stale by more than the bound
	maxStale        time.Duration // the worst staleness seen
	staleByInstance map[int]int
}

// timelineLoad bumps (o1, u2)'s version with raw SQL on its own
// connection every few milliseconds and records each commit, while readers
// check the key on every instance and judge each read against the
// timeline with the given bound. stop ends both and returns the stats.
func timelineLoad(t *testing.T, w *world, bound time.Duration, ins ...*membership.Client) (stop func() *readStats) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	tl := &timeline{}
	st := &readStats{staleByInstance: map[int]int{}}
	conn := rawConn(t, w.url)
	if _, err := conn.Exec(ctx, `UPDATE orgperm.memberships SET valid_until = $1 WHERE org_id = 'o1' AND user_id = 'u2'`, versionBase); err != nil {
		t.Fatal(err)
	}
	tl.add(version{n: 0}) // the initial value, since before the readers
	n := 0
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			tx, err := conn.Begin(ctx)
			if err != nil {
				return
			}
			next := n + 1
			if _, err := tx.Exec(ctx, `UPDATE orgperm.memberships SET valid_until = $1 WHERE org_id = 'o1' AND user_id = 'u2'`,
				versionBase.Add(time.Duration(next)*time.Second)); err != nil {
				_ = tx.Rollback(context.WithoutCancel(ctx))
				return
			}
			// Recorded before COMMIT is sent (a reader may see it as soon
			// as the server commits), its end set once COMMIT returns.
			tl.add(version{n: next, begin: time.Now(), end: time.Now().Add(time.Hour)})
			if err := tx.Commit(ctx); err != nil {
				return // in doubt: left as possibly current
			}
			tl.mu.Lock()
			tl.vs[len(tl.vs)-1].end = time.Now()
			tl.mu.Unlock()
			n = next
			select {
			case <-ctx.Done():
			case <-time.After(3 * time.Millisecond): // the write rate
			}
		}
	}()
	for i, c := range ins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				rctx, rcancel := context.WithTimeout(ctx, 3*time.Second)
				rs := time.Now()
				set, err := c.Permissions(rctx, "o1", "u2")
				re := time.Now()
				rcancel()
				st.mu.Lock()
				st.reads++
				if err != nil {
					st.failed++ // failed closed: never stale
					st.mu.Unlock()
					continue
				}
				st.mu.Unlock()
				s := tl.staleness(versionOf(set), rs, re)
				st.mu.Lock()
				st.maxStale = max(st.maxStale, s)
				if s > bound {
					st.stale++
					st.staleByInstance[i]++
				}
				st.mu.Unlock()
			}
		}()
	}
	return func() *readStats {
		cancel()
		wg.Wait()
		return st
	}
}

// longDuration is d, or long with ORGPERM_LONG=1 (the acceptance runs).
func longDuration(d, long time.Duration) time.Duration {
	if os.Getenv("ORGPERM_LONG") != "" {
		return long
	}
	if testing.Short() {
		return d / 4
	}
	return d
}

// TestTimelineDetectorSeesLostNotifications proves the detector can fail:
// an instance that drops every invalidation (a test hook; proofs still
// flow, so its cache is trusted) serves stale reads, and the detector
// counts them.
func TestTimelineDetectorSeesLostNotifications(t *testing.T) {
	skipShort(t)
	t.Parallel()
	w := newWorld(t, pgtest.Shared(t))
	in := newInstance(t, w.pool, membership.Config{}, hooks.Client{DropInvalidations: true})
	stop := timelineLoad(t, w, membership.DefaultLease+50*time.Millisecond, in.c)
	time.Sleep(2 * time.Second) // the load runs for this long
	st := stop()
	if st.stale == 0 {
		t.Fatalf("an instance that drops every notification: %d reads, none stale beyond the lease: the detector sees nothing; %+v", st.reads, in.c.Stats())
	}
	t.Logf("notifications dropped: %d of %d reads stale (max %v): the detector sees lost notifications", st.stale, st.reads, st.maxStale)
}

// TestPgBouncerTransactionMode: the instances' whole DATABASE_URL (pool and
// listener) goes through PgBouncer in transaction mode, which accepts
// LISTEN and delivers nothing. No proof ever comes back, so the cache is
// never trusted: 0 stale reads under a write load, and Check says why.
func TestPgBouncerTransactionMode(t *testing.T) {
	skipShort(t)
	t.Parallel()
	w := newWorld(t, pgtest.Shared(t))
	url := bouncerURL(t, w, "transaction") + "&default_query_exec_mode=exec"
	pool := newPool(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	var ins []*membership.Client
	for range 2 {
		c, err := membership.New(ctx, pool, membership.Config{ProofTimeout: 500 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close(context.Background()) })
		ins = append(ins, c)
	}
	stop := timelineLoad(t, w, 0, ins...)
	time.Sleep(longDuration(4*time.Second, 60*time.Second)) // the load runs for this long
	st := stop()
	if st.stale != 0 || st.reads < 20 {
		t.Fatalf("through a transaction pooler: %d of %d reads stale (max %v); want 0 of at least 20", st.stale, st.reads, st.maxStale)
	}
	for _, c := range ins {
		err := c.Check(context.Background())
		if !errors.Is(err, membership.ErrBypassed) || !errors.Is(err, listener.ErrNoProof) {
			t.Fatalf("Check through a transaction pooler = %v; want ErrBypassed and ErrNoProof", err)
		}
		// The pooler is recognized before a LISTEN goes through it (a
		// LISTEN left on a pooled server connection crashes some PgBouncer
		// versions when a notification reaches it). A probe that finds no
		// proof lets the connection LISTEN, and its proof fails (ErrNoProof
		// alone) until the next attempt, so Check is watched until an
		// attempt is refused.
		deadline := time.Now().Add(waitTimeout)
		for !errors.Is(err, listener.ErrTransactionPooler) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
			err = c.Check(context.Background())
		}
		if !errors.Is(err, listener.ErrTransactionPooler) || c.Stats().Listener.PoolerRefusals == 0 {
			t.Fatalf("Check through a transaction pooler = %v, %d refusals; want ErrTransactionPooler", err, c.Stats().Listener.PoolerRefusals)
		}
		if c.Stats().Cache.Hits != 0 {
			t.Fatalf("%d cache hits through a transaction pooler", c.Stats().Cache.Hits)
		}
	}
	t.Logf("PgBouncer transaction mode: %d reads, %d failed closed, 0 stale; Check: %v", st.reads, st.failed, ins[0].Check(context.Background()))
}

// bouncerURL starts a PgBouncer in pool mode mode in front of w's database,
// stopped at cleanup, and returns its connection string; it skips the test
// where PgBouncer is not installed.
func bouncerURL(t *testing.T, w *world, mode string) string {
	t.Helper()
	if _, err := pgbouncer.Find(); err != nil {
		t.Skip(err) // CI installs it
	}
	cfg, err := pgx.ParseConfig(w.url)
	if err != nil {
		t.Fatal(err)
	}
	b, err := pgbouncer.Start(context.Background(), pgbouncer.Config{ServerHost: cfg.Host, ServerPort: int(cfg.Port), Users: []string{cfg.User}, PoolMode: mode})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b.ConnString(cfg.User, cfg.Database)
}

// TestPgBouncerSessionMode: behind PgBouncer in session mode (a pooler
// that makes up its own backend process IDs, as in transaction mode) the
// listener is not refused: it syncs, the cache answers, and no read is
// stale beyond the bound the soak holds a healthy path to (the lease plus
// 50 ms) under a write load.
func TestPgBouncerSessionMode(t *testing.T) {
	skipShort(t)
	t.Parallel()
	w := newWorld(t, pgtest.Shared(t))
	url := bouncerURL(t, w, "session")
	in := newInstance(t, newPool(t, url), membership.Config{})
	in.waitState(listener.Synced)
	bound := membership.DefaultLease + 50*time.Millisecond
	stop := timelineLoad(t, w, bound, in.c)
	time.Sleep(longDuration(2*time.Second, 20*time.Second)) // the load runs for this long
	st := stop()
	if st.stale != 0 {
		t.Fatalf("through a session pooler: %d of %d reads stale by more than %v (max %v)", st.stale, st.reads, bound, st.maxStale)
	}
	stats := in.c.Stats()
	if stats.Listener.PoolerRefusals != 0 || stats.Cache.Hits == 0 {
		t.Fatalf("through a session pooler: %d refusals, %d hits; want 0 refusals and hits (%v)", stats.Listener.PoolerRefusals, stats.Cache.Hits, in.c.Check(context.Background()))
	}
	t.Logf("PgBouncer session mode: %d reads, %d hits, max staleness %v (bound %v)", st.reads, stats.Cache.Hits, st.maxStale, bound)
}

// TestBlackholeBoundedStaleness: the listener's connection, then the pool's
// and the listener's together, go silent through a TCP proxy (no FIN, no
// RST) under a write load, with the default settings: no read is stale by
// more than the lease plus 50 ms.
func TestBlackholeBoundedStaleness(t *testing.T) {
	skipShort(t)
	t.Parallel()
	bound := membership.DefaultLease + 50*time.Millisecond
	for _, both := range []bool{false, true} {
		t.Run(fmt.Sprintf("pool_too=%v", both), func(t *testing.T) {
			t.Parallel()
			server := pgtest.Shared(t)
			w := newWorld(t, server)
			proxy := faultproxy.New(t, hostPort(t, server.URL))
			pool := w.pool
			if both {
				pcfg, err := pgxpool.ParseConfig(w.url)
				if err != nil {
					t.Fatal(err)
				}
				host, port, _ := net.SplitHostPort(proxy.Addr())
				p, _ := strconv.Atoi(port)
				pcfg.ConnConfig.Host, pcfg.ConnConfig.Port, pcfg.ConnConfig.Fallbacks = host, uint16(p), nil
				pool, err = pgxpool.NewWithConfig(context.Background(), pcfg)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(pool.Close)
			}
			in := newInstance(t, pool, membership.Config{ListenerConnect: connectVia(t, w.url, proxy.Addr(), &gate{})})
			stop := timelineLoad(t, w, bound, in.c)
			time.Sleep(300 * time.Millisecond) // load before the fault
			proxy.Blackhole()
			time.Sleep(longDuration(4*time.Second, 10*time.Second)) // the fault lasts this long
			proxy.Restore()
			in.waitState(listener.Synced)
			time.Sleep(300 * time.Millisecond) // load after the fault
			st := stop()
			if st.stale != 0 {
				t.Fatalf("%d of %d reads stale by more than %v (max %v)", st.stale, st.reads, bound, st.maxStale)
			}
			t.Logf("black hole (pool too: %v): %d reads, %d failed closed, max staleness %v (bound %v), proof failures %d",
				both, st.reads, st.failed, st.maxStale, bound, in.c.Stats().Listener.ProofFailures)
		})
	}
}

// TestNotifyStorm: with 10,000 entries cached on each of two instances, a
// role with no orgperm privilege NOTIFYs 100 spoofed payloads of about
// 8 KB, each naming hundreds of orgs, while a real revoke commits: the
// revoke is applied on every instance, and the delay from its commit to its
// eviction on the last instance is reported (docs/BENCHMARKS.md keeps the
// figure).
func TestNotifyStorm(t *testing.T) {
	skipShort(t)
	t.Parallel()
	d := stormDelay(t)
	t.Logf("revoke during a storm of 100 spoofed 8 KB payloads: applied on every instance %v after its commit", d)
}

func stormDelay(t *testing.T) time.Duration {
	w := hotWorld(t, 10_000)
	ctx := context.Background()
	if _, err := w.raw.Exec(ctx, `DO $$ BEGIN
		IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'orgperm_storm') THEN CREATE ROLE orgperm_storm LOGIN; END IF; END $$`); err != nil {
		t.Fatal(err)
	}
	cfg, err := pgx.ParseConfig(w.url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.User = "orgperm_storm"
	storm, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer storm.Close(ctx)
	if _, err := storm.Exec(ctx, `SELECT count(*) FROM orgperm.memberships`); err == nil {
		t.Fatal("the storm role can read orgperm's tables; it must have no privilege")
	}

	applied := make([]chan time.Time, 2)
	var ins []*instance
	for i := range applied {
		ch := make(chan time.Time, 1)
		applied[i] = ch
		ins = append(ins, newInstance(t, newPool(t, w.url), membership.Config{
			Capacity: 20_000,
			Lease:    time.Minute,
			OnInvalidate: func(inv listener.Invalidation, _ error) {
				if slices.Contains(inv.Members, listener.Member{Org: "hot", User: "h1"}) {
					select {
					case ch <- time.Now():
					default:
					}
				}
			},
		}))
	}
	for _, in := range ins {
		if err := in.c.Warm(ctx, hotKeys(10_000)); err != nil {
			t.Fatal(err)
		}
	}
	// 100 payloads of ~8 KB naming ~550 orgs each, sent in one statement
	// per payload from the unprivileged role.
	payload := `{"v":1,"t":"memberships","orgs":[`
	for i := 0; len(payload) < 7800; i++ {
		if i > 0 {
			payload += ","
		}
		payload += fmt.Sprintf(`"spoof-%05d"`, i)
	}
	payload += `]}`
	done := make(chan error, 1)
	half := make(chan struct{})
	go func() {
		for i := range 100 {
			if i == 50 {
				close(half)
			}
			if _, err := storm.Exec(ctx, `SELECT pg_notify('orgperm_invalidate', $1)`, payload); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	// The real revoke, in the middle of the storm: after 50 payloads have
	// been committed, so the listeners have them queued ahead of it. The
	// delay is counted from before the statement is sent, an upper bound
	// on the delay from its commit.
	select {
	case <-half:
	case err := <-done:
		t.Fatalf("the storm stopped early: %v", err)
	}
	committed := time.Now()
	if _, err := w.raw.Exec(ctx, `UPDATE orgperm.memberships SET status = 'revoked' WHERE org_id = 'hot' AND user_id = 'h1'`); err != nil {
		t.Fatal(err)
	}
	var last time.Time
	for _, ch := range applied {
		select {
		case at := <-ch:
			if at.After(last) {
				last = at
			}
		case <-time.After(waitTimeout):
			t.Fatal("the revoke was never applied during the storm")
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, in := range ins {
		if ok, err := in.c.IsActiveMember(ctx, "hot", "h1"); err != nil || ok {
			t.Fatalf("after the storm: active = %v, %v; want revoked", ok, err)
		}
	}
	return max(last.Sub(committed), 0)
}

// TestBlackholedPoolFillIsBounded: the pool's connections go silent
// through a TCP proxy (no FIN, no RST) while the listener's stays up. A
// check that must read the database, asked with a context that has no
// deadline, fails (closed) once Config.FillTimeout has passed instead of
// waiting on a dead connection for as long as the process lives; and once
// the network returns, checks succeed again.
func TestBlackholedPoolFillIsBounded(t *testing.T) {
	skipShort(t)
	t.Parallel()
	server := pgtest.Shared(t)
	w := newWorld(t, server)
	proxy := faultproxy.New(t, hostPort(t, server.URL))
	// No connect timeout of the pool's own: a connection attempt into the
	// black hole ends only with the check's context, as a read does.
	pcfg := proxiedPoolConfig(t, w.url, proxy.Addr(), nil)
	pcfg.ConnConfig.ConnectTimeout = 0
	pool := openPool(t, pcfg)
	// Before the pool closes (cleanups run last first): a connection the
	// black hole killed would take pgxpool 15 s to close.
	t.Cleanup(proxy.CutAll)
	in := newInstance(t, pool, membership.Config{
		ListenerConnect: connectVia(t, w.url, "", &gate{}), // direct: only the pool goes silent
		FillTimeout:     500 * time.Millisecond,
	})
	ctx := context.Background()
	if ok, err := in.c.HasPermission(ctx, "o1", "u1", "billing.edit_invoice"); err != nil || !ok {
		t.Fatalf("before the fault: %v, %v", ok, err)
	}

	proxy.Blackhole()
	began := time.Now()
	for _, c := range []struct {
		what string
		ctx  context.Context
	}{
		{"a fill", ctx}, // a miss
		{"a FullyConsistent check", membership.FullyConsistent(ctx)}, // a read of its own
	} {
		done := make(chan error, 1)
		go func() {
			ok, err := in.c.HasPermission(c.ctx, "o1", "u2", "billing.edit_invoice")
			if ok {
				err = errors.New("allowed")
			}
			done <- err
		}()
		select {
		case err := <-done:
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("%s through the silent pool: %v, want a failure matching context.DeadlineExceeded", c.what, err)
			}
		case <-time.After(waitTimeout):
			proxy.CutAll() // frees the waiting read, so that the pool can close
			t.Fatalf("%s through the silent pool still waits after %v (FillTimeout 500ms)", c.what, waitTimeout)
		}
	}

	failed := time.Now()
	proxy.Restore()
	deadline := time.After(waitTimeout)
	for attempts := 1; ; attempts++ {
		ok, err := in.c.HasPermission(ctx, "o1", "u2", "billing.edit_invoice")
		if err == nil && ok {
			t.Logf("a fill and a FullyConsistent check failed closed within %v; after the network returned, checks succeeded again at attempt %d, %v later",
				failed.Sub(began).Round(time.Millisecond), attempts, time.Since(failed).Round(time.Millisecond))
			break
		}
		select {
		case <-deadline:
			t.Fatalf("after the network returned: %v, %v", ok, err)
		case <-time.After(50 * time.Millisecond): // polling: dead connections leave the pool one failed fill at a time
		}
	}
}
