package migrations_test

// Tests of issue #10, "no silent bypass", on the SQL side: every write path
// notifies (replica sessions, a hostile search_path, the writer's row-level
// security, inheritance), bad settings fall back, and two-phase commit is
// refused with a clear error.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/orgperm/orgperm/internal/pgcluster"
	"github.com/orgperm/orgperm/pkg/pgtest"
)

// conn opens a connection of its own to the test database (for session
// settings), closed when the test ends.
func (e *env) conn() *pgx.Conn {
	e.t.Helper()
	c, err := pgx.Connect(e.ctx, e.url)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// connAs opens a connection to the test database as role, closed when the
// test ends.
func (e *env) connAs(role string) *pgx.Conn {
	e.t.Helper()
	cfg, err := pgx.ParseConfig(e.url)
	if err != nil {
		e.t.Fatal(err)
	}
	cfg.User = role
	c, err := pgx.ConnectConfig(e.ctx, cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// run executes sql on c and fails the test on error.
func (e *env) run(c *pgx.Conn, sql string) {
	e.t.Helper()
	if _, err := c.Exec(e.ctx, sql); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
}

// expectSet runs sql on c and checks the payloads it sent, in any order
// (row-level triggers send one per row, in the order PostgreSQL visits them).
func (e *env) expectSet(c *pgx.Conn, sql string, want ...string) {
	e.t.Helper()
	e.run(c, sql)
	got := e.drain()
	slices.Sort(got)
	want = slices.Clone(want)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		e.t.Errorf("%s\n got: %q\nwant: %q", sql, got, want)
	}
}

// needSuperuser skips a test that needs the server's role to be a superuser
// (session_replication_role, event triggers, roles, subscriptions): true
// of the throwaway cluster, maybe not of a TEST_DATABASE_URL server.
func needSuperuser(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, pgtest.Shared(t).URL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var super bool
	if err := c.QueryRow(ctx, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&super); err != nil {
		t.Fatal(err)
	}
	if !super {
		t.Skip("needs a superuser; the TEST_DATABASE_URL role is not one")
	}
}

// newRole creates a login role on the shared server, dropped when the test
// ends. Call it before setup, so that the role is dropped after the
// database that holds its privileges.
func newRole(t *testing.T) string {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "orgperm_role_" + hex.EncodeToString(b)
	srv := pgtest.Shared(t)
	ctx := context.Background()
	c, err := pgx.Connect(ctx, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE ROLE "+name+" LOGIN"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(ctx, srv.URL)
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP ROLE "+name); err != nil {
			t.Errorf("drop role %s: %v", name, err)
		}
	})
	return name
}

