package migrations_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orgperm/orgperm/pkg/pgtest"
)

const channel = "orgperm_invalidate"

// env is a fresh migrated database with a writer pool and a connection
// LISTENing on the invalidation channel.
type env struct {
	t      *testing.T
	ctx    context.Context
	url    string
	pool   *pgxpool.Pool
	listen *pgx.Conn
	seq    int
	// queue: the database is in queue mode (orgperm.set_transport('queue')),
	// and drain relays the queue (orgperm.relay()) before its sentinel.
	queue bool
	// wal: the database is in wal mode and a relay streams its WAL
	// (wal_test.go); drain's sentinel is a logical message.
	wal bool
}

// transports are the modes the trigger tests run in.
var transports = []string{"notify", "queue"}

func setup(t *testing.T) *env { t.Helper(); return setupTransport(t, "notify") }

// setupTransport is setup with the database in transport mode (notify or
// queue), its switch's own payloads drained.
func setupTransport(t *testing.T, mode string) *env {
	t.Helper()
	if mode == "wal" {
		return setupWAL(t)
	}
	e := setupNotify(t)
	if mode == "queue" {
		var got string
		if err := e.pool.QueryRow(e.ctx, `SELECT orgperm.set_transport('queue')`).Scan(&got); err != nil || got != "queue" {
			t.Fatalf("set_transport('queue') = %q, %v", got, err)
		}
		e.drain() // the switch notifies directly too
		e.queue = true
		e.drain()
	}
	return e
}

func setupNotify(t *testing.T) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	url := pgtest.NewDatabase(t)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	if _, err := conn.Exec(ctx, "LISTEN "+channel); err != nil {
		t.Fatal(err)
	}
	return &env{t: t, ctx: ctx, url: url, pool: pool, listen: conn}
}

// exec runs sql on the writer pool and fails the test on error.
func (e *env) exec(sql string, args ...any) {
	e.t.Helper()
	if _, err := e.pool.Exec(e.ctx, sql, args...); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
}

// drain returns every payload received since the last drain. It commits a
// sentinel NOTIFY after the writes: notifications arrive in commit order, so
// everything before the sentinel is what the earlier statements sent, and
// nothing is waited for by time.
//
// In queue mode nothing may have been NOTIFYed by the writes themselves
// (a first sentinel shows it); then the queue is relayed, and what the relay
// sent is returned.
func (e *env) drain() []string {
	e.t.Helper()
	e.seq++
	sentinel := fmt.Sprintf("sentinel-%d", e.seq)
	if e.queue {
		e.exec("SELECT pg_notify($1, $2)", channel, sentinel+"-direct")
		if got := e.until(sentinel + "-direct"); len(got) != 0 {
			e.t.Errorf("queue mode: the writes notified directly: %q", got)
		}
		e.exec("SELECT orgperm.relay()")
	}
	if e.wal {
		// Decoded in commit order after the writes, and relayed after
		// their scopes; its commit flushes theirs.
		e.exec("SELECT pg_catalog.set_config('synchronous_commit', 'on', true), pg_logical_emit_message(true, $1, $2)", channel, sentinel)
		return e.until(sentinel)
	}
	e.exec("SELECT pg_notify($1, $2)", channel, sentinel)
	return e.until(sentinel)
}

// until returns every payload received before sentinel, which someone else
// sends (a replicated marker row, say); it fails the test if sentinel does
// not come within 30 seconds.
func (e *env) until(sentinel string) []string {
	e.t.Helper()
	var got []string
	for {
		ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
		n, err := e.listen.WaitForNotification(ctx)
		cancel()
		if err != nil {
			e.t.Fatalf("waiting for %s (got %q so far): %v", sentinel, got, err)
		}
		if n.Payload == sentinel {
			return got
		}
		got = append(got, n.Payload)
	}
}

// expect runs sql and checks the exact payloads it sent, in order.
func (e *env) expect(sql string, want ...string) {
	e.t.Helper()
	e.exec(sql)
	got := e.drain()
	if !slices.Equal(got, want) {
		e.t.Errorf("%s\n got: %q\nwant: %q", sql, got, want)
	}
}

