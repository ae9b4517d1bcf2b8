package pgtest_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5"

	"github.com/orgperm/orgperm/pkg/pgtest"
)

var invoices = fstest.MapFS{
	"00001_invoices.sql": {Data: []byte(`-- +goose Up
CREATE TABLE invoices (id bigint PRIMARY KEY, org_id text NOT NULL);
-- +goose Down
DROP TABLE invoices;
`)},
}

// count returns the number of rows of table in the database url names.
func count(t *testing.T, url, table string) (int, error) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	err = conn.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n)
	return n, err
}

// TestNewDatabase: every database holds orgperm's schema and is a fresh
// one: what one test writes, the next does not see.
func TestNewDatabase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := pgtest.NewPool(t)
	if _, err := a.Exec(ctx, `INSERT INTO orgperm.permissions (codename) VALUES ('billing.view_invoice')`); err != nil {
		t.Fatal(err)
	}
	if n, err := count(t, pgtest.NewDatabase(t), "orgperm.permissions"); err != nil || n != 0 {
		t.Fatalf("a second database: %d permissions, %v; want a fresh one (0)", n, err)
	}
	if n, err := count(t, pgtest.Shared(t).NewEmptyDatabase(t), "orgperm.permissions"); err == nil {
		t.Fatalf("an empty database has orgperm.permissions (%d rows)", n)
	}
}

// TestWithMigrations: the app's goose migrations are in every database,
// after orgperm's; a migrate function of the app's own is used instead of
// goose; a failing migration fails the database's creation.
func TestWithMigrations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	shared := pgtest.Shared(t).URL

	srv := pgtest.NewServer(shared, pgtest.WithMigrations(invoices, nil))
	url := srv.NewDatabase(t)
	for _, table := range []string{"invoices", "goose_db_version", "orgperm.permissions"} {
		if _, err := count(t, url, table); err != nil {
			t.Errorf("with the app's goose migrations: %s: %v", table, err)
		}
	}
	if _, err := count(t, pgtest.NewDatabase(t), "invoices"); err == nil {
		t.Error("the shared server's databases (no WithMigrations) have the app's table")
	}

	var ran bool
	ownFS := fstest.MapFS{"own_tool.sql": {Data: []byte("CREATE TABLE own_tool (id int)")}}
	own := pgtest.NewServer(shared, pgtest.WithMigrations(ownFS, func(ctx context.Context, db *sql.DB) error {
		ran = true
		_, err := db.ExecContext(ctx, `CREATE TABLE own_tool (id int)`)
		return err
	}))
	if _, err := count(t, own.NewDatabase(t), "own_tool"); err != nil || !ran {
		t.Errorf("with a migrate function: own_tool: %v (ran: %v)", err, ran)
	}

	broken := fstest.MapFS{"00001_broken.sql": {Data: []byte("-- +goose Up\nCREATE TABLE broken (;\n")}}
	bad := pgtest.NewServer(shared, pgtest.WithMigrations(broken, nil))
	if _, drop, err := bad.CreateDatabase(ctx); err == nil || !strings.Contains(err.Error(), "app's migrations") {
		if drop != nil {
			_ = drop()
		}
		t.Fatalf("CreateDatabase with a broken app migration: %v; want an error about the app's migrations", err)
	}
}

// TestURLEnv: with TEST_DATABASE_URL set, the test binary uses that server
// and starts no cluster; DATABASE_URL is not read.
func TestURLEnv(t *testing.T) {
	if os.Getenv("PGTEST_CHILD") == "1" {
		want := os.Getenv(pgtest.URLEnv)
		if got := pgtest.Shared(t).URL; got != want {
			t.Fatalf("Shared(t).URL = %q; want %s's %q", got, pgtest.URLEnv, want)
		}
		if n, err := count(t, pgtest.NewDatabase(t), "orgperm.permissions"); err != nil || n != 0 {
			t.Fatalf("a database on the %s server: %d, %v", pgtest.URLEnv, n, err)
		}
		return
	}
	t.Parallel()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestURLEnv$", "-test.count=1")
	cmd.Env = append(os.Environ(), "PGTEST_CHILD=1",
		pgtest.URLEnv+"="+pgtest.Shared(t).URL,
		"DATABASE_URL=postgres://nobody@127.0.0.1:1/none?connect_timeout=1",
		"ORGPERM_PG_BIN="+t.TempDir()) // a cluster could not start: no initdb there
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) || err != nil {
		t.Fatalf("the test binary with %s set: %v\n%s", pgtest.URLEnv, err, out)
	}
}
