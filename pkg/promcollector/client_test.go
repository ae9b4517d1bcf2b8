package promcollector_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/orgperm/orgperm/pkg/listener"
	"github.com/orgperm/orgperm/pkg/membership"
	"github.com/orgperm/orgperm/pkg/pgtest"
	"github.com/orgperm/orgperm/pkg/promcollector"
)

// waitTimeout bounds every wait; reaching it is a failure.
const waitTimeout = 30 * time.Second

// scrape gathers c through a pedantic registry and returns every series by
// name and labels, as in `orgperm_cache_evictions_total{reason="key"}`.
func scrape(t *testing.T, c prometheus.Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += "{" + l.GetName() + `="` + l.GetValue() + `"}`
			}
			switch {
			case m.GetCounter() != nil:
				out[name] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				out[name] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}

// expect checks the named series of got.
func expect(t *testing.T, step string, got map[string]float64, want map[string]float64) {
	t.Helper()
	for name, v := range want {
		if g, ok := got[name]; !ok || g != v {
			t.Errorf("%s: %s = %v (present %t), want %v", step, name, g, ok, v)
		}
	}
}

func TestValuesMoveWithAClient(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.NewPool(t)

	// Seed before the client listens, so that no notification of the
	// seed's writes can evict what the checks below cache.
	store := membership.NewStore(pool)
	const view = "billing.view_invoice"
	if err := store.EnsurePermission(ctx, view, ""); err != nil {
		t.Fatal(err)
	}
	role, err := store.CreateRole(ctx, "acme", "viewer", view)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.AddMember(ctx, "acme", "alice", membership.MemberOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := store.AssignRole(ctx, "acme", "alice", role, nil); err != nil {
		t.Fatal(err)
	}

	notified := make(chan struct{}, 16)
	client := startClient(t, pool, membership.Config{
		Lease: time.Minute, // few proofs during the test
		OnInvalidate: func(listener.Invalidation, error) {
			select {
			case notified <- struct{}{}:
			default:
			}
		},
	})
	c := promcollector.New(client)

	m := scrape(t, c)
	expect(t, "synced", m, map[string]float64{
		"orgperm_cache_hits_total":             0,
		"orgperm_cache_loads_total":            0,
		"orgperm_cache_entries":                0,
		"orgperm_listener_synced":              1,
		"orgperm_listener_notifications_total": 0,
	})
	if _, ok := m["orgperm_listener_seconds_since_sync"]; !ok {
		t.Error("synced: orgperm_listener_seconds_since_sync absent")
	}
	for name := range m {
		if strings.HasPrefix(name, "orgperm_relay_") {
			t.Errorf("a client without a relay exports %s", name)
		}
	}

	check := func(want bool) {
		t.Helper()
		ok, err := client.HasPermission(ctx, "acme", "alice", view)
		if err != nil || ok != want {
			t.Fatalf("HasPermission = %t, %v; want %t", ok, err, want)
		}
	}

	check(true) // a miss: one load, stored
	m = scrape(t, c)
	expect(t, "first check", m, map[string]float64{
		"orgperm_cache_hits_total":  0,
		"orgperm_cache_loads_total": 1,
		"orgperm_cache_fills_total": 1,
		"orgperm_cache_entries":     1,
	})
	misses := m["orgperm_cache_misses_total"]
	if misses < 1 {
		t.Errorf("first check: orgperm_cache_misses_total = %v, want at least 1", misses)
	}

	check(true) // a hit
	const afterHit = `
# HELP orgperm_cache_hits_total Lookups answered from the local cache.
# TYPE orgperm_cache_hits_total counter
orgperm_cache_hits_total 1
# HELP orgperm_cache_loads_total Database loads started on a miss or a bypass.
# TYPE orgperm_cache_loads_total counter
orgperm_cache_loads_total 1
# HELP orgperm_cache_bypassed_total Lookups that skipped the local cache because it was unsynced (the listener could not vouch for it) and went to the database.
# TYPE orgperm_cache_bypassed_total counter
orgperm_cache_bypassed_total 0
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(afterHit),
		"orgperm_cache_hits_total", "orgperm_cache_loads_total", "orgperm_cache_bypassed_total"); err != nil {
		t.Errorf("second check: %v", err)
	}
	if got := scrape(t, c)["orgperm_cache_misses_total"]; got != misses {
		t.Errorf("second check: orgperm_cache_misses_total = %v, want %v (unchanged)", got, misses)
	}

	// A write through the client evicts its key at once; the trigger's
	// notification arrives later.
	if err := client.Store().SuspendMember(ctx, "acme", "alice"); err != nil {
		t.Fatal(err)
	}
	expect(t, "suspend", scrape(t, c), map[string]float64{
		`orgperm_cache_evictions_total{reason="key"}`: 1,
		"orgperm_cache_entries":                       0,
	})
	select {
	case <-notified:
	case <-time.After(waitTimeout):
		t.Fatal("no notification of the suspension")
	}
	if got := scrape(t, c)["orgperm_listener_notifications_total"]; got < 1 {
		t.Errorf("after the notification: orgperm_listener_notifications_total = %v, want at least 1", got)
	}

	check(false) // a miss again: the suspension is seen
	expect(t, "after suspend", scrape(t, c), map[string]float64{
		"orgperm_cache_hits_total":  1,
		"orgperm_cache_loads_total": 2,
	})
}

// relayClient returns a Client on pool running a relay, ready (in queue
// mode: a proof of delivery came back through some relay), closed at
// cleanup, and a channel of the users its invalidations named.
func relayClient(t *testing.T, pool *pgxpool.Pool) (*membership.Client, chan string) {
	t.Helper()
	users := make(chan string, 256)
	client := startClient(t, pool, membership.Config{
		Relay: true,
		Lease: time.Minute, // few proofs during the test
		OnInvalidate: func(inv listener.Invalidation, _ error) {
			for _, u := range inv.Users {
				select {
				case users <- u:
				default:
				}
			}
		},
	})
	return client, users
}

// poll scrapes c until cond holds of the scrape, and fails the test when
// it does not within waitTimeout.
func poll(t *testing.T, step string, c prometheus.Collector, cond func(m map[string]float64) bool) map[string]float64 {
	t.Helper()
	deadline := time.After(waitTimeout)
	tick := time.NewTicker(2 * time.Millisecond) // a scrape is cheap; do not spin on a shared machine
	defer tick.Stop()
	for {
		m := scrape(t, c)
		if cond(m) {
			return m
		}
		select {
		case <-deadline:
			t.Fatalf("%s: not within %v; last scrape:\n%v", step, waitTimeout, m)
		case <-tick.C:
		}
	}
}

// TestRelayCountersMoveWithAClient: on a database in queue mode, a Client
// with Config.Relay leads the relay, and the relay's metrics follow what it
// does: the writes it relays move the rows and the rounds, a second
// client's relay reports that it does not lead, and takes over, counted,
// when the first client closes.
func TestRelayCountersMoveWithAClient(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	if _, err := pool.Exec(ctx, `SELECT orgperm.set_transport('queue')`); err != nil {
		t.Fatal(err)
	}

	a, users := relayClient(t, pool)
	ca := promcollector.New(a)
	// a is the only relay: its rounds took at least the switch's payload
	// and the proof that made it ready. Its counters are read after a
	// round returns, so the proof may come back before they move.
	m := poll(t, "a's first rows", ca, func(m map[string]float64) bool { return m["orgperm_relay_rows_total"] >= 2 })
	expect(t, "a leads", m, map[string]float64{
		"orgperm_relay_leading":           1,
		"orgperm_relay_leaderships_total": 1,
		"orgperm_relay_errors_total":      0,
	})
	for _, name := range []string{"orgperm_relay_rounds_total", "orgperm_relay_last_round_timestamp_seconds", "orgperm_relay_seconds_since_round"} {
		if _, ok := m[name]; !ok {
			t.Errorf("a leads: %s absent", name)
		}
	}

	// Three writes, each a queue row, relayed by a.
	rows, rounds, last := m["orgperm_relay_rows_total"], m["orgperm_relay_rounds_total"], m["orgperm_relay_last_round_timestamp_seconds"]
	want := map[string]bool{"u1": true, "u2": true, "u3": true}
	for u := range want {
		if _, err := pool.Exec(ctx, `SELECT orgperm.evict_user($1)`, u); err != nil {
			t.Fatal(err)
		}
	}
	for len(want) > 0 {
		select {
		case u := <-users:
			delete(want, u)
		case <-time.After(waitTimeout):
			t.Fatalf("evictions of %v not relayed within %v", want, waitTimeout)
		}
	}
	m = poll(t, "the writes counted", ca, func(m map[string]float64) bool {
		return m["orgperm_relay_rows_total"] >= rows+3
	})
	if m["orgperm_relay_rounds_total"] <= rounds || m["orgperm_relay_last_round_timestamp_seconds"] <= last {
		t.Errorf("after the writes: rounds %v (before %v), last round %v (before %v); want both later",
			m["orgperm_relay_rounds_total"], rounds, m["orgperm_relay_last_round_timestamp_seconds"], last)
	}
	// Rows move only with writes and proofs: between two equal readings of
	// the relay's own count, a scrape reports exactly it (retried only
	// while a proof moves the count under it, never until it matches).
	for deadline := time.Now().Add(waitTimeout); ; {
		before := a.Stats().Relay
		got := scrape(t, ca)
		after := a.Stats().Relay
		if before.Relayed == after.Relayed {
			if g := got["orgperm_relay_rows_total"]; g != float64(before.Relayed) {
				t.Errorf("orgperm_relay_rows_total = %v, want the relay's count %d (rounds %d to %d)", g, before.Relayed, before.Rounds, after.Rounds)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the relay's row count did not hold still for one scrape within %v", waitTimeout)
		}
	}

	// A second client's relay does not lead while a's does.
	b, _ := relayClient(t, pool)
	cb := promcollector.New(b)
	expect(t, "b follows", scrape(t, cb), map[string]float64{
		"orgperm_relay_leading":           0,
		"orgperm_relay_leaderships_total": 0,
		"orgperm_relay_rounds_total":      0,
		"orgperm_relay_rows_total":        0,
		"orgperm_relay_errors_total":      0,
	})
	if n := testutil.CollectAndCount(cb, "orgperm_relay_seconds_since_round"); n != 0 {
		t.Errorf("b follows: orgperm_relay_seconds_since_round has %d series before b's first round, want none", n)
	}

	// a closes: its relay stops (its series go) and b's takes the lock.
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(ca, "orgperm_relay_leading"); n != 0 {
		t.Errorf("a closed: orgperm_relay_leading has %d series, want none", n)
	}
	m = poll(t, "b takes over", cb, func(m map[string]float64) bool { return m["orgperm_relay_leading"] == 1 })
	expect(t, "b leads", m, map[string]float64{"orgperm_relay_leaderships_total": 1, "orgperm_relay_errors_total": 0})
	if _, err := pool.Exec(ctx, `SELECT orgperm.evict_user('u4')`); err != nil {
		t.Fatal(err)
	}
	poll(t, "b relays", cb, func(m map[string]float64) bool { return m["orgperm_relay_rows_total"] >= 1 })
}

// startClient starts a Client on pool, closed when the test ends, and
// waits until it is ready.
func startClient(t *testing.T, pool *pgxpool.Pool, cfg membership.Config) *membership.Client {
	t.Helper()
	client, err := membership.New(context.Background(), pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := client.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	select {
	case <-client.Ready():
	case <-time.After(waitTimeout):
		t.Fatal("client not ready")
	}
	return client
}