// fixture: two permissions, an org role in o1 (id 1), a system role (id 2),
// an org role in o2 (id 3), members u1, u2 of o1 holding role 1 and u1
// holding role 2, grants to u1 and to role 1.
const fixture = `
INSERT INTO orgperm.permissions (codename) VALUES ('billing.view_invoice'), ('billing.edit_invoice');
INSERT INTO orgperm.roles (id, org_id, name) VALUES (1, 'o1', 'admin'), (2, NULL, 'viewer'), (3, 'o2', 'admin');
INSERT INTO orgperm.role_permissions (role_id, codename) VALUES (1, 'billing.edit_invoice'), (2, 'billing.view_invoice');
INSERT INTO orgperm.memberships (org_id, user_id) VALUES ('o1', 'u1'), ('o1', 'u2'), ('o2', 'u1');
INSERT INTO orgperm.membership_roles (org_id, user_id, role_id) VALUES ('o1', 'u1', 1), ('o1', 'u2', 1), ('o1', 'u1', 2);
INSERT INTO orgperm.data_access (id, org_id, user_id, role_id, resource_type, resource_id)
VALUES (1, 'o1', 'u1', NULL, 'invoice', '42'), (2, 'o1', NULL, 1, 'invoice', NULL);
SELECT setval(pg_get_serial_sequence('orgperm.roles', 'id'), 100), setval(pg_get_serial_sequence('orgperm.data_access', 'id'), 100);
`

func payload(source, body string) string { return `{"v":1,"t":"` + source + `",` + body + `}` }

