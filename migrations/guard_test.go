package migrations_test

// Tests of what tells a client that it cannot trust its cache: the DDL event
// triggers, orgperm.fingerprint(), orgperm.inspect() and
// orgperm.schema_version().

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/orgperm/orgperm/migrations"
	"github.com/orgperm/orgperm/pkg/pgtest"
)

// ddlPayload is what the DDL event triggers send.
const ddlPayload = `{"v":1,"t":"ddl","all":true}`

// fingerprint returns orgperm.fingerprint().
func (e *env) fingerprint() string {
	e.t.Helper()
	var fp string
	if err := e.pool.QueryRow(e.ctx, "SELECT orgperm.fingerprint()").Scan(&fp); err != nil {
		e.t.Fatal(err)
	}
	return fp
}

// inspect returns the rows of orgperm.inspect() as "severity|object|problem".
func (e *env) inspect() []string {
	e.t.Helper()
	return inspectRows(e.ctx, e.t, e.pool.QueryRow(e.ctx, "SELECT coalesce(array_agg(concat_ws('|', severity, object, problem)), '{}') FROM orgperm.inspect()"))
}

func inspectRows(ctx context.Context, t *testing.T, row pgx.Row) []string {
	t.Helper()
	var rows []string
	if err := row.Scan(&rows); err != nil {
		t.Fatal(err)
	}
	return rows
}

// TestDDLNotifies: every DDL command on an object of schema orgperm sends the
// ddl payload (once per transaction); DDL elsewhere sends nothing.
func TestDDLNotifies(t *testing.T) {
	t.Parallel()
	needSuperuser(t)
	cases := []struct {
		name string
		sql  string
		ddl  bool
	}{
		{"disable trigger", `ALTER TABLE orgperm.memberships DISABLE TRIGGER memberships_notify_update`, true},
		{"disable user triggers", `ALTER TABLE orgperm.memberships DISABLE TRIGGER USER`, true},
		{"disable all triggers", `ALTER TABLE orgperm.data_access DISABLE TRIGGER ALL`, true},
		{"enable always", `ALTER TABLE orgperm.memberships ENABLE ALWAYS TRIGGER memberships_notify_update`, true},
		{"enable replica", `ALTER TABLE orgperm.memberships ENABLE REPLICA TRIGGER memberships_notify_update`, true},
		{"drop trigger", `DROP TRIGGER memberships_notify_insert ON orgperm.memberships`, true},
		{"create trigger", `CREATE TRIGGER extra AFTER INSERT ON orgperm.memberships FOR EACH STATEMENT EXECUTE FUNCTION orgperm.notify_truncate()`, true},
		{"rename trigger", `ALTER TRIGGER memberships_notify_insert ON orgperm.memberships RENAME TO renamed`, true},
		{"replace trigger function", `CREATE OR REPLACE FUNCTION orgperm.notify_memberships() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END'`, true},
		{"alter function", `ALTER FUNCTION orgperm.emit(text, boolean, text[], text[], text[], text[], boolean) SECURITY INVOKER`, true},
		{"drop function", `DROP FUNCTION orgperm.evict_all()`, true},
		{"create function", `CREATE FUNCTION orgperm.extra() RETURNS int LANGUAGE sql AS 'SELECT 1'`, true},
		{"drop table", `DROP TABLE orgperm.data_access`, true},
		{"add column", `ALTER TABLE orgperm.memberships ADD COLUMN note text`, true},
		{"force row level security", `ALTER TABLE orgperm.roles FORCE ROW LEVEL SECURITY`, true},
		{"create policy", `CREATE POLICY p ON orgperm.roles USING (true)`, true},
		{"rename table", `ALTER TABLE orgperm.memberships RENAME TO members`, true},
		{"two commands, one transaction", `BEGIN; ALTER TABLE orgperm.memberships DISABLE TRIGGER USER; ALTER TABLE orgperm.memberships ENABLE TRIGGER USER; COMMIT`, true},

		{"rolled back", `BEGIN; DROP TABLE orgperm.data_access; ROLLBACK`, false},
		{"table elsewhere", `CREATE TABLE public.t (x int); ALTER TABLE public.t ADD COLUMN y int; DROP TABLE public.t`, false},
		{"function elsewhere", `CREATE FUNCTION public.f() RETURNS int LANGUAGE sql AS 'SELECT 1'; DROP FUNCTION public.f()`, false},
		{"trigger elsewhere", `CREATE TABLE public.t (x int); CREATE TRIGGER t AFTER INSERT ON public.t FOR EACH STATEMENT EXECUTE FUNCTION orgperm.notify_truncate(); DROP TRIGGER t ON public.t`, false},
		{"schema elsewhere", `CREATE SCHEMA other; DROP SCHEMA other`, false},
		{"index", `CREATE INDEX ON public.orgperm_goose_db_version (tstamp)`, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t)
			var want []string
			if tc.ddl {
				want = []string{ddlPayload}
			}
			e.expect(tc.sql, want...)
		})
	}
}

