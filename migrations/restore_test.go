package migrations_test

// Tests of the write paths that go around ordinary sessions: logical
// replication into the database, pg_restore over it, and upgrading a
// database at the first released schema version.

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orgperm/orgperm/internal/pgcluster"
	"github.com/orgperm/orgperm/migrations"
	"github.com/orgperm/orgperm/pkg/pgtest"
)

// TestLogicalReplication: writes applied by the logical replication apply
// worker (a second throwaway cluster as publisher, a subscription in the
// test database) send their payloads: INSERT, UPDATE and DELETE through the
// row-level replica triggers, TRUNCATE through the ALWAYS ones.
func TestLogicalReplication(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster of its own (-short; make test runs it)")
	}
	t.Parallel()
	needSuperuser(t)
	if os.Getenv(pgtest.URLEnv) != "" {
		t.Skip("the subscriber (the " + pgtest.URLEnv + " server) may not reach a publisher on this host")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// The publisher: its own cluster with wal_level = logical.
	pub := pgcluster.StartTB(t)
	admin, err := pgx.Connect(ctx, pub.URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, "ALTER SYSTEM SET wal_level = logical"); err != nil {
		t.Fatal(err)
	}
	admin.Close(ctx)
	if err := pub.Restart(); err != nil {
		t.Fatal(err)
	}
	pubURL := pgtest.NewServer(pub.URL).NewDatabase(t)
	pubCfg, err := pgx.ParseConfig(pubURL)
	if err != nil {
		t.Fatal(err)
	}
	writer, err := pgxpool.New(ctx, pubURL)
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	publish := func(sql string) {
		t.Helper()
		if _, err := writer.Exec(ctx, sql); err != nil {
			t.Fatalf("publisher: %s: %v", sql, err)
		}
	}
	// A marker table replicates after each write; on the subscriber its
	// ALWAYS trigger sends a sentinel, which arrives after the payloads of
	// every transaction applied before it.
	publish(`CREATE TABLE public.marker (n int PRIMARY KEY);
CREATE PUBLICATION orgperm_pub FOR TABLE orgperm.permissions, orgperm.roles, orgperm.role_permissions,
    orgperm.memberships, orgperm.membership_roles, orgperm.data_access, public.marker`)

	// The subscriber: the test database on the shared server.
	e := setup(t)
	e.exec(`CREATE TABLE public.marker (n int PRIMARY KEY);
CREATE FUNCTION public.marker_sentinel() RETURNS trigger LANGUAGE plpgsql AS
    $$BEGIN PERFORM pg_notify('orgperm_invalidate', 'sentinel-' || NEW.n); RETURN NULL; END$$;
CREATE TRIGGER marker_sentinel AFTER INSERT ON public.marker FOR EACH ROW EXECUTE FUNCTION public.marker_sentinel();
ALTER TABLE public.marker ENABLE ALWAYS TRIGGER marker_sentinel;`)
	e.drain()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	sub := "orgperm_sub_" + hex.EncodeToString(b)
	e.exec(fmt.Sprintf(`CREATE SUBSCRIPTION %s CONNECTION 'host=%s port=%d user=%s dbname=%s'
		PUBLICATION orgperm_pub WITH (copy_data = false)`, sub, pub.Host, pub.Port, pubCfg.User, pubCfg.Database))
	t.Cleanup(func() {
		// Before the databases go: this drops the publisher's slot too.
		if _, err := e.pool.Exec(context.Background(), "DROP SUBSCRIPTION "+sub); err != nil {
			t.Errorf("drop subscription: %v", err)
		}
	})

	marker := 0
	step := func(sql string, want ...string) {
		t.Helper()
		publish(sql)
		marker++
		publish(fmt.Sprintf("INSERT INTO public.marker VALUES (%d)", marker))
		got := e.until(fmt.Sprintf("sentinel-%d", marker))
		slices.Sort(got)
		want = slices.Clone(want)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("replicated %s\n got: %q\nwant: %q", sql, got, want)
		}
	}
	// The apply worker is up once the first marker arrives.
	step(`SELECT 1`)
	step(`INSERT INTO orgperm.permissions (codename) VALUES ('billing.view_invoice'), ('billing.edit_invoice');
INSERT INTO orgperm.roles (id, org_id, name) VALUES (1, 'o1', 'admin'), (2, NULL, 'viewer')`)
	step(`INSERT INTO orgperm.memberships (org_id, user_id) VALUES ('o1', 'u1'), ('o1', 'u2')`,
		payload("memberships", `"members":[["o1","u1"]]`), payload("memberships", `"members":[["o1","u2"]]`))
	step(`INSERT INTO orgperm.role_permissions VALUES (1, 'billing.edit_invoice')`, payload("role_permissions", `"orgs":["o1"]`))
	step(`INSERT INTO orgperm.membership_roles VALUES ('o1', 'u1', 1)`, payload("membership_roles", `"members":[["o1","u1"]]`))
	step(`INSERT INTO orgperm.data_access (org_id, user_id, resource_type) VALUES ('o1', 'u2', 'invoice')`,
		payload("data_access", `"members":[["o1","u2"]]`))
	step(`UPDATE orgperm.memberships SET status = 'suspended' WHERE user_id = 'u2'`, payload("memberships", `"members":[["o1","u2"]]`))
	step(`UPDATE orgperm.roles SET name = 'reader' WHERE id = 2`, payload("roles", `"all":true`))
	step(`UPDATE orgperm.memberships SET updated_at = now()`)
	step(`DELETE FROM orgperm.membership_roles WHERE user_id = 'u1'`, payload("membership_roles", `"members":[["o1","u1"]]`))
	step(`DELETE FROM orgperm.data_access`, payload("data_access", `"members":[["o1","u2"]]`))
	step(`DELETE FROM orgperm.permissions WHERE codename = 'billing.view_invoice'`, payload("permissions", `"all":true`))
	step(`TRUNCATE orgperm.memberships CASCADE`, payload("memberships", `"all":true`), payload("membership_roles", `"all":true`))

	var n int
	if err := e.pool.QueryRow(ctx, "SELECT count(*) FROM orgperm.roles WHERE name = 'reader'").Scan(&n); err != nil || n != 1 {
		t.Fatalf("replicated rows: %d, %v", n, err)
	}
}