func TestTriggerNotifications(t *testing.T) {
	t.Parallel()
	all := func(src string) string { return payload(src, `"all":true`) }
	cases := []struct {
		name string
		sql  string
		want []string
	}{
		// permissions: the catalog.
		{"permissions insert", `INSERT INTO orgperm.permissions (codename) VALUES ('crm.view_lead')`, nil},
		{"permissions update irrelevant", `UPDATE orgperm.permissions SET description = 'x'`, nil},
		{"permissions rename", `UPDATE orgperm.permissions SET codename = 'billing.see_invoice' WHERE codename = 'billing.view_invoice'`,
			[]string{all("permissions"), all("role_permissions")}},
		{"permissions delete", `DELETE FROM orgperm.permissions WHERE codename = 'billing.edit_invoice'`,
			[]string{all("permissions"), payload("role_permissions", `"orgs":["o1"]`)}},
		{"permissions delete nothing", `DELETE FROM orgperm.permissions WHERE codename = 'no.such'`, nil},
		{"permissions truncate", `TRUNCATE orgperm.permissions CASCADE`,
			[]string{all("permissions"), all("role_permissions")}},

		// roles.
		{"roles insert", `INSERT INTO orgperm.roles (org_id, name) VALUES ('o1', 'new')`, nil},
		{"roles update irrelevant", `UPDATE orgperm.roles SET description = 'x'`, nil},
		{"roles rename org role", `UPDATE orgperm.roles SET name = 'owner' WHERE id = 1`, []string{payload("roles", `"orgs":["o1"]`)}},
		{"roles rename both org roles", `UPDATE orgperm.roles SET name = name || '!' WHERE org_id IS NOT NULL`,
			[]string{payload("roles", `"orgs":["o1","o2"]`)}},
		{"roles rename system role", `UPDATE orgperm.roles SET name = 'reader' WHERE id = 2`, []string{all("roles")}},
		{"roles delete org role", `DELETE FROM orgperm.roles WHERE id = 1`, []string{payload("roles", `"orgs":["o1"]`)}},
		{"roles delete system role", `DELETE FROM orgperm.roles WHERE id = 2`, []string{all("roles")}},
		{"roles truncate", `TRUNCATE orgperm.roles CASCADE`,
			[]string{all("roles"), all("role_permissions"), all("membership_roles"), all("data_access")}},

		// role_permissions.
		{"role_permissions insert org role", `INSERT INTO orgperm.role_permissions VALUES (1, 'billing.view_invoice')`,
			[]string{payload("role_permissions", `"orgs":["o1"]`)}},
		{"role_permissions insert system role", `INSERT INTO orgperm.role_permissions VALUES (2, 'billing.edit_invoice')`,
			[]string{all("role_permissions")}},
		{"role_permissions update", `UPDATE orgperm.role_permissions SET codename = 'billing.view_invoice' WHERE role_id = 1`,
			[]string{payload("role_permissions", `"orgs":["o1"]`)}},
		{"role_permissions update irrelevant", `UPDATE orgperm.role_permissions SET created_at = now()`, nil},
		{"role_permissions delete", `DELETE FROM orgperm.role_permissions WHERE role_id = 1`,
			[]string{payload("role_permissions", `"orgs":["o1"]`)}},
		{"role_permissions truncate", `TRUNCATE orgperm.role_permissions`, []string{all("role_permissions")}},

		// memberships.
		{"memberships insert", `INSERT INTO orgperm.memberships (org_id, user_id) VALUES ('o2', 'u2'), ('o3', 'u9')`,
			[]string{payload("memberships", `"members":[["o2","u2"],["o3","u9"]]`)}},
		{"memberships update status", `UPDATE orgperm.memberships SET status = 'suspended' WHERE user_id = 'u2'`,
			[]string{payload("memberships", `"members":[["o1","u2"]]`)}},
		{"memberships update window", `UPDATE orgperm.memberships SET valid_until = now() + interval '1 day' WHERE org_id = 'o2'`,
			[]string{payload("memberships", `"members":[["o2","u1"]]`)}},
		{"memberships update same value", `UPDATE orgperm.memberships SET status = 'active'`, nil},
		{"memberships update irrelevant", `UPDATE orgperm.memberships SET updated_at = now()`, nil},
		{"memberships update key", `UPDATE orgperm.memberships SET user_id = 'u3' WHERE org_id = 'o1' AND user_id = 'u2'`,
			[]string{payload("memberships", `"members":[["o1","u2"],["o1","u3"]]`), payload("membership_roles", `"members":[["o1","u2"],["o1","u3"]]`)}},
		{"memberships delete", `DELETE FROM orgperm.memberships WHERE org_id = 'o1'`,
			[]string{payload("memberships", `"members":[["o1","u1"],["o1","u2"]]`)}},
		// The single-row paths (issue #12): the payload is built by string
		// concatenation, so IDs that JSON escapes are checked here.
		{"memberships update one row unchanged", `UPDATE orgperm.memberships SET status = 'active' WHERE org_id = 'o1' AND user_id = 'u1'`, nil},
		{"memberships update one row irrelevant", `UPDATE orgperm.memberships SET updated_at = now() WHERE org_id = 'o1' AND user_id = 'u1'`, nil},
		{"memberships update one row window", `UPDATE orgperm.memberships SET valid_from = '-infinity' WHERE org_id = 'o1' AND user_id = 'u1'`,
			[]string{payload("memberships", `"members":[["o1","u1"]]`)}},
		{"memberships insert escaped", `INSERT INTO orgperm.memberships (org_id, user_id) VALUES ('o"\1', 'u\"2é')`,
			[]string{payload("memberships", `"members":[["o\"\\1","u\\\"2é"]]`)}},
		{"memberships update escaped", `INSERT INTO orgperm.memberships (org_id, user_id) VALUES ('o"\1', 'u\"2'); UPDATE orgperm.memberships SET status = 'revoked' WHERE org_id = 'o"\1'`,
			[]string{payload("memberships", `"members":[["o\"\\1","u\\\"2"]]`)}},
		{"memberships delete one row", `DELETE FROM orgperm.memberships WHERE org_id = 'o2'`,
			[]string{payload("memberships", `"members":[["o2","u1"]]`)}},
		{"memberships update two orgs", `UPDATE orgperm.memberships SET status = 'invited' WHERE user_id = 'u1'`,
			[]string{payload("memberships", `"members":[["o1","u1"],["o2","u1"]]`)}},
		{"memberships update one row and no change", `UPDATE orgperm.memberships SET status = 'invited' WHERE user_id = 'u1' OR (org_id = 'o1' AND user_id = 'u2' AND false)`,
			[]string{payload("memberships", `"members":[["o1","u1"],["o2","u1"]]`)}},
		{"memberships update of which one changes", `UPDATE orgperm.memberships SET status = CASE user_id WHEN 'u2' THEN 'revoked' ELSE status END WHERE org_id = 'o1'`,
			[]string{payload("memberships", `"members":[["o1","u2"]]`)}},
		{"memberships truncate", `TRUNCATE orgperm.memberships CASCADE`,
			[]string{all("memberships"), all("membership_roles")}},

		// membership_roles.
		{"membership_roles insert", `INSERT INTO orgperm.membership_roles VALUES ('o2', 'u1', 3)`,
			[]string{payload("membership_roles", `"members":[["o2","u1"]]`)}},
		{"membership_roles update expiry", `UPDATE orgperm.membership_roles SET valid_until = now() + interval '1 hour' WHERE role_id = 1`,
			[]string{payload("membership_roles", `"members":[["o1","u1"],["o1","u2"]]`)}},
		{"membership_roles update irrelevant", `UPDATE orgperm.membership_roles SET created_at = now()`, nil},
		{"membership_roles delete", `DELETE FROM orgperm.membership_roles WHERE user_id = 'u2'`,
			[]string{payload("membership_roles", `"members":[["o1","u2"]]`)}},
		{"membership_roles insert roles of one member", `INSERT INTO orgperm.membership_roles VALUES ('o2', 'u1', 3), ('o2', 'u1', 2)`,
			[]string{payload("membership_roles", `"members":[["o2","u1"]]`)}},
		{"membership_roles insert two members", `INSERT INTO orgperm.membership_roles VALUES ('o2', 'u1', 3), ('o1', 'u2', 2)`,
			[]string{payload("membership_roles", `"members":[["o1","u2"],["o2","u1"]]`)}},
		{"membership_roles update one row", `UPDATE orgperm.membership_roles SET valid_until = 'infinity' WHERE user_id = 'u2'`,
			[]string{payload("membership_roles", `"members":[["o1","u2"]]`)}},
		{"membership_roles update one row unchanged", `UPDATE orgperm.membership_roles SET valid_until = NULL WHERE user_id = 'u2'`, nil},
		{"membership_roles update one row role", `UPDATE orgperm.membership_roles SET role_id = 2 WHERE user_id = 'u2'`,
			[]string{payload("membership_roles", `"members":[["o1","u2"]]`)}},
		{"membership_roles update roles of one member", `UPDATE orgperm.membership_roles SET valid_until = 'infinity' WHERE user_id = 'u1'`,
			[]string{payload("membership_roles", `"members":[["o1","u1"]]`)}},
		{"membership_roles delete roles of one member", `DELETE FROM orgperm.membership_roles WHERE user_id = 'u1'`,
			[]string{payload("membership_roles", `"members":[["o1","u1"]]`)}},
		{"membership_roles truncate", `TRUNCATE orgperm.membership_roles`, []string{all("membership_roles")}},

		// data_access.
		{"data_access insert user grant", `INSERT INTO orgperm.data_access (org_id, user_id, resource_type, resource_id) VALUES ('o1', 'u2', 'invoice', '7')`,
			[]string{payload("data_access", `"members":[["o1","u2"]]`)}},
		{"data_access insert role grant", `INSERT INTO orgperm.data_access (org_id, role_id, resource_type) VALUES ('o2', 3, 'report')`,
			[]string{payload("data_access", `"orgs":["o2"]`)}},
		{"data_access insert both kinds", `INSERT INTO orgperm.data_access (org_id, user_id, role_id, resource_type) VALUES ('o1', 'u9', NULL, 'report'), ('o2', NULL, 2, 'report')`,
			[]string{payload("data_access", `"orgs":["o2"]`), payload("data_access", `"members":[["o1","u9"]]`)}},
		{"data_access insert grants of one user escaped", `INSERT INTO orgperm.data_access (org_id, user_id, resource_type, resource_id) VALUES ('o"1', 'u\9', 'invoice', '7'), ('o"1', 'u\9', 'report', NULL)`,
			[]string{payload("data_access", `"members":[["o\"1","u\\9"]]`)}},
		{"data_access insert grants of two users", `INSERT INTO orgperm.data_access (org_id, user_id, resource_type) VALUES ('o1', 'u2', 'report'), ('o1', 'u3', 'report')`,
			[]string{payload("data_access", `"members":[["o1","u2"],["o1","u3"]]`)}},
		{"data_access update", `UPDATE orgperm.data_access SET resource_id = '43' WHERE id = 1`,
			[]string{payload("data_access", `"members":[["o1","u1"]]`)}},
		{"data_access update irrelevant", `UPDATE orgperm.data_access SET created_at = now()`, nil},
		// The role grant's org scope covers the user grant in the same org.
		{"data_access delete", `DELETE FROM orgperm.data_access`, []string{payload("data_access", `"orgs":["o1"]`)}},
		{"data_access delete user grant", `DELETE FROM orgperm.data_access WHERE id = 1`,
			[]string{payload("data_access", `"members":[["o1","u1"]]`)}},
		{"data_access truncate", `TRUNCATE orgperm.data_access`, []string{all("data_access")}},

		// Cascades from a deleted role are covered by the role's own notification.
		{"role delete cascades silently", `DELETE FROM orgperm.roles WHERE id = 3`, []string{payload("roles", `"orgs":["o2"]`)}},

		// A rolled-back transaction sends nothing.
		{"rollback", `BEGIN; UPDATE orgperm.memberships SET status = 'revoked'; DELETE FROM orgperm.roles; ROLLBACK`, nil},

		// Explicit eviction.
		{"evict member", `SELECT orgperm.evict_member('o1', 'u1')`, []string{payload("evict", `"members":[["o1","u1"]]`)}},
		{"evict org", `SELECT orgperm.evict_org('o"1')`, []string{payload("evict", `"orgs":["o\"1"]`)}},
		{"evict user", `SELECT orgperm.evict_user('u\1')`, []string{payload("evict", `"users":["u\\1"]`)}},
		{"evict all", `SELECT orgperm.evict_all()`, []string{all("evict")}},
	}
	for _, mode := range append(transports, "wal") {
		for _, tc := range cases {
			t.Run(mode+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				e := setupTransport(t, mode)
				e.exec(fixture)
				e.drain()
				want := tc.want
				if w, ok := walWant[tc.name]; ok && mode == "wal" {
					want = w
				}
				e.expect(tc.sql, want...)
			})
		}
	}
	for name, w := range walWant {
		i := slices.IndexFunc(cases, func(c struct {
			name string
			sql  string
			want []string
		}) bool {
			return c.name == name
		})
		switch {
		case i < 0:
			t.Errorf("walWant names %q, which is no case", name)
		case slices.Equal(w, cases[i].want):
			t.Errorf("walWant[%q] is the triggers' want: no difference to list", name)
		}
	}
}