// TestReplicaSession: with session_replication_role = replica (a logical
// replication apply worker, or a session set by hand) the statement-level
// triggers do not fire; the row-level ENABLE REPLICA triggers send each
// row's scope instead, and TRUNCATE triggers fire in every mode.
func TestReplicaSession(t *testing.T) {
	t.Parallel()
	needSuperuser(t)
	all := func(src string) string { return payload(src, `"all":true`) }
	cases := []struct {
		name string
		sql  string
		want []string
	}{
		{"memberships insert", `INSERT INTO orgperm.memberships (org_id, user_id) VALUES ('o3', 'u9'), ('o3', 'u8')`,
			[]string{payload("memberships", `"members":[["o3","u9"]]`), payload("memberships", `"members":[["o3","u8"]]`)}},
		{"memberships update", `UPDATE orgperm.memberships SET status = 'suspended' WHERE org_id = 'o1'`,
			[]string{payload("memberships", `"members":[["o1","u1"]]`), payload("memberships", `"members":[["o1","u2"]]`)}},
		{"memberships update key", `UPDATE orgperm.memberships SET user_id = 'u3' WHERE org_id = 'o2'`,
			[]string{payload("memberships", `"members":[["o2","u1"],["o2","u3"]]`)}},
		{"memberships update irrelevant", `UPDATE orgperm.memberships SET updated_at = now()`, nil},
		{"memberships delete", `DELETE FROM orgperm.memberships WHERE org_id = 'o2'`,
			[]string{payload("memberships", `"members":[["o2","u1"]]`)}},
		{"memberships truncate", `TRUNCATE orgperm.memberships CASCADE`, []string{all("memberships"), all("membership_roles")}},

		{"permissions insert", `INSERT INTO orgperm.permissions (codename) VALUES ('crm.view_lead')`, nil},
		{"permissions rename", `UPDATE orgperm.permissions SET codename = 'billing.see_invoice' WHERE codename = 'billing.view_invoice'`,
			[]string{all("permissions")}},
		{"permissions update irrelevant", `UPDATE orgperm.permissions SET description = 'x'`, nil},
		{"permissions delete", `DELETE FROM orgperm.permissions WHERE codename = 'billing.edit_invoice'`, []string{all("permissions")}},

		{"roles insert", `INSERT INTO orgperm.roles (org_id, name) VALUES ('o1', 'new')`, nil},
		{"roles rename org role", `UPDATE orgperm.roles SET name = 'owner' WHERE id = 1`, []string{payload("roles", `"orgs":["o1"]`)}},
		{"roles rename system role", `UPDATE orgperm.roles SET name = 'reader' WHERE id = 2`, []string{all("roles")}},
		// The BEFORE guard does not fire in replica sessions: both orgs.
		{"roles move org", `UPDATE orgperm.roles SET org_id = 'o9' WHERE id = 3`, []string{payload("roles", `"orgs":["o2","o9"]`)}},
		{"roles delete", `DELETE FROM orgperm.roles WHERE id IN (1, 3)`,
			[]string{payload("roles", `"orgs":["o1"]`), payload("roles", `"orgs":["o2"]`)}},

		{"role_permissions insert", `INSERT INTO orgperm.role_permissions VALUES (1, 'billing.view_invoice'), (2, 'billing.edit_invoice')`,
			[]string{payload("role_permissions", `"orgs":["o1"]`), all("role_permissions")}},
		{"role_permissions update", `UPDATE orgperm.role_permissions SET codename = 'billing.view_invoice' WHERE role_id = 1`,
			[]string{payload("role_permissions", `"orgs":["o1"]`)}},
		{"role_permissions update irrelevant", `UPDATE orgperm.role_permissions SET created_at = now()`, nil},
		{"role_permissions delete", `DELETE FROM orgperm.role_permissions WHERE role_id = 1`,
			[]string{payload("role_permissions", `"orgs":["o1"]`)}},

		{"membership_roles insert", `INSERT INTO orgperm.membership_roles VALUES ('o2', 'u1', 3)`,
			[]string{payload("membership_roles", `"members":[["o2","u1"]]`)}},
		{"membership_roles update", `UPDATE orgperm.membership_roles SET valid_until = now() + interval '1 hour' WHERE role_id = 1`,
			[]string{payload("membership_roles", `"members":[["o1","u1"]]`), payload("membership_roles", `"members":[["o1","u2"]]`)}},
		{"membership_roles update irrelevant", `UPDATE orgperm.membership_roles SET created_at = now()`, nil},
		{"membership_roles delete", `DELETE FROM orgperm.membership_roles WHERE user_id = 'u2'`,
			[]string{payload("membership_roles", `"members":[["o1","u2"]]`)}},

		{"data_access insert", `INSERT INTO orgperm.data_access (org_id, user_id, role_id, resource_type) VALUES ('o1', 'u9', NULL, 'report'), ('o2', NULL, 3, 'report')`,
			[]string{payload("data_access", `"members":[["o1","u9"]]`), payload("data_access", `"orgs":["o2"]`)}},
		{"data_access update", `UPDATE orgperm.data_access SET resource_id = '43' WHERE id = 1`,
			[]string{payload("data_access", `"members":[["o1","u1"]]`)}},
		{"data_access update irrelevant", `UPDATE orgperm.data_access SET created_at = now()`, nil},
		{"data_access delete", `DELETE FROM orgperm.data_access`,
			[]string{payload("data_access", `"members":[["o1","u1"]]`), payload("data_access", `"orgs":["o1"]`)}},
		{"data_access truncate", `TRUNCATE orgperm.data_access`, []string{all("data_access")}},

		{"evict", `SELECT orgperm.evict_member('o1', 'u1')`, []string{payload("evict", `"members":[["o1","u1"]]`)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t)
			e.exec(fixture)
			e.drain()
			c := e.conn()
			e.run(c, "SET session_replication_role = replica")
			e.expectSet(c, tc.sql, tc.want...)
		})
	}
}

