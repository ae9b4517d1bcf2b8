package promcollector_test

import (
	"context"
	"strings"
	"testing"
	"time"

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
	client, err := membership.New(ctx, pool, membership.Config{
		Lease: time.Minute, // few proofs during the test
		OnInvalidate: func(listener.Invalidation, error) {
			select {
			case notified <- struct{}{}:
			default:
			}
		},
	})
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