// TestBulkUpdateOneOrg: a 50,000-row update in one org (5,000 with -short)
// is one notification.
func TestBulkUpdateOneOrg(t *testing.T) {
	t.Parallel()
	forTransports(t, func(t *testing.T, mode string) {
		e := setupTransport(t, mode)
		n := 50_000
		if testing.Short() {
			n = 5_000 // still far past the collapse thresholds
		}
		e.expect(fmt.Sprintf(`INSERT INTO orgperm.memberships (org_id, user_id) SELECT 'big', 'user-' || g FROM generate_series(1, %d) g`, n),
			payload("memberships", `"orgs":["big"]`))
		e.expect(`UPDATE orgperm.memberships SET status = 'suspended' WHERE org_id = 'big'`,
			payload("memberships", `"orgs":["big"]`))
		e.expect(`DELETE FROM orgperm.memberships WHERE org_id = 'big'`,
			payload("memberships", `"orgs":["big"]`))
	})
}

// TestUpdateAcrossManyOrgs: an update spread over 1,000 orgs sends a handful
// of notifications, each under 8000 bytes, that together cover every org.
func TestUpdateAcrossManyOrgs(t *testing.T) {
	t.Parallel()
	forTransports(t, func(t *testing.T, mode string) {
		e := setupTransport(t, mode)
		e.exec(`INSERT INTO orgperm.memberships (org_id, user_id)
		SELECT 'org-' || g, 'user-' || u FROM generate_series(1, 1000) g, generate_series(1, 3) u`)
		e.drain()

		// By default more than 100 orgs in one statement collapse to everything.
		e.expect(`UPDATE orgperm.memberships SET status = 'suspended'`, payload("memberships", `"all":true`))

		// With the org limit raised, the 3,000 pairs are too many for a handful
		// of payloads and collapse to their orgs, split under 8000 bytes.
		e.exec(`ALTER DATABASE ` + currentDB(e) + ` SET orgperm.notify_max_orgs = 5000`)
		e.pool.Reset() // new connections pick up the setting
		e.exec(`UPDATE orgperm.memberships SET status = 'active'`)
		got := e.drain()
		if len(got) < 2 || len(got) > 4 {
			t.Fatalf("got %d notifications, want a handful (2..4)", len(got))
		}
		seen := map[string]bool{}
		for _, p := range got {
			if len(p) >= 8000 {
				t.Errorf("payload of %d bytes, want < 8000", len(p))
			}
			var msg struct {
				V    int      `json:"v"`
				Orgs []string `json:"orgs"`
			}
			if err := json.Unmarshal([]byte(p), &msg); err != nil || msg.V != 1 {
				t.Fatalf("bad payload %q: %v", p, err)
			}
			for _, o := range msg.Orgs {
				seen[o] = true
			}
		}
		if len(seen) != 1000 {
			t.Errorf("payloads cover %d orgs, want 1000", len(seen))
		}
	})
}