// TestLocalSession: session_replication_role = local fires the ordinary
// (statement-level) triggers, once per statement.
func TestLocalSession(t *testing.T) {
	t.Parallel()
	needSuperuser(t)
	e := setup(t)
	e.exec(fixture)
	e.drain()
	c := e.conn()
	e.run(c, "SET session_replication_role = local")
	e.expectSet(c, `UPDATE orgperm.memberships SET status = 'suspended' WHERE org_id = 'o1'`,
		payload("memberships", `"members":[["o1","u1"],["o1","u2"]]`))
}

// TestSearchPathShadowing: a writer whose search_path puts its own
// pg_notify, to_json and || first still sends the right payloads.
func TestSearchPathShadowing(t *testing.T) {
	t.Parallel()
	needSuperuser(t)
	e := setup(t)
	e.exec(fixture)
	e.exec(`
CREATE SCHEMA evil;
CREATE FUNCTION evil.pg_notify(text, text) RETURNS void LANGUAGE plpgsql AS 'BEGIN END';
CREATE FUNCTION evil.to_json(anyelement) RETURNS json LANGUAGE sql AS $$SELECT '"wrong"'::json$$;
CREATE FUNCTION evil.concat(text, text) RETURNS text LANGUAGE sql AS $$SELECT 'wrong'$$;
CREATE OPERATOR evil.|| (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.concat);
CREATE FUNCTION evil.current_setting(text, boolean) RETURNS text LANGUAGE sql AS $$SELECT 'lots'$$;`)
	e.drain()
	c := e.conn()
	e.run(c, "SET search_path = evil, pg_catalog, public")
	var shadowed string
	if err := c.QueryRow(e.ctx, `SELECT 'a'::text || 'b'::text`).Scan(&shadowed); err != nil || shadowed != "wrong" {
		t.Fatalf("the shadowing operator is not in effect (%q, %v): the test proves nothing", shadowed, err)
	}
	e.expectSet(c, `UPDATE orgperm.memberships SET status = 'suspended' WHERE user_id = 'u2'`,
		payload("memberships", `"members":[["o1","u2"]]`))
	e.expectSet(c, `UPDATE orgperm.memberships SET status = 'invited' WHERE org_id = 'o1'`,
		payload("memberships", `"members":[["o1","u1"],["o1","u2"]]`))
	e.expectSet(c, `DELETE FROM orgperm.role_permissions WHERE role_id = 1`,
		payload("role_permissions", `"orgs":["o1"]`))
	e.expectSet(c, `SELECT orgperm.evict_org('o"1')`, payload("evict", `"orgs":["o\"1"]`))
	e.expectSet(c, `SELECT orgperm.evict_user('u1')`, payload("evict", `"users":["u1"]`))
	e.run(c, "SET session_replication_role = replica")
	e.expectSet(c, `UPDATE orgperm.memberships SET status = 'active' WHERE org_id = 'o1'`,
		payload("memberships", `"members":[["o1","u1"]]`), payload("memberships", `"members":[["o1","u2"]]`))
}

