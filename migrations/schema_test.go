package migrations_test

import (
	"context"
	"database/sql"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/orgperm/orgperm/migrations"
	"github.com/orgperm/orgperm/pkg/pgtest"
)

// TestBadRowsRejected: every kind of bad row is rejected by a named
// constraint, and a statement with one bad row among good ones writes none.
func TestBadRowsRejected(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.exec(fixture)
	e.drain()
	long := strings.Repeat("x", 129)
	cases := []struct {
		name       string
		sql        string
		constraint string
		table      string
	}{
		{"malformed codename", `INSERT INTO orgperm.permissions (codename) VALUES ('ok.view_a'), ('Billing View')`, "permissions_codename_format", "permissions"},
		{"codename without app", `INSERT INTO orgperm.permissions (codename) VALUES ('view_invoice')`, "permissions_codename_format", "permissions"},
		{"over-long codename", `INSERT INTO orgperm.permissions (codename) VALUES ('a.` + strings.Repeat("b", 99) + `')`, "permissions_codename_format", "permissions"},
		{"unknown status", `INSERT INTO orgperm.memberships (org_id, user_id, status) VALUES ('o9', 'u1', 'active'), ('o9', 'u2', 'banned')`, "memberships_status_valid", "memberships"},
		{"window ends before it starts", `INSERT INTO orgperm.memberships (org_id, user_id, valid_from, valid_until) VALUES ('o9', 'u1', '2026-02-01', '2026-01-01')`, "memberships_window_valid", "memberships"},
		{"empty window", `INSERT INTO orgperm.memberships (org_id, user_id, valid_from, valid_until) VALUES ('o9', 'u1', '2026-02-01', '2026-02-01')`, "memberships_window_valid", "memberships"},
		{"window update", `UPDATE orgperm.memberships SET valid_from = '2026-02-01', valid_until = '2026-01-01'`, "memberships_window_valid", "memberships"},
		{"empty org id", `INSERT INTO orgperm.memberships (org_id, user_id) VALUES ('', 'u1')`, "ext_id_valid", "memberships"},
		{"empty user id", `INSERT INTO orgperm.memberships (org_id, user_id) VALUES ('o9', '')`, "ext_id_valid", "memberships"},
		{"over-long user id", `INSERT INTO orgperm.memberships (org_id, user_id) VALUES ('o9', '` + long + `')`, "ext_id_valid", "memberships"},
		{"control character in id", `INSERT INTO orgperm.memberships (org_id, user_id) VALUES ('o9', E'u\n1')`, "ext_id_valid", "memberships"},
		{"role of another org assigned", `INSERT INTO orgperm.membership_roles (org_id, user_id, role_id) VALUES ('o1', 'u2', 2), ('o1', 'u2', 3)`, "role_org_mismatch", "membership_roles"},
		{"role assignment moved to another org", `UPDATE orgperm.membership_roles SET role_id = 3 WHERE user_id = 'u2'`, "role_org_mismatch", "membership_roles"},
		{"role moved to another org", `UPDATE orgperm.roles SET org_id = 'o2' WHERE id = 1`, "role_org_immutable", "roles"},
		{"role made a system role", `UPDATE orgperm.roles SET org_id = NULL WHERE id = 1`, "role_org_immutable", "roles"},
		{"role for a non-member", `INSERT INTO orgperm.membership_roles (org_id, user_id, role_id) VALUES ('o1', 'nobody', 1)`, "membership_roles_org_id_user_id_fkey", "membership_roles"},
		{"empty role name", `INSERT INTO orgperm.roles (org_id, name) VALUES ('o1', '')`, "roles_name_valid", "roles"},
		{"duplicate role name", `INSERT INTO orgperm.roles (org_id, name) VALUES ('o1', 'admin')`, "roles_org_name_key", "roles"},
		{"duplicate system role name", `INSERT INTO orgperm.roles (org_id, name) VALUES (NULL, 'viewer')`, "roles_system_name_key", "roles"},
		{"unknown permission granted", `INSERT INTO orgperm.role_permissions (role_id, codename) VALUES (1, 'billing.view_invoice'), (1, 'no.such')`, "role_permissions_codename_fkey", "role_permissions"},
		{"data grant without subject", `INSERT INTO orgperm.data_access (org_id, resource_type) VALUES ('o1', 'invoice')`, "data_access_one_subject", "data_access"},
		{"data grant with two subjects", `INSERT INTO orgperm.data_access (org_id, user_id, role_id, resource_type) VALUES ('o1', 'u1', 1, 'invoice')`, "data_access_one_subject", "data_access"},
		{"data grant to a role of another org", `INSERT INTO orgperm.data_access (org_id, role_id, resource_type) VALUES ('o2', 1, 'invoice')`, "role_org_mismatch", "data_access"},
		{"data grant with bad resource type", `INSERT INTO orgperm.data_access (org_id, user_id, resource_type) VALUES ('o1', 'u1', 'Invoice!')`, "data_access_resource_type_format", "data_access"},
		{"data grant with empty resource id", `INSERT INTO orgperm.data_access (org_id, user_id, resource_type, resource_id) VALUES ('o1', 'u1', 'invoice', '')`, "ext_id_valid", "data_access"},
	}
	for _, tc := range cases {
		before := tableDigest(e, tc.table)
		_, err := e.pool.Exec(e.ctx, tc.sql)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) {
			t.Errorf("%s: got %v, want a PostgreSQL error", tc.name, err)
			continue
		}
		if pgErr.ConstraintName != tc.constraint {
			t.Errorf("%s: constraint %q (%s), want %q", tc.name, pgErr.ConstraintName, pgErr.Message, tc.constraint)
		}
		if after := tableDigest(e, tc.table); after != before {
			t.Errorf("%s: table %s changed", tc.name, tc.table)
		}
	}
	if got := e.drain(); len(got) != 0 {
		t.Errorf("rejected writes sent notifications: %q", got)
	}
}