// TestDropSchema: dropping the whole schema by hand drops the event
// triggers with it (their function lives in the schema), so it sends
// nothing; what tells a client is that orgperm.fingerprint() is gone.
func TestDropSchema(t *testing.T) {
	t.Parallel()
	needSuperuser(t)
	e := setup(t)
	e.expect(`DROP SCHEMA orgperm CASCADE`)
	var n int
	if err := e.pool.QueryRow(e.ctx, "SELECT count(*) FROM pg_event_trigger WHERE evtname LIKE 'orgperm%'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d orgperm event triggers left (%v)", n, err)
	}
	var pgErr *pgconn.PgError
	if _, err := e.pool.Exec(e.ctx, "SELECT orgperm.fingerprint()"); !errors.As(err, &pgErr) || pgErr.Code != "3F000" {
		t.Fatalf("orgperm.fingerprint() after DROP SCHEMA: %v, want SQLSTATE 3F000 (schema does not exist)", err)
	}
	e.expect(`CREATE TABLE public.t (x int)`)
}

// TestFingerprint: orgperm.fingerprint() changes with every change to the
// triggers, functions or tables of schema orgperm (a disable then enable in
// one transaction included), and with nothing else.
func TestFingerprint(t *testing.T) {
	t.Parallel()
	needSuperuser(t)
	e := setup(t)
	e.exec(fixture)
	e.drain()
	fp := e.fingerprint()
	if fp == "" {
		t.Fatal("empty fingerprint")
	}
	// Nothing that leaves the definitions alone changes it.
	for _, sql := range []string{
		`INSERT INTO orgperm.memberships (org_id, user_id) VALUES ('o9', 'u9')`,
		`UPDATE orgperm.memberships SET status = 'suspended'`,
		`DELETE FROM orgperm.data_access`,
		`UPDATE orgperm.roles SET name = name || '!'`,
		`SELECT orgperm.evict_all()`,
		`ANALYZE`,
		`VACUUM`,
		`VACUUM (FREEZE) orgperm.memberships`,
		`VACUUM FULL orgperm.memberships`,
		`TRUNCATE orgperm.data_access`,
		`CREATE TABLE public.t (x int); CREATE FUNCTION public.f() RETURNS int LANGUAGE sql AS 'SELECT 1'`,
		`SET session_replication_role = replica; UPDATE orgperm.memberships SET status = 'active'; RESET session_replication_role`,
	} {
		e.exec(sql)
		if got := e.fingerprint(); got != fp {
			t.Errorf("%s changed the fingerprint", sql)
			fp = got
		}
	}
	// Every one of these changes it. (One that undoes the one before, like
	// DROP FUNCTION after CREATE FUNCTION, may bring back a value from
	// before: the definitions are then those of that time.)
	prev := "start"
	for _, sql := range []string{
		`ALTER TABLE orgperm.memberships DISABLE TRIGGER memberships_notify_update`,
		`ALTER TABLE orgperm.memberships ENABLE TRIGGER memberships_notify_update`,
		`BEGIN; ALTER TABLE orgperm.memberships DISABLE TRIGGER memberships_notify_update; ALTER TABLE orgperm.memberships ENABLE TRIGGER memberships_notify_update; COMMIT`,
		`ALTER TABLE orgperm.roles DISABLE TRIGGER USER`,
		`ALTER TABLE orgperm.roles ENABLE TRIGGER USER`,
		`ALTER TABLE orgperm.memberships ENABLE REPLICA TRIGGER memberships_notify_insert`,
		`ALTER TABLE orgperm.memberships ENABLE ALWAYS TRIGGER memberships_notify_insert`,
		`ALTER TRIGGER memberships_notify_insert ON orgperm.memberships RENAME TO renamed`,
		`DROP TRIGGER renamed ON orgperm.memberships`,
		`CREATE TRIGGER memberships_notify_insert AFTER INSERT ON orgperm.memberships FOR EACH STATEMENT EXECUTE FUNCTION orgperm.notify_truncate()`,
		`CREATE OR REPLACE FUNCTION orgperm.evict_all() RETURNS void LANGUAGE sql AS 'SELECT NULL::void'`,
		`CREATE FUNCTION orgperm.extra() RETURNS int LANGUAGE sql AS 'SELECT 1'`,
		`DROP FUNCTION orgperm.extra()`,
		`DROP TABLE orgperm.data_access`,
		`CREATE TABLE orgperm.data_access (id bigint)`,
		`ALTER TABLE orgperm.data_access SET SCHEMA public`,
		`ALTER EVENT TRIGGER orgperm_ddl_notify DISABLE`,
		`DROP EVENT TRIGGER orgperm_ddl_notify_drop`,
	} {
		e.exec(sql)
		if got := e.fingerprint(); got == fp {
			t.Errorf("%s left the fingerprint as it was after %s", sql, prev)
		} else {
			fp, prev = got, sql
		}
	}
}