// TestBulkFastPaths: the statement-level shortcuts of issue #12 send what
// the general path (orgperm.emit) sends: a one-org statement over more than
// notify_max_users users is its org, unless notify_max_orgs is 0 (then
// everything); two such orgs are both listed, also when an UPDATE moves the
// rows of one org to another. (TestManyUsersCollapseToOrg holds the bulk
// UPDATE's count bound at its edge: 50 changes of 51 rows are listed.)
func TestBulkFastPaths(t *testing.T) {
	t.Parallel()
	forTransports(t, func(t *testing.T, mode string) {
		e := setupTransport(t, mode)
		e.expect(`INSERT INTO orgperm.memberships (org_id, user_id)
		SELECT 'o' || o, 'u' || g FROM generate_series(1, 2) o, generate_series(1, 60) g`,
			payload("memberships", `"orgs":["o1","o2"]`))
		e.expect(`UPDATE orgperm.memberships SET status = 'invited' WHERE org_id = 'o1'`, payload("memberships", `"orgs":["o1"]`))
		e.expect(`INSERT INTO orgperm.membership_roles (org_id, user_id, role_id)
		SELECT 'o2', 'u' || g, r.id FROM generate_series(1, 60) g, orgperm.roles r`) // no roles: nothing inserted
		e.expect(`UPDATE orgperm.memberships SET updated_at = now() WHERE org_id = 'o1'`)
		e.expect(`DELETE FROM orgperm.memberships WHERE org_id = 'o2' AND user_id <> 'u1'`, payload("memberships", `"orgs":["o2"]`))
		// The planner setting the bulk path makes is undone when the trigger
		// returns: the writer's transaction keeps its own.
		tx, err := e.pool.Begin(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		var mergejoin string
		if _, err := tx.Exec(e.ctx, `UPDATE orgperm.memberships SET status = 'suspended' WHERE org_id = 'o1'`); err != nil {
			t.Fatal(err)
		}
		if err := tx.QueryRow(e.ctx, `SHOW enable_mergejoin`).Scan(&mergejoin); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(e.ctx); err != nil {
			t.Fatal(err)
		}
		if mergejoin != "on" {
			t.Errorf("enable_mergejoin after a bulk UPDATE = %q, want on", mergejoin)
		}
		if got := e.drain(); !slices.Equal(got, []string{payload("memberships", `"orgs":["o1"]`)}) {
			t.Errorf("bulk UPDATE in a transaction sent %q", got)
		}

		// A bulk UPDATE whose old rows all lie in one org and whose status
		// counts prove more than notify_max_users changes, but whose new rows
		// lie in another: both orgs, not the old one alone.
		e.expect(`UPDATE orgperm.memberships SET org_id = 'o3', status = 'active' WHERE org_id = 'o1'`,
			payload("memberships", `"orgs":["o1","o3"]`))
		e.expect(`UPDATE orgperm.memberships SET org_id = 'o1', status = 'suspended' WHERE org_id = 'o3'`,
			payload("memberships", `"orgs":["o1","o3"]`))
		// With notify_max_users 0, two changes whose counts prove none (a
		// status moved between two inactive ones) still notify.
		e.exec(`ALTER DATABASE ` + currentDB(e) + ` SET orgperm.notify_max_users = 0`)
		e.pool.Reset()
		e.expect(`UPDATE orgperm.memberships SET status = 'invited' WHERE org_id = 'o1' AND user_id IN ('u1', 'u2')`,
			payload("memberships", `"orgs":["o1"]`))
		e.exec(`ALTER DATABASE ` + currentDB(e) + ` RESET orgperm.notify_max_users`)

		e.exec(`ALTER DATABASE ` + currentDB(e) + ` SET orgperm.notify_max_orgs = 0`)
		e.pool.Reset()
		e.expect(`UPDATE orgperm.memberships SET status = 'active' WHERE org_id = 'o1'`, payload("memberships", `"all":true`))
		e.expect(`UPDATE orgperm.memberships SET status = 'revoked' WHERE org_id = 'o1' AND user_id = 'u1'`,
			payload("memberships", `"members":[["o1","u1"]]`))
	})
}

// TestManyUsersCollapseToOrg: more than notify_max_users users of one org in
// a statement collapse to the org; up to it, they are listed.
func TestManyUsersCollapseToOrg(t *testing.T) {
	t.Parallel()
	forTransports(t, func(t *testing.T, mode string) {
		e := setupTransport(t, mode)
		e.exec(`INSERT INTO orgperm.memberships (org_id, user_id) SELECT 'o1', 'u' || lpad(g::text, 3, '0') FROM generate_series(1, 51) g`)
		e.drain()
		var members []string
		for i := 1; i <= 50; i++ {
			members = append(members, fmt.Sprintf(`["o1","u%03d"]`, i))
		}
		e.expect(`UPDATE orgperm.memberships SET status = 'invited' WHERE user_id <> 'u051'`,
			payload("memberships", `"members":[`+strings.Join(members, ",")+`]`))
		e.expect(`UPDATE orgperm.memberships SET status = 'suspended'`, payload("memberships", `"orgs":["o1"]`))
		e.expect(`UPDATE orgperm.memberships SET valid_until = 'infinity' WHERE user_id <> 'u051'`,
			payload("memberships", `"members":[`+strings.Join(members, ",")+`]`))
		e.expect(`UPDATE orgperm.memberships SET valid_from = '-infinity'`, payload("memberships", `"orgs":["o1"]`))
	})
}

// TestPayloadSplitAtMaxSizeIDs: with the largest IDs the schema allows and
// the user limit raised, member lists are split under 8000 bytes.
func TestPayloadSplitAtMaxSizeIDs(t *testing.T) {
	t.Parallel()
	forTransports(t, func(t *testing.T, mode string) {
		e := setupTransport(t, mode)
		e.exec(`ALTER DATABASE ` + currentDB(e) + ` SET orgperm.notify_max_users = 1000`)
		e.pool.Reset()
		// 128-byte IDs made of '"', which JSON doubles.
		e.exec(`INSERT INTO orgperm.memberships (org_id, user_id)
		SELECT repeat('"', 127) || 'o', lpad(g::text, 128, '"') FROM generate_series(1, 40) g`)
		got := e.drain()
		pairs := 0
		for _, p := range got {
			if len(p) >= 8000 {
				t.Errorf("payload of %d bytes, want < 8000", len(p))
			}
			var msg struct {
				Members [][2]string `json:"members"`
			}
			if err := json.Unmarshal([]byte(p), &msg); err != nil {
				t.Fatalf("bad payload: %v", err)
			}
			pairs += len(msg.Members)
		}
		if pairs != 40 || len(got) < 2 {
			t.Errorf("got %d pairs in %d payloads, want 40 in several", pairs, len(got))
		}
	})
}

// forTransports runs f as a parallel subtest per transport mode.
func forTransports(t *testing.T, f func(t *testing.T, mode string)) {
	t.Helper()
	for _, mode := range transports {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			f(t, mode)
		})
	}
}

