package integration_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/orgperm/orgperm/pkg/listener"
	"github.com/orgperm/orgperm/pkg/membership"
	"github.com/orgperm/orgperm/pkg/pgtest"
)

// The write paths of issue #10 that skip or confuse ordinary triggers, each
// performed on one connection while two warm instances listen: every
// instance answers correctly within notification delivery, or reports
// itself bypassed and reads the database. (The SQL-level side of each path,
// the exact payloads, logical replication, pg_restore, search_path
// shadowing and the writer's row-level security, is tested in
// migrations/.)

// twoWarm starts two instances on w and caches (o1, u2) on both.
func twoWarm(t *testing.T, w *world) []*instance {
	t.Helper()
	ins := []*instance{newInstance(t, w.pool, membership.Config{}), newInstance(t, newPool(t, w.url), membership.Config{})}
	for _, in := range ins {
		if _, err := in.c.Permissions(context.Background(), "o1", "u2"); err != nil {
			t.Fatal(err)
		}
	}
	return ins
}

// agree waits until every instance's answer for (o1, u2) equals the
// database's, failing after waitTimeout: a correct instance agrees within
// notification delivery (or at once, when bypassed).
func agree(t *testing.T, w *world, ins []*instance, what string) {
	t.Helper()
	want := w.truth(t, "o1", "u2")
	for i, in := range ins {
		deadline := time.Now().Add(waitTimeout)
		for {
			s, err := in.c.Permissions(context.Background(), "o1", "u2")
			if err != nil {
				t.Fatal(err)
			}
			if fingerprint(s) == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: instance %d still answers\n %s\nwant %s", what, i, fingerprint(s), want)
			}
			in.waitInvalidation(what, func(listener.Invalidation) bool { return true })
		}
	}
}

func TestWritePathReplicaSession(t *testing.T) {
	t.Parallel()
	w := newWorld(t, pgtest.Shared(t))
	ins := twoWarm(t, w)
	conn := rawConn(t, w.url)
	ctx := context.Background()
	if _, err := conn.Exec(ctx, `SET session_replication_role = replica`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `UPDATE orgperm.memberships SET status = 'suspended' WHERE org_id = 'o1' AND user_id = 'u2'`); err != nil {
		t.Fatal(err)
	}
	agree(t, w, ins, "replica session UPDATE")
	if _, err := conn.Exec(ctx, `DELETE FROM orgperm.membership_roles WHERE org_id = 'o1' AND user_id = 'u2'`); err != nil {
		t.Fatal(err)
	}
	agree(t, w, ins, "replica session DELETE")
}

// TestWritePathDisabledTrigger: a notify trigger disabled (one, then
// every user trigger), a write, then re-enabled: each instance stops
// trusting its cache on the DDL (or, at the latest, its next proof's
// fingerprint), reads the database meanwhile, Check names the trigger, and
// it trusts the cache again only once the triggers are whole.
func TestWritePathDisabledTrigger(t *testing.T) {
	skipShort(t)
	t.Parallel()
	for _, disable := range []string{
		`ALTER TABLE orgperm.memberships DISABLE TRIGGER memberships_notify_update`,
		`ALTER TABLE orgperm.memberships DISABLE TRIGGER USER`,
	} {
		t.Run(strings.Fields(disable)[5], func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, pgtest.Shared(t))
			ins := twoWarm(t, w)
			ctx := context.Background()
			if _, err := w.raw.Exec(ctx, disable); err != nil {
				t.Fatal(err)
			}
			for _, in := range ins {
				in.waitState(listener.Unsynced)
			}
			if _, err := w.raw.Exec(ctx, `UPDATE orgperm.memberships SET status = 'suspended' WHERE org_id = 'o1' AND user_id = 'u2'`); err != nil {
				t.Fatal(err)
			}
			agree(t, w, ins, "write with a trigger disabled")
			for _, in := range ins {
				// Until the guard has run again, Check says it is verifying.
				deadline := time.Now().Add(waitTimeout)
				err := in.c.Check(ctx)
				for errors.Is(err, listener.ErrSchemaChanged) && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond) // polling Check while the guard re-verifies
					err = in.c.Check(ctx)
				}
				if !errors.Is(err, membership.ErrBypassed) || !strings.Contains(err.Error(), "memberships_notify_update") {
					t.Fatalf("Check with the trigger disabled = %v; want ErrBypassed naming memberships_notify_update", err)
				}
			}
			if _, err := w.raw.Exec(ctx, strings.Replace(disable, "DISABLE", "ENABLE", 1)); err != nil {
				t.Fatal(err)
			}
			if strings.HasSuffix(disable, "USER") {
				// ENABLE TRIGGER USER puts the replica and TRUNCATE triggers
				// in origin mode: the guard still refuses, and says how to
				// repair it.
				for _, in := range ins {
					deadline := time.Now().Add(waitTimeout)
					for err := in.c.Check(ctx); !strings.Contains(fmt.Sprint(err), "reset_trigger_modes"); err = in.c.Check(ctx) {
						if time.Now().After(deadline) {
							t.Fatalf("Check after ENABLE TRIGGER USER = %v; want the guard to name reset_trigger_modes", err)
						}
						time.Sleep(10 * time.Millisecond) // polling Check while the guard re-verifies
					}
				}
				if _, err := w.raw.Exec(ctx, `SELECT orgperm.reset_trigger_modes()`); err != nil {
					t.Fatal(err)
				}
			}
			for _, in := range ins {
				in.waitState(listener.Synced)
				// The repair's own DDL notification may arrive after a
				// retried verification has already synced: one more round
				// of verifying, then in service.
				deadline := time.Now().Add(waitTimeout)
				err := in.c.Check(ctx)
				for errors.Is(err, listener.ErrSchemaChanged) && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond) // polling Check while the guard re-verifies
					err = in.c.Check(ctx)
				}
				if err != nil {
					t.Fatalf("Check once the triggers are whole = %v", err)
				}
			}
			agree(t, w, ins, "after re-enabling")
		})
	}
}