// TestInspect: a fresh database is whole; each way of breaking invalidation
// yields its error rows, each cause of concern its warning.
func TestInspect(t *testing.T) {
	t.Parallel()
	needSuperuser(t)
	const (
		disabled = "notify trigger disabled"
		modes    = " (O: origin, R: replica, A: always); SELECT orgperm.reset_trigger_modes() repairs it"
		changed  = "changed since the migration installed it (restore it by migrating again)"
	)
	trig := func(name, table string) string { return "trigger " + name + " on orgperm." + table }
	cases := []struct {
		name string
		sql  string
		want []string
	}{
		{"fresh", `SELECT 1`, nil},
		{"drop trigger", `DROP TRIGGER memberships_notify_insert ON orgperm.memberships`,
			[]string{"error|" + trig("memberships_notify_insert", "memberships") + "|notify trigger missing"}},
		{"disable trigger", `ALTER TABLE orgperm.memberships DISABLE TRIGGER memberships_notify_update`,
			[]string{"error|" + trig("memberships_notify_update", "memberships") + "|" + disabled}},
		{"disable user", `ALTER TABLE orgperm.roles DISABLE TRIGGER USER`,
			[]string{
				"error|" + trig("roles_notify_delete", "roles") + "|" + disabled,
				"error|" + trig("roles_notify_replica", "roles") + "|" + disabled,
				"error|" + trig("roles_notify_truncate", "roles") + "|" + disabled,
				"error|" + trig("roles_notify_update", "roles") + "|" + disabled,
				"warning|" + trig("roles_audit_delete", "roles") + "|trigger disabled",
				"warning|" + trig("roles_audit_insert", "roles") + "|trigger disabled",
				"warning|" + trig("roles_audit_truncate", "roles") + "|trigger disabled",
				"warning|" + trig("roles_audit_update", "roles") + "|trigger disabled",
				"warning|" + trig("roles_guard", "roles") + "|trigger disabled",
			}},
		{"wrong mode", `ALTER TABLE orgperm.memberships ENABLE ALWAYS TRIGGER memberships_notify_update`,
			[]string{"error|" + trig("memberships_notify_update", "memberships") + "|notify trigger enabled in mode A, expected O" + modes}},
		{"replica trigger in origin mode", `ALTER TABLE orgperm.data_access ENABLE TRIGGER data_access_notify_replica`,
			[]string{"error|" + trig("data_access_notify_replica", "data_access") + "|notify trigger enabled in mode O, expected R" + modes}},
		{"trigger recreated on another function", `DROP TRIGGER memberships_notify_insert ON orgperm.memberships;
CREATE TRIGGER memberships_notify_insert AFTER INSERT ON orgperm.memberships FOR EACH STATEMENT EXECUTE FUNCTION orgperm.notify_truncate()`,
			[]string{"error|" + trig("memberships_notify_insert", "memberships") + "|" + changed}},
		{"no-op trigger function", `CREATE OR REPLACE FUNCTION orgperm.notify_memberships() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS 'BEGIN RETURN NULL; END'`,
			[]string{"error|function orgperm.notify_memberships()|" + changed}},
		{"security invoker", `ALTER FUNCTION orgperm.emit_roles(text, bigint[]) SECURITY INVOKER`,
			[]string{
				"error|function orgperm.emit_roles(text,bigint[])|" + changed,
				"error|function orgperm.emit_roles(text,bigint[])|not SECURITY DEFINER",
			}},
		{"search_path reset", `ALTER FUNCTION orgperm.notify_truncate() RESET search_path`,
			[]string{
				"error|function orgperm.notify_truncate()|" + changed,
				"error|function orgperm.notify_truncate()|search_path not pinned to pg_catalog, pg_temp",
			}},
		{"overload that captures calls", `CREATE FUNCTION orgperm.emit(source name, everything boolean) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS 'SELECT NULL::void'`,
			[]string{"error|function orgperm.emit(name,boolean)|not installed by the migration: another function of an invalidation function's name can capture its calls"}},
		{"helper dropped", `DROP FUNCTION orgperm.emit_chunks(text, text[], boolean)`,
			[]string{"error|function orgperm.emit_chunks(text,text[],boolean)|function missing"}},
		{"send silenced", `CREATE OR REPLACE FUNCTION orgperm.send(channel text, payload text) RETURNS void LANGUAGE sql AS 'SELECT NULL::void'`,
			[]string{"error|function orgperm.send(text, text)|missing, overloaded or not a body orgperm.set_transport installs (run SELECT orgperm.set_transport('notify'))"}},
		{"send overloaded", `CREATE FUNCTION orgperm.send(channel name, payload text) RETURNS void LANGUAGE sql AS 'SELECT NULL::void'`,
			[]string{"error|function orgperm.send(text, text)|missing, overloaded or not a body orgperm.set_transport installs (run SELECT orgperm.set_transport('notify'))"}},
		{"table dropped", `DROP TABLE orgperm.data_access`,
			[]string{"error|table orgperm.data_access|table missing"}},
		{"no event trigger", `DROP EVENT TRIGGER orgperm_ddl_notify`,
			[]string{"warning|event trigger orgperm_ddl_notify|DDL event trigger missing: DDL on orgperm's tables notifies nothing (only orgperm.fingerprint() changes)"}},
		{"event trigger disabled", `ALTER EVENT TRIGGER orgperm_ddl_notify_drop DISABLE`,
			[]string{"warning|event trigger orgperm_ddl_notify_drop|DDL event trigger enabled in mode D, expected A (always)"}},
		{"inheriting table", `CREATE TABLE public.archive () INHERITS (orgperm.memberships)`,
			[]string{"warning|table public.archive|inherits from orgperm.memberships: its rows are not part of the model and notify nothing"}},
		{"force row level security", `ALTER TABLE orgperm.roles FORCE ROW LEVEL SECURITY`,
			[]string{"warning|table orgperm.roles|FORCE ROW LEVEL SECURITY: the triggers' lookups are filtered unless the schema owner bypasses row-level security"}},
		{"foreign keys disabled", `ALTER TABLE orgperm.membership_roles DISABLE TRIGGER ALL;
ALTER TABLE orgperm.membership_roles ENABLE TRIGGER USER;
SELECT orgperm.reset_trigger_modes()`,
			[]string{
				"warning|trigger RI_ConstraintTrigger_c_N on orgperm.membership_roles|internal trigger disabled (a foreign key is not enforced)",
				"warning|trigger RI_ConstraintTrigger_c_N on orgperm.membership_roles|internal trigger disabled (a foreign key is not enforced)",
				"warning|trigger RI_ConstraintTrigger_c_N on orgperm.membership_roles|internal trigger disabled (a foreign key is not enforced)",
				"warning|trigger RI_ConstraintTrigger_c_N on orgperm.membership_roles|internal trigger disabled (a foreign key is not enforced)",
			}},
		// What pg_restore --disable-triggers does: every mode becomes O.
		{"disable all, enable all", `ALTER TABLE orgperm.membership_roles DISABLE TRIGGER ALL;
ALTER TABLE orgperm.membership_roles ENABLE TRIGGER ALL`,
			[]string{
				"error|" + trig("membership_roles_notify_replica", "membership_roles") + "|notify trigger enabled in mode O, expected R" + modes,
				"error|" + trig("membership_roles_notify_truncate", "membership_roles") + "|notify trigger enabled in mode O, expected A" + modes,
			}},
		{"modes reset", `ALTER TABLE orgperm.membership_roles DISABLE TRIGGER ALL;
ALTER TABLE orgperm.membership_roles ENABLE TRIGGER ALL;
SELECT orgperm.reset_trigger_modes()`, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t)
			e.exec(tc.sql)
			got := e.inspect()
			for i, r := range got {
				// Internal trigger names carry OIDs.
				if strings.Contains(r, "RI_ConstraintTrigger_c_") {
					name := r[strings.Index(r, "RI_ConstraintTrigger_c_"):]
					name = name[:strings.Index(name, " ")]
					got[i] = strings.Replace(r, name, "RI_ConstraintTrigger_c_N", 1)
				}
			}
			slices.Sort(got)
			want := slices.Clone(tc.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("inspect after %s\n got: %q\nwant: %q", tc.sql, got, want)
			}
		})
	}
}