func currentDB(e *env) string {
	var name string
	if err := e.pool.QueryRow(e.ctx, "SELECT current_database()").Scan(&name); err != nil {
		e.t.Fatal(err)
	}
	return name
}

// TestTriggersMatchMigration: the newest triggers migration installs exactly
// sql/triggers.sql, and goes down by the teardown part of sql/triggers.sql
// followed by the previous triggers migration's Up section (what `make
// generate` writes).
func TestTriggersMatchMigration(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile("../sql/triggers.sql")
	if err != nil {
		t.Fatal(err)
	}
	names := triggersMigrations(t)
	if len(names) < 2 {
		t.Fatalf("triggers migrations: %v", names)
	}
	newest, prev := names[len(names)-1], names[len(names)-2]
	up, down := gooseSections(t, newest)
	if strings.TrimSpace(up) != strings.TrimSpace(string(src)) {
		t.Fatalf("migrations/%s differs from sql/triggers.sql: run `make generate`", newest)
	}
	_, teardown, ok := strings.Cut(string(src), "-- teardown begin\n")
	teardown, _, ok2 := strings.Cut(teardown, "-- teardown end\n")
	if !ok || !ok2 {
		t.Fatal("sql/triggers.sql has no teardown part")
	}
	prevUp, _ := gooseSections(t, prev)
	if !strings.Contains(down, teardown) || !strings.Contains(down, strings.TrimSpace(prevUp)) {
		t.Fatalf("migrations/%s: Down is not the teardown followed by %s's Up: run `make generate`", newest, prev)
	}
}