// TestWritePathInheritance: rows of a table that inherits an orgperm table
// are not part of the model (every read is FROM ONLY), so writing them
// changes no answer and needs no notification.
func TestWritePathInheritance(t *testing.T) {
	t.Parallel()
	w := newWorld(t, pgtest.Shared(t))
	ins := twoWarm(t, w)
	ctx := context.Background()
	if _, err := w.raw.Exec(ctx, `CREATE TABLE public.more_memberships () INHERITS (orgperm.memberships);
		INSERT INTO public.more_memberships (org_id, user_id) VALUES ('o9', 'u2')`); err != nil {
		t.Fatal(err)
	}
	for _, in := range ins {
		if ok, err := in.c.IsActiveMember(ctx, "o9", "u2"); err != nil || ok {
			t.Fatalf("a child table's row granted membership: %v, %v", ok, err)
		}
	}
	agree(t, w, ins, "after a child table write")
}

// TestWritePathInfinity: 'infinity' and '-infinity' bounds, which the
// schema accepts, are handled as PostgreSQL orders them: an open end, a
// window that never starts, an assignment that ended before all time; no
// member is locked out by an error.
func TestWritePathInfinity(t *testing.T) {
	t.Parallel()
	w := newWorld(t, pgtest.Shared(t))
	ins := twoWarm(t, w)
	ctx := context.Background()
	steps := []struct {
		sql    string
		active bool
		edit   bool // billing.edit_invoice, through role 1
	}{
		{`UPDATE orgperm.memberships SET valid_until = 'infinity' WHERE org_id = 'o1' AND user_id = 'u2'`, true, true},
		{`UPDATE orgperm.memberships SET valid_from = '-infinity' WHERE org_id = 'o1' AND user_id = 'u2'`, true, true},
		{`UPDATE orgperm.membership_roles SET valid_until = 'infinity' WHERE org_id = 'o1' AND user_id = 'u2'`, true, true},
		{`UPDATE orgperm.membership_roles SET valid_until = '-infinity' WHERE org_id = 'o1' AND user_id = 'u2'`, true, false},
		{`UPDATE orgperm.memberships SET valid_from = 'infinity', valid_until = NULL WHERE org_id = 'o1' AND user_id = 'u2'`, false, false},
		{`UPDATE orgperm.memberships SET valid_from = NULL, valid_until = '-infinity' WHERE org_id = 'o1' AND user_id = 'u2'`, false, false},
	}
	for _, st := range steps {
		if _, err := w.raw.Exec(ctx, st.sql); err != nil {
			t.Fatal(err)
		}
		agree(t, w, ins, st.sql)
		for _, in := range ins {
			s, err := in.c.Permissions(membership.FullyConsistent(ctx), "o1", "u2")
			if err != nil {
				t.Fatalf("%s: %v", st.sql, err)
			}
			if s.Active() != st.active || s.Has("billing.edit_invoice") != st.edit {
				t.Fatalf("%s: active %v, edit %v; want %v, %v", st.sql, s.Active(), s.Has("billing.edit_invoice"), st.active, st.edit)
			}
			if ok, err := in.c.UserHasActiveMembership(ctx, "u2"); err != nil || ok != st.active {
				t.Fatalf("%s: user-wide %v, %v; want %v", st.sql, ok, err, st.active)
			}
		}
	}
}