// pgBin returns the path of a PostgreSQL client program (pg_dump,
// pg_restore) of the server's major version, or skips the test.
func pgBin(t *testing.T, ctx context.Context, pool *pgxpool.Pool, name string) string {
	t.Helper()
	var num string
	if err := pool.QueryRow(ctx, "SHOW server_version_num").Scan(&num); err != nil {
		t.Fatal(err)
	}
	v, _ := strconv.Atoi(num)
	for _, dir := range []string{
		fmt.Sprintf("/usr/lib/postgresql/%d/bin", v/10000),
		fmt.Sprintf("/usr/pgsql-%d/bin", v/10000),
	} {
		if p := filepath.Join(dir, name); fileExists(p) {
			return p
		}
	}
	// Another on PATH does only if it is the server's major version:
	// pg_dump refuses a newer server, and a newer pg_dump's output need not
	// load into an older one (pg_dump 15 writes the LOGGED option of an
	// unlogged table's identity sequence, which PostgreSQL 13 rejects).
	// make test-pg runs servers that have no client programs beside them.
	if p, err := exec.LookPath(name); err == nil && clientMajor(p) == v/10000 {
		return p
	}
	t.Skipf("no %s of PostgreSQL %d (a dump restores only into the version its client programs belong to)", name, v/10000)
	return ""
}

// clientMajor returns the major version a PostgreSQL program reports
// ("pg_dump (PostgreSQL) 15.20 (Debian ...)" is 15), or 0.
func clientMajor(path string) int {
	out, err := exec.Command(path, "--version").Output()
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(out))
	if len(fields) < 3 {
		return 0
	}
	major, _ := strconv.Atoi(strings.SplitN(fields[2], ".", 2)[0])
	return major
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// run runs a program and fails the test with its output on error.
func runProgram(t *testing.T, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", filepath.Base(name), args, err, out)
	}
}