// generatedHeader is the first line of every triggers migration, written by
// scripts/gen-triggers-migration.sh.
const generatedHeader = "-- Code generated by scripts/gen-triggers-migration.sh from sql/triggers.sql. DO NOT EDIT.\n"

// triggersMigrations lists the triggers migrations, oldest first: the
// numbered migrations whose first line is generatedHeader (00002_triggers.sql,
// 00003_triggers_v2.sql, 00006_queue.sql).
func triggersMigrations(t *testing.T) []string {
	t.Helper()
	all, err := filepath.Glob("[0-9]*_*.sql")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, name := range all {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(string(b), generatedHeader) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// gooseSections returns the Up and Down sections of a migration file.
func gooseSections(t *testing.T, name string) (up, down string) {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "-- +goose Up\n")
	up, down, ok2 := strings.Cut(rest, "\n-- +goose Down\n")
	if !ok || !ok2 {
		t.Fatalf("%s has no Up/Down sections", name)
	}
	return up, down
}

// TestReleasedMigrations: a released migration never changes (databases in
// the field have run it); scripts/released-migrations.sha256 lists them.
func TestReleasedMigrations(t *testing.T) {
	t.Parallel()
	list, err := os.ReadFile("../scripts/released-migrations.sha256")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(string(list)), "\n") {
		sum, name, ok := strings.Cut(line, "  ")
		if !ok {
			t.Fatalf("bad line %q", line)
		}
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprintf("%x", sha256.Sum256(b)); got != sum {
			t.Errorf("released migration %s changed (sha256 %s, released %s): add a new migration instead", name, got, sum)
		}
		n++
	}
	if n < 2 {
		t.Fatalf("%d released migrations listed, want at least 00001 and 00002", n)
	}
}

