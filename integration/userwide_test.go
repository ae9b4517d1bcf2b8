package integration_test

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/orgperm/orgperm/pkg/listener"
	"github.com/orgperm/orgperm/pkg/membership"
	"github.com/orgperm/orgperm/pkg/pgtest"
)

// TestUserWideFlipsOnEveryInstance: the seed's user_has_active_membership
// flips on four instances after raw SQL writes of every scope that can
// change it.
func TestUserWideFlipsOnEveryInstance(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		user   string
		sql    string
		before bool
	}{
		{"single-row status change", "u2", `UPDATE orgperm.memberships SET status = 'suspended' WHERE org_id = 'o1' AND user_id = 'u2'`, true},
		{"bulk insert collapsing to the org", "bulk-77", `INSERT INTO orgperm.memberships (org_id, user_id) SELECT 'o3', 'bulk-' || g FROM generate_series(1, 10000) g`, false},
		{"truncate", "u1", `TRUNCATE orgperm.memberships CASCADE`, true},
	}
	server := pgtest.Shared(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, server)
			ins := newInstances(t, w.pool, 4)
			ctx := context.Background()
			for _, in := range ins {
				for range 2 {
					got, err := in.c.UserHasActiveMembership(ctx, tc.user)
					if err != nil || got != tc.before {
						t.Fatalf("before: %v, %v; want %v", got, err, tc.before)
					}
				}
				if in.c.Stats().Cache.Hits == 0 {
					t.Fatal("second read was not a hit")
				}
			}
			if _, err := rawConn(t, w.url).Exec(ctx, tc.sql); err != nil {
				t.Fatal(err)
			}
			for i, in := range ins {
				in.waitInvalidation("from memberships", func(inv listener.Invalidation) bool {
					return inv.Source == "memberships"
				})
				got, err := in.c.UserHasActiveMembership(ctx, tc.user)
				if err != nil || got == tc.before {
					t.Errorf("instance %d after: %v, %v; want %v", i, got, err, !tc.before)
				}
			}
		})
	}
}

// TestSQLEvictionFromPsql: orgperm.evict_* called from psql evicts the named
// scope on four instances, and only that scope.
func TestSQLEvictionFromPsql(t *testing.T) {
	skipShort(t)
	t.Parallel()
	psql := psqlBinary(t)
	cases := []struct {
		call    string
		evicted []membership.Key // of the four cached keys
	}{
		{"orgperm.evict_member('o1', 'u1')", []membership.Key{{Org: "o1", User: "u1"}, {User: "u1"}}},
		{"orgperm.evict_org('o1')", []membership.Key{{Org: "o1", User: "u1"}, {Org: "o1", User: "u2"}, {User: "u1"}}},
		{"orgperm.evict_user('u1')", []membership.Key{{Org: "o1", User: "u1"}, {Org: "o2", User: "u1"}, {User: "u1"}}},
		{"orgperm.evict_all()", []membership.Key{{Org: "o1", User: "u1"}, {Org: "o1", User: "u2"}, {Org: "o2", User: "u1"}, {User: "u1"}}},
	}
	server := pgtest.Shared(t)
	for _, tc := range cases {
		t.Run(tc.call, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, server)
			ctx := context.Background()
			// A long lease: every load counted below is an eviction's, never
			// a lease that ran out on a slow machine.
			var ins []*instance
			for range 4 {
				ins = append(ins, newInstance(t, w.pool, membership.Config{Lease: time.Minute}))
			}
			for _, in := range ins {
				for _, k := range []membership.Key{{Org: "o1", User: "u1"}, {Org: "o1", User: "u2"}, {Org: "o2", User: "u1"}} {
					if _, err := in.c.Permissions(ctx, k.Org, k.User); err != nil {
						t.Fatal(err)
					}
				}
				if _, err := in.c.UserHasActiveMembership(ctx, "u1"); err != nil {
					t.Fatal(err)
				}
			}
			out, err := exec.Command(psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", w.url, "-c", "SELECT "+tc.call).CombinedOutput()
			if err != nil {
				t.Fatalf("psql: %v\n%s", err, out)
			}
			for i, in := range ins {
				in.waitInvalidation("from evict", func(inv listener.Invalidation) bool { return inv.Source == "evict" })
				loads := in.c.Stats().Cache.Loads
				for _, k := range []membership.Key{{Org: "o1", User: "u1"}, {Org: "o1", User: "u2"}, {Org: "o2", User: "u1"}} {
					if _, err := in.c.Permissions(ctx, k.Org, k.User); err != nil {
						t.Fatal(err)
					}
				}
				if _, err := in.c.UserHasActiveMembership(ctx, "u1"); err != nil {
					t.Fatal(err)
				}
				if got := in.c.Stats().Cache.Loads - loads; got != uint64(len(tc.evicted)) {
					t.Errorf("instance %d: %d keys reloaded, want %d evicted (%v)", i, got, len(tc.evicted), tc.evicted)
				}
			}
		})
	}
}

func psqlBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("psql"); err == nil {
		return p
	}
	m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/psql")
	if len(m) == 0 {
		t.Fatal("psql not found on PATH or under /usr/lib/postgresql/*/bin")
	}
	return m[len(m)-1]
}

// hotWorld is a database with n members of org "hot", each holding a role.
func hotWorld(t *testing.T, n int) *world {
	t.Helper()
	w := newWorld(t, pgtest.Shared(t))
	if _, err := w.raw.Exec(context.Background(), fmt.Sprintf(`
		INSERT INTO orgperm.roles (id, org_id, name) VALUES (50, 'hot', 'member');
		INSERT INTO orgperm.role_permissions VALUES (50, 'crm.view_lead');
		INSERT INTO orgperm.memberships (org_id, user_id) SELECT 'hot', 'h' || g FROM generate_series(1, %d) g;
		INSERT INTO orgperm.membership_roles (org_id, user_id, role_id) SELECT 'hot', 'h' || g, 50 FROM generate_series(1, %d) g;`, n, n)); err != nil {
		t.Fatal(err)
	}
	return w
}

func hotKeys(n int) []membership.Key {
	keys := make([]membership.Key, n)
	for i := range keys {
		keys[i] = membership.Key{Org: "hot", User: fmt.Sprintf("h%d", i+1)}
	}
	return keys
}

// TestWarmOneRoundTrip: a warm-up of 1,000 permission sets is one round
// trip, and every set is then a hit.
func TestWarmOneRoundTrip(t *testing.T) {
	t.Parallel()
	w := hotWorld(t, 1000)
	pool, qc := countingPool(t, w.url)
	in := newInstance(t, pool, membership.Config{Lease: time.Minute})
	ctx := context.Background()
	before := qc.roundTrips.Load()
	if err := in.c.Warm(ctx, hotKeys(1000)); err != nil {
		t.Fatal(err)
	}
	if got := qc.roundTrips.Load() - before; got != 1 {
		t.Fatalf("warm-up of 1,000 sets made %d round trips, want 1", got)
	}
	for _, k := range hotKeys(1000) {
		ok, err := in.c.HasPermission(ctx, k.Org, k.User, "crm.view_lead")
		if err != nil || !ok {
			t.Fatalf("%v: %v, %v", k, ok, err)
		}
	}
	if st := in.c.Stats().Cache; st.Hits != 1000 || st.Fills != 1000 {
		t.Fatalf("after warm-up: %+v; want 1,000 fills and 1,000 hits", st)
	}
	if got := qc.roundTrips.Load() - before; got != 1 {
		t.Fatalf("checks after warm-up made %d more round trips, want 0", got-1)
	}
}

// TestRewarmAfterReconnect: with 1,000 hot keys cached and re-warm on, the
// listener's backend is terminated; after the resync the database sees at
// most one query per hot key, not one per concurrent reader.
func TestRewarmAfterReconnect(t *testing.T) {
	skipShort(t)
	t.Parallel()
	const hot, readers = 1000, 8
	w := hotWorld(t, hot)
	pool, qc := countingPool(t, w.url)
	g := &gate{}
	in := newInstance(t, pool, membership.Config{
		Lease:           time.Minute,
		RewarmKeys:      hot,
		ListenerConnect: connectVia(t, w.url, "", g),
	})
	ctx := context.Background()
	if err := in.c.Warm(ctx, hotKeys(hot)); err != nil {
		t.Fatal(err)
	}

	g.block()
	if _, err := w.raw.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE application_name = $1 AND datname = current_database()`, listener.ApplicationName); err != nil {
		t.Fatal(err)
	}
	in.waitState(listener.Unsynced)
	before := qc.queries.Load()

	// Readers start the moment the listener is synced again, all at once.
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, readers)
	for range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for _, k := range hotKeys(hot) {
				ok, err := in.c.HasPermission(ctx, k.Org, k.User, "crm.view_lead")
				if err != nil || !ok {
					errs <- fmt.Errorf("%v: %v, %v", k, ok, err)
					return
				}
			}
		}()
	}
	g.open()
	in.waitState(listener.Synced)
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Besides the fills: the resync's proof of delivery and schema check.
	const resync = 2
	got := qc.queries.Load() - before
	if got > hot+resync {
		t.Fatalf("%d readers of %d hot keys made %d queries after the resync, want at most %d", readers, hot, got, hot+resync)
	}
	t.Logf("%d readers x %d hot keys after resync: %d queries", readers, hot, got)
}