// TestMigrateAsNonSuperuser: a role that is not a superuser can migrate; it
// gets no DDL event triggers (a NOTICE says so), inspect() warns about that
// and nothing else, and the triggers work.
func TestMigrateAsNonSuperuser(t *testing.T) {
	t.Parallel()
	needSuperuser(t)
	role := newRole(t)
	url := pgtest.Shared(t).NewEmptyDatabase(t)
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	var dbname string
	if err := admin.QueryRow(ctx, "SELECT current_database()").Scan(&dbname); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, "ALTER DATABASE "+dbname+" OWNER TO "+role); err != nil {
		t.Fatal(err)
	}
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.User = role
	var (
		mu      sync.Mutex
		notices []string
	)
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		mu.Lock()
		notices = append(notices, n.Message)
		mu.Unlock()
	}
	db := stdlib.OpenDB(*cfg)
	defer db.Close()
	if _, err := migrations.Up(ctx, db); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if !slices.ContainsFunc(notices, func(s string) bool { return strings.Contains(s, "no DDL event trigger is installed") }) {
		t.Errorf("no NOTICE about the missing event trigger: %q", notices)
	}
	mu.Unlock()
	var all string
	if err := db.QueryRowContext(ctx, "SELECT coalesce(string_agg(concat_ws('|', severity, object, problem), E'\\n' ORDER BY object), '') FROM orgperm.inspect()").Scan(&all); err != nil {
		t.Fatal(err)
	}
	rows := strings.Split(all, "\n")
	want := []string{
		"warning|event trigger orgperm_ddl_notify|DDL event trigger missing: DDL on orgperm's tables notifies nothing (only orgperm.fingerprint() changes)",
		"warning|event trigger orgperm_ddl_notify_drop|DDL event trigger missing: DDL on orgperm's tables notifies nothing (only orgperm.fingerprint() changes)",
	}
	if !slices.Equal(rows, want) {
		t.Errorf("inspect:\n got: %q\nwant: %q", rows, want)
	}
	// The triggers work for this owner.
	e := &env{t: t, ctx: ctx, url: url}
	e.pool, err = pgxpool.New(ctx, cfg.ConnString())
	if err != nil {
		t.Fatal(err)
	}
	defer e.pool.Close()
	e.listen = e.connAs(role)
	e.run(e.listen, "LISTEN "+channel)
	e.expect(`INSERT INTO orgperm.memberships (org_id, user_id) VALUES ('o1', 'u1')`, payload("memberships", `"members":[["o1","u1"]]`))
}