// TestSendInlined: in notify mode, the default, orgperm.send is inlined
// into the trigger's expression (what keeps the single-row fast paths as
// cheap as a pg_notify written in place, docs/DECISIONS.md 53): with
// function tracking on, the write's transaction counts no call of it,
// while in queue mode it does.
func TestSendInlined(t *testing.T) {
	t.Parallel()
	forTransports(t, func(t *testing.T, mode string) {
		e := setupTransport(t, mode)
		e.exec(fixture)
		e.drain()
		tx, err := e.pool.Begin(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(e.ctx)
		var calls int64
		if _, err := tx.Exec(e.ctx, `SET LOCAL track_functions = 'all'`); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(e.ctx, `UPDATE orgperm.memberships SET status = 'suspended' WHERE org_id = 'o1' AND user_id = 'u1'`); err != nil {
			t.Fatal(err)
		}
		if err := tx.QueryRow(e.ctx, `SELECT coalesce(pg_stat_get_xact_function_calls('orgperm.send(text, text)'::regprocedure), 0)`).Scan(&calls); err != nil {
			t.Fatal(err)
		}
		if want := map[string]int64{"notify": 0, "queue": 1}[mode]; calls != want {
			t.Errorf("%s mode: orgperm.send called %d times by a single-row UPDATE, want %d", mode, calls, want)
		}
	})
}