// TestWriterRowLevelSecurity: row-level security that hides system roles
// from the writer does not filter the triggers' own lookups (they run as
// the schema owner).
func TestWriterRowLevelSecurity(t *testing.T) {
	t.Parallel()
	needSuperuser(t)
	role := newRole(t)
	e := setup(t)
	e.exec(fixture)
	e.exec(`GRANT USAGE ON SCHEMA orgperm TO ` + role + `;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA orgperm TO ` + role + `;
ALTER TABLE orgperm.roles ENABLE ROW LEVEL SECURITY;
CREATE POLICY org_roles_only ON orgperm.roles USING (org_id IS NOT NULL);`)
	e.drain()
	w := e.connAs(role)
	var visible int
	if err := w.QueryRow(e.ctx, `SELECT count(*) FROM orgperm.roles WHERE org_id IS NULL`).Scan(&visible); err != nil || visible != 0 {
		t.Fatalf("the writer sees %d system roles (%v): the policy is not in effect", visible, err)
	}
	// A permission granted to the system role: everything.
	e.expectSet(w, `INSERT INTO orgperm.role_permissions VALUES (2, 'billing.edit_invoice')`, payload("role_permissions", `"all":true`))
	// The system role taken from a member: the lookup must see the role.
	e.expectSet(w, `DELETE FROM orgperm.membership_roles WHERE role_id = 2`, payload("membership_roles", `"members":[["o1","u1"]]`))
	// The writer may not call the helpers directly.
	_, err := w.Exec(e.ctx, `SELECT orgperm.emit('x', true)`)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
		t.Errorf("writer calling orgperm.emit: %v, want permission denied (42501)", err)
	}
	// The evict functions stay callable, and so do the checks a client runs.
	e.expectSet(w, `SELECT orgperm.evict_all()`, payload("evict", `"all":true`))
	var (
		fp      string
		version int
	)
	if err := w.QueryRow(e.ctx, `SELECT orgperm.fingerprint(), orgperm.schema_version(), (SELECT count(*) FROM orgperm.inspect())`).Scan(&fp, &version, &visible); err != nil || fp == "" || version < 3 {
		t.Errorf("the writer's fingerprint, schema_version, inspect: %q, %d, %d rows, %v", fp, version, visible, err)
	}
}

// TestInheritance: rows of a table that INHERITS an orgperm table are not
// part of the model: writing them notifies nothing, and the triggers'
// lookups do not see them (FROM ONLY).
func TestInheritance(t *testing.T) {
	t.Parallel()
	needSuperuser(t)
	e := setup(t)
	e.exec(fixture)
	e.exec(`CREATE TABLE public.memberships_archive () INHERITS (orgperm.memberships);
CREATE TABLE public.roles_archive () INHERITS (orgperm.roles);`)
	e.drain()
	// Writes to the children notify nothing.
	e.expect(`INSERT INTO public.memberships_archive (org_id, user_id) VALUES ('o1', 'u1'), ('o7', 'u7')`)
	e.expect(`UPDATE public.memberships_archive SET status = 'revoked'`)
	e.expect(`INSERT INTO public.roles_archive (id, org_id, name) VALUES (1, NULL, 'ghost')`)
	e.expect(`DELETE FROM public.memberships_archive WHERE org_id = 'o7'`)
	// A child row with the deleted role's id, as a system role: the cascaded
	// deletes stay silent (the role is gone from the model), no "all".
	e.expect(`DELETE FROM ONLY orgperm.roles WHERE id = 1`, payload("roles", `"orgs":["o1"]`))
	// A child row with the deleted member's key: the cascaded role rows
	// stay silent (the membership is gone from the model).
	e.expect(`DELETE FROM ONLY orgperm.memberships WHERE org_id = 'o1' AND user_id = 'u1'`,
		payload("memberships", `"members":[["o1","u1"]]`))
	// The same in a replica session.
	e.exec(fixture2)
	e.drain()
	c := e.conn()
	e.run(c, "SET session_replication_role = replica")
	e.expectSet(c, `DELETE FROM ONLY orgperm.membership_roles WHERE org_id = 'o5'`)
	e.expectSet(c, `DELETE FROM ONLY orgperm.data_access WHERE org_id = 'o5'`)
}

// fixture2: a role (id 50) in o5 held by (o5, u5) with a data grant, whose
// role row is gone and whose membership lives only in a child table: what a
// replica session's rows look like when the parent rows were deleted first.
const fixture2 = `
INSERT INTO orgperm.roles (id, org_id, name) VALUES (50, 'o5', 'r');
INSERT INTO orgperm.memberships (org_id, user_id) VALUES ('o5', 'u5');
INSERT INTO orgperm.membership_roles VALUES ('o5', 'u5', 50);
INSERT INTO orgperm.data_access (org_id, role_id, resource_type) VALUES ('o5', 50, 'invoice');
SET session_replication_role = replica;
DELETE FROM ONLY orgperm.roles WHERE id = 50;
DELETE FROM ONLY orgperm.memberships WHERE org_id = 'o5';
SET session_replication_role = DEFAULT;
INSERT INTO public.roles_archive (id, org_id, name) VALUES (50, 'o5', 'r');
INSERT INTO public.memberships_archive (org_id, user_id) VALUES ('o5', 'u5');
`