// TestStartGuard: a client started on a database whose invalidation side
// is not whole fails with a typed error by default; with AllowUncached it
// starts, reads the database, and Check names what is wrong.
func TestStartGuard(t *testing.T) {
	t.Parallel()
	server := pgtest.Shared(t)
	cases := []struct {
		name, setup, want string
	}{
		{"dropped trigger", `DROP TRIGGER memberships_notify_insert ON orgperm.memberships`, "memberships_notify_insert"},
		{"disabled trigger", `ALTER TABLE orgperm.data_access DISABLE TRIGGER data_access_notify_delete`, "data_access_notify_delete"},
		{"no schema", ``, "schema orgperm"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var url string
			if tc.setup == "" {
				url = server.NewEmptyDatabase(t)
			} else {
				url = server.NewDatabase(t)
				if _, err := newPool(t, url).Exec(context.Background(), tc.setup); err != nil {
					t.Fatal(err)
				}
			}
			pool := newPool(t, url)
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			_, err := membership.New(ctx, pool, membership.Config{})
			var se *membership.SchemaError
			if !errors.As(err, &se) || !errors.Is(err, membership.ErrSchema) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v; want a *SchemaError naming %q", err, tc.want)
			}
			c, err := membership.New(ctx, pool, membership.Config{AllowUncached: true})
			if err != nil {
				t.Fatalf("New with AllowUncached: %v", err)
			}
			t.Cleanup(func() { _ = c.Close(context.Background()) })
			err = c.Check(ctx)
			if !errors.Is(err, membership.ErrBypassed) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Check = %v; want ErrBypassed naming %q", err, tc.want)
			}
			if tc.setup != "" {
				for range 3 {
					if _, err := c.Permissions(ctx, "o1", "u1"); err != nil {
						t.Fatal(err)
					}
				}
				if st := c.Stats().Cache; st.Hits != 0 || st.Bypassed < 3 {
					t.Fatalf("uncached client: %+v; want every read bypassed", st)
				}
			}
		})
	}
}

// TestClockSkew: hosts whose clocks are 30 s behind and ahead of the
// database give the same answers as an unskewed host at both boundary
// instants of a window (its end, then its start): windows are judged at
// the database's clock, and the time left is counted on the local
// monotonic clock.
func TestClockSkew(t *testing.T) {
	skipShort(t)
	t.Parallel()
	w := newWorld(t, pgtest.Shared(t))
	var ins []*instance
	for _, skew := range []time.Duration{0, -30 * time.Second, 30 * time.Second} {
		ins = append(ins, newInstance(t, newPool(t, w.url), membership.Config{
			Now: func() time.Time { return time.Now().Add(skew) },
		}))
	}
	ctx := context.Background()
	check := func(what string, want bool) {
		t.Helper()
		for i, in := range ins {
			for _, c := range []context.Context{ctx, membership.FullyConsistent(ctx)} {
				ok, err := in.c.IsActiveMember(c, "o1", "u2")
				if err != nil || ok != want {
					t.Fatalf("%s: instance %d (skew index) answers %v, %v; want %v", what, i, ok, err, want)
				}
			}
		}
	}
	// The end of a window: granted just before it (cached), denied at it.
	if _, err := w.raw.Exec(ctx, `UPDATE orgperm.memberships SET valid_until = statement_timestamp() + interval '1500 ms' WHERE org_id = 'o1' AND user_id = 'u2'`); err != nil {
		t.Fatal(err)
	}
	syncAll(t, w.raw, ins...)
	check("before valid_until", true)
	waitMembership(t, w.raw, `now() >= valid_until`)
	check("at valid_until", false)
	// The start of a window: denied just before it (cached), granted at it.
	if _, err := w.raw.Exec(ctx, `UPDATE orgperm.memberships SET valid_until = NULL, valid_from = statement_timestamp() + interval '1500 ms' WHERE org_id = 'o1' AND user_id = 'u2'`); err != nil {
		t.Fatal(err)
	}
	syncAll(t, w.raw, ins...)
	check("before valid_from", false)
	waitMembership(t, w.raw, `now() >= valid_from`)
	check("at valid_from", true)
}