// TestPgRestoreClean: pg_restore --clean of an older dump over the live
// database drops and recreates everything, the event triggers first (so it
// sends no ddl payload, and the triggers do not exist while the data is
// loaded): orgperm.fingerprint() is the signal. Afterwards the database is
// whole again.
func TestPgRestoreClean(t *testing.T) {
	t.Parallel()
	needSuperuser(t)
	e := setup(t)
	e.exec(fixture)
	e.drain()
	dump := filepath.Join(t.TempDir(), "orgperm.dump")
	runProgram(t, pgBin(t, e.ctx, e.pool, "pg_dump"), "-Fc", "-f", dump, "-d", e.url)
	// The live database moves on.
	e.exec(`UPDATE orgperm.memberships SET status = 'revoked' WHERE user_id = 'u1'`)
	e.drain()
	before := e.fingerprint()

	runProgram(t, pgBin(t, e.ctx, e.pool, "pg_restore"), "--clean", "--if-exists", "-d", e.url, dump)
	payloads := e.drain()
	after := e.fingerprint()
	ddl := slices.Contains(payloads, ddlPayload)
	t.Logf("pg_restore --clean: fingerprint changed %v, ddl payload %v (payloads %q)", after != before, ddl, payloads)
	if after == before && !ddl {
		t.Fatal("pg_restore --clean changed the fingerprint and sent no ddl payload: a client cannot notice it")
	}
	if after == before {
		t.Error("pg_restore --clean left the fingerprint as it was")
	}
	var n int
	if err := e.pool.QueryRow(e.ctx, "SELECT count(*) FROM orgperm.memberships WHERE status = 'revoked'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d revoked memberships after restoring the older dump (%v), want 0", n, err)
	}
	if rows := e.inspect(); len(rows) != 0 {
		t.Errorf("inspect after the restore: %q", rows)
	}
	e.expect(`UPDATE orgperm.memberships SET status = 'suspended' WHERE org_id = 'o2'`, payload("memberships", `"members":[["o2","u1"]]`))
}

// TestPgRestoreDataOnly: pg_restore --data-only --disable-triggers loads
// rows with the triggers disabled; disabling and enabling them is DDL (the
// ddl payload) and changes orgperm.fingerprint(). Its ENABLE TRIGGER ALL
// also puts the replica and TRUNCATE triggers in mode O, which inspect()
// reports and orgperm.reset_trigger_modes() repairs.
func TestPgRestoreDataOnly(t *testing.T) {
	t.Parallel()
	needSuperuser(t)
	e := setup(t)
	e.exec(fixture)
	e.drain()
	dump := filepath.Join(t.TempDir(), "orgperm.dump")
	runProgram(t, pgBin(t, e.ctx, e.pool, "pg_dump"), "-Fc", "-f", dump, "-d", e.url)
	e.exec(`DELETE FROM orgperm.data_access; DELETE FROM orgperm.membership_roles; DELETE FROM orgperm.memberships;
DELETE FROM orgperm.role_permissions; DELETE FROM orgperm.roles; DELETE FROM orgperm.permissions; DELETE FROM orgperm.audit_log`)
	e.drain()
	before := e.fingerprint()

	runProgram(t, pgBin(t, e.ctx, e.pool, "pg_restore"), "--data-only", "--disable-triggers", "-n", "orgperm", "-d", e.url, dump)
	payloads := e.drain()
	after := e.fingerprint()
	ddl := slices.Contains(payloads, ddlPayload)
	t.Logf("pg_restore --data-only --disable-triggers: fingerprint changed %v, ddl payload %v (payloads %q)", after != before, ddl, payloads)
	if !ddl || after == before {
		t.Fatalf("want both signals: ddl payload %v, fingerprint changed %v", ddl, after != before)
	}
	var n int
	if err := e.pool.QueryRow(e.ctx, "SELECT count(*) FROM orgperm.memberships").Scan(&n); err != nil || n != 3 {
		t.Fatalf("%d memberships after the restore (%v), want 3", n, err)
	}
	if rows := e.inspect(); len(rows) == 0 {
		t.Error("inspect after pg_restore --disable-triggers: no rows, want the trigger modes it changed")
	} else {
		t.Logf("inspect after the restore: %d rows, first %q", len(rows), rows[0])
	}
	e.exec(`SELECT orgperm.reset_trigger_modes()`)
	if rows := e.inspect(); len(rows) != 0 {
		t.Errorf("inspect after reset_trigger_modes: %q", rows)
	}
}