// TestInvalidSettings: a notify_max_* setting that is not an integer from 0
// to 1000000 counts as unset (the default); it never breaks a write.
func TestInvalidSettings(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.exec(fixture)
	e.drain()
	c := e.conn()
	// Two users of o1 are listed by default (50), collapse to the org at 1.
	twoUsers := `UPDATE orgperm.memberships SET status = CASE status WHEN 'active' THEN 'suspended' ELSE 'active' END WHERE org_id = 'o1'`
	listed := payload("memberships", `"members":[["o1","u1"],["o1","u2"]]`)
	collapsed := payload("memberships", `"orgs":["o1"]`)
	// Two orgs are listed by default (100), collapse to everything at 1.
	twoOrgs := `UPDATE orgperm.memberships SET status = CASE status WHEN 'active' THEN 'suspended' ELSE 'active' END WHERE user_id = 'u1'`
	twoListed := payload("memberships", `"members":[["o1","u1"],["o2","u1"]]`)
	everything := payload("memberships", `"all":true`)

	e.run(c, "SET orgperm.notify_max_users = 1")
	e.expectSet(c, twoUsers, collapsed)
	e.run(c, "SET orgperm.notify_max_orgs = 1")
	e.expectSet(c, twoOrgs, everything)
	for _, bad := range []string{"lots", "-5", "1.5", "1e3", "99999999999", "2000000", "", " ", "0x10"} {
		e.run(c, "SET orgperm.notify_max_users = '"+bad+"'")
		e.expectSet(c, twoUsers, listed)
		e.run(c, "SET orgperm.notify_max_orgs = '"+bad+"'")
		e.expectSet(c, twoOrgs, twoListed)
	}
	e.run(c, "SET orgperm.notify_max_users = ' 1 '")
	e.expectSet(c, twoUsers, collapsed)
}

// TestPrepareTransaction: PostgreSQL refuses to PREPARE a transaction that
// sent NOTIFY, so two-phase commit of a write to an orgperm table fails with
// SQLSTATE 0A000 and writes nothing. (A server of its own: the shared one
// has max_prepared_transactions = 0.)
func TestPrepareTransaction(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster of its own (-short; make test runs it)")
	}
	t.Parallel()
	srv := pgcluster.StartTB(t)
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, "ALTER SYSTEM SET max_prepared_transactions = 4"); err != nil {
		t.Fatal(err)
	}
	admin.Close(ctx)
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	c, err := pgx.Connect(ctx, pgtest.NewServer(srv.URL).NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	// Two-phase commit works on this server...
	for _, sql := range []string{"BEGIN", "SELECT 1", "PREPARE TRANSACTION 'orgperm_ok'", "COMMIT PREPARED 'orgperm_ok'"} {
		if _, err := c.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	// ...but not after a write to an orgperm table.
	if _, err := c.Exec(ctx, "BEGIN; INSERT INTO orgperm.memberships (org_id, user_id) VALUES ('o1', 'u1')"); err != nil {
		t.Fatal(err)
	}
	_, err = c.Exec(ctx, "PREPARE TRANSACTION 'orgperm_write'")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "0A000" {
		t.Fatalf("PREPARE TRANSACTION after a write: %v, want SQLSTATE 0A000", err)
	}
	t.Logf("PREPARE TRANSACTION after a write: %s (SQLSTATE %s)", pgErr.Message, pgErr.Code)
	_, _ = c.Exec(ctx, "ROLLBACK") // a no-op if PREPARE already ended the transaction
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM orgperm.memberships").Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d memberships after the refused PREPARE (%v), want 0", n, err)
	}
	if err := c.QueryRow(ctx, "SELECT count(*) FROM pg_prepared_xacts").Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d prepared transactions (%v), want 0", n, err)
	}
}