// waitMembership waits until cond, an expression over o1/u2's membership
// row, holds at the database's clock.
func waitMembership(t *testing.T, db *pgxpool.Pool, cond string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		var past bool
		if err := db.QueryRow(context.Background(), `SELECT `+cond+` FROM orgperm.memberships WHERE org_id = 'o1' AND user_id = 'u2'`).Scan(&past); err != nil {
			t.Fatal(err)
		}
		if past {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the database's clock never passed the bound")
		}
		time.Sleep(5 * time.Millisecond) // polling the database's clock for a boundary instant
	}
}

// TestClockStoodStill: a host whose monotonic clock stood still for an hour
// while the database's clock went on (a suspended laptop or virtual
// machine) would count a cached membership's last seconds, and its lease,
// an hour too long. The listener sees its clock fall behind the wall clock
// and purges, so the membership ends at the database's valid_until, as on
// a host that never slept.
func TestClockStoodStill(t *testing.T) {
	skipShort(t)
	t.Parallel()
	w := newWorld(t, pgtest.Shared(t))
	var slept atomic.Int64
	in := newInstance(t, newPool(t, w.url), membership.Config{
		Now: func() time.Time { return time.Now().Add(-time.Duration(slept.Load())) },
	})
	ctx := context.Background()
	if _, err := w.raw.Exec(ctx, `UPDATE orgperm.memberships SET valid_until = statement_timestamp() + interval '1500 ms' WHERE org_id = 'o1' AND user_id = 'u2'`); err != nil {
		t.Fatal(err)
	}
	syncAll(t, w.raw, in)
	for range 2 { // a fill, then a hit
		if ok, err := in.c.IsActiveMember(ctx, "o1", "u2"); err != nil || !ok {
			t.Fatalf("before valid_until: %v, %v; want true", ok, err)
		}
	}
	if st := in.c.Stats().Cache; st.Hits == 0 {
		t.Fatalf("the membership was not cached: %+v", st)
	}
	slept.Store(int64(time.Hour))
	deadline := time.Now().Add(waitTimeout)
	for st := in.c.Stats().Listener; st.ClockJumps == 0 || st.State != listener.Synced; st = in.c.Stats().Listener {
		if time.Now().After(deadline) {
			t.Fatalf("the listener never saw its clock stand still: %d jumps, %v (%v)", st.ClockJumps, st.State, st.Reason)
		}
		time.Sleep(10 * time.Millisecond) // polling for the listener's next tick and proof
	}
	waitMembership(t, w.raw, `now() >= valid_until`)
	for _, c := range []context.Context{ctx, membership.FullyConsistent(ctx)} {
		if ok, err := in.c.IsActiveMember(c, "o1", "u2"); err != nil || ok {
			t.Fatalf("at valid_until, after the clock stood still: %v, %v; want false", ok, err)
		}
	}
}

// TestWritePathHostileSession: writes from a session that shadows
// pg_notify and to_json with functions of its own ahead of pg_catalog, and
// sets the notify limits to garbage: the triggers' pinned search_path
// ignores the former, the limits fall back to their defaults, and every
// instance evicts.
func TestWritePathHostileSession(t *testing.T) {
	t.Parallel()
	w := newWorld(t, pgtest.Shared(t))
	ins := twoWarm(t, w)
	conn := rawConn(t, w.url)
	ctx := context.Background()
	for _, sql := range []string{
		`CREATE SCHEMA evil`,
		`CREATE FUNCTION evil.pg_notify(text, text) RETURNS void LANGUAGE sql AS 'SELECT NULL'`,
		`CREATE FUNCTION evil.to_json(text) RETURNS json LANGUAGE sql AS $$SELECT '"someone-else"'::json$$`,
		`SET search_path = evil, pg_catalog, public`,
		`SET orgperm.notify_max_users = 'lots'`,
		`SET orgperm.notify_max_orgs = '-5'`,
		`UPDATE orgperm.memberships SET status = 'suspended' WHERE org_id = 'o1' AND user_id = 'u2'`,
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	agree(t, w, ins, "a write from a hostile session")
	if _, err := conn.Exec(ctx, `UPDATE orgperm.memberships SET status = 'active' WHERE org_id = 'o1'`); err != nil {
		t.Fatal(err)
	}
	agree(t, w, ins, "a bulk write from a hostile session")
}