// TestUpgradeFromFirstRelease: a database at the first released schema
// version (2: 00001 + 00002), with data, migrates to the newest; then it is
// whole, its triggers send the same payloads, replica sessions are covered,
// and it migrates back down to 2 and up again.
func TestUpgradeFromFirstRelease(t *testing.T) {
	t.Parallel()
	needSuperuser(t)
	ctx := context.Background()
	url := pgtest.Shared(t).NewEmptyDatabase(t)
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	p, err := migrations.NewProvider(db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(ctx, 2); err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	listen, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer listen.Close(ctx)
	if _, err := listen.Exec(ctx, "LISTEN "+channel); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, ctx: ctx, url: url, pool: pool, listen: listen}
	e.exec(fixture)
	e.drain()

	res, err := p.Up(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) == 0 {
		t.Fatal("nothing to migrate from version 2")
	}
	// The upgrade itself tells running instances to purge: one ddl payload
	// per migration at most (each runs in a transaction of its own).
	if got := e.drain(); !ddlPayloads(got, len(res)) {
		t.Errorf("payloads of the upgrade: %q, want 1 to %d ddl payloads", got, len(res))
	}
	// schema_version() is the number of the newest triggers migration.
	names := triggersMigrations(t)
	want, _ := strconv.Atoi(strings.TrimLeft(strings.SplitN(names[len(names)-1], "_", 2)[0], "0"))
	var version int
	if err := pool.QueryRow(ctx, "SELECT orgperm.schema_version()").Scan(&version); err != nil || version != want || want < 3 {
		t.Fatalf("schema_version() = %d, %v; want %d (%s)", version, err, want, names[len(names)-1])
	}
	if rows := e.inspect(); len(rows) != 0 {
		t.Errorf("inspect after the upgrade: %q", rows)
	}
	e.expect(`UPDATE orgperm.memberships SET status = 'suspended' WHERE org_id = 'o1'`,
		payload("memberships", `"members":[["o1","u1"],["o1","u2"]]`))
	e.expect(`DELETE FROM orgperm.roles WHERE id = 2`, payload("roles", `"all":true`))
	e.expect(`INSERT INTO orgperm.role_permissions VALUES (1, 'billing.view_invoice')`, payload("role_permissions", `"orgs":["o1"]`))
	e.expect(`ALTER TABLE orgperm.memberships DISABLE TRIGGER memberships_notify_update`, ddlPayload)
	e.exec(`ALTER TABLE orgperm.memberships ENABLE TRIGGER memberships_notify_update`)
	e.drain()
	c := e.conn()
	e.run(c, "SET session_replication_role = replica")
	e.expectSet(c, `UPDATE orgperm.memberships SET status = 'suspended' WHERE org_id = 'o2'`, payload("memberships", `"members":[["o2","u1"]]`))

	// Down to the first release: its 22 statement-level triggers, no more.
	down, err := p.DownTo(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.drain(); !ddlPayloads(got, len(down)) {
		t.Errorf("payloads of the downgrade: %q, want 1 to %d ddl payloads", got, len(down))
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_trigger WHERE tgname LIKE '%\_notify\_%'`).Scan(&n); err != nil || n != 22 {
		t.Fatalf("%d notify triggers at version 2 (%v), want 22", n, err)
	}
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_event_trigger WHERE evtname LIKE 'orgperm%'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d event triggers at version 2 (%v), want 0", n, err)
	}
	e.expect(`UPDATE orgperm.memberships SET status = 'revoked' WHERE org_id = 'o2'`, payload("memberships", `"members":[["o2","u1"]]`))
	if _, err := p.Up(ctx); err != nil {
		t.Fatal(err)
	}
	if rows := e.inspect(); len(rows) != 0 {
		t.Errorf("inspect after down and up: %q", rows)
	}
}

// ddlPayloads reports whether got is 1 to max ddl payloads and nothing else.
func ddlPayloads(got []string, max int) bool {
	if len(got) == 0 || len(got) > max {
		return false
	}
	for _, p := range got {
		if p != ddlPayload {
			return false
		}
	}
	return true
}