// tableDigest is an md5 of a table's contents, to show nothing was written.
func tableDigest(e *env, table string) string {
	e.t.Helper()
	var d string
	err := e.pool.QueryRow(e.ctx, "SELECT coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), '') FROM orgperm."+table+" t").Scan(&d)
	if err != nil {
		e.t.Fatal(err)
	}
	return d
}

// TestMigrateFromGo: Up twice is a no-op, Down removes orgperm entirely, and
// an app's own goose table is never touched.
func TestMigrateFromGo(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := sql.Open("pgx", pgtest.Shared(t).NewEmptyDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	// The app's own goose migrations, with goose's default table and lock.
	app, err := goose.NewProvider(goose.DialectPostgres, db, fstest.MapFS{
		"00001_app.sql": {Data: []byte("-- +goose Up\nCREATE TABLE app_things (id int);\n-- +goose Down\nDROP TABLE app_things;\n")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := app.Up(ctx); err != nil {
		t.Fatal(err)
	}
	appTable := func() string {
		var s string
		if err := db.QueryRowContext(ctx, "SELECT string_agg(version_id::text || is_applied::text, ',' ORDER BY id) FROM goose_db_version").Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	before := appTable()

	files, err := fs.Glob(migrations.FS, "*.sql")
	if err != nil {
		t.Fatal(err)
	}
	n := len(files)
	res, err := migrations.Up(ctx, db)
	if err != nil || len(res) != n {
		t.Fatalf("first Up: %d results, %v; want %d, nil", len(res), err, n)
	}
	res, err = migrations.Up(ctx, db)
	if err != nil || len(res) != 0 {
		t.Fatalf("second Up: %d results, %v; want a no-op", len(res), err)
	}
	st, err := migrations.Status(ctx, db)
	if err != nil || len(st) != n {
		t.Fatalf("Status: %v, %v", st, err)
	}
	for _, s := range st {
		if s.State != goose.StateApplied {
			t.Fatalf("Status: %v not applied", s.Source.Path)
		}
	}
	if _, err := migrations.DownTo(ctx, db, 0); err != nil {
		t.Fatal(err)
	}
	var schemas int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM pg_namespace WHERE nspname = 'orgperm'").Scan(&schemas); err != nil || schemas != 0 {
		t.Fatalf("after DownTo(0): %d orgperm schemas, %v", schemas, err)
	}
	if _, err := migrations.Up(ctx, db); err != nil {
		t.Fatal(err)
	}
	if after := appTable(); after != before {
		t.Fatalf("app's goose_db_version changed: %q -> %q", before, after)
	}
}

// TestGooseCLI: the stock goose CLI runs the migrations directory up, down
// and up again on an empty database.
func TestGooseCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the goose CLI (-short; make test runs it)")
	}
	t.Parallel()
	bin := gooseBinary(t)
	url := pgtest.Shared(t).NewEmptyDatabase(t)
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"-dir", ".", "-table", migrations.VersionTable, "postgres", url}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("goose %v: %v\n%s", args, err, out)
		}
	}
	run("up")
	run("down-to", "0")
	run("up")
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM pg_trigger WHERE tgname LIKE '%_notify_%'").Scan(&n); err != nil || n != 28 {
		t.Fatalf("%d notify triggers after goose up, %v; want 28", n, err)
	}
	// The Go entry point sees the CLI's work as done.
	if res, err := migrations.Up(context.Background(), db); err != nil || len(res) != 0 {
		t.Fatalf("Go Up after CLI up: %d results, %v", len(res), err)
	}
}

// gooseBinary returns the goose CLI: from PATH, or built once into the user
// cache directory from the module proxy (Postgres driver only).
func gooseBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("goose"); err == nil {
		return p
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "orgperm", "goose-v3.29.0")
	bin := filepath.Join(dir, "goose")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	cmd := exec.Command("go", "install", "-tags",
		"no_clickhouse no_libsql no_mssql no_mysql no_sqlite3 no_vertica no_ydb no_duckdb no_starrocks no_spanner",
		"github.com/pressly/goose/v3/cmd/goose@v3.29.0")
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the goose CLI: %v\n%s", err, out)
	}
	return bin
}
