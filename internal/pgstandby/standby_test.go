package pgstandby_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/goleak"

	"github.com/orgperm/orgperm/internal/pgstandby"
	"github.com/orgperm/orgperm/pkg/pgtest"
)

func TestMain(m *testing.M) {
	os.Exit(pgtest.Run(m, pgtest.After(func() error { return goleak.Find() })))
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]pgstandby.Config{
		"no primary":     {},
		"negative delay": {PrimaryURL: "postgres://x@127.0.0.1:1/postgres", ApplyDelay: -time.Second},
		"bad url":        {PrimaryURL: "postgres://x@127.0.0.1:99999999/postgres"},
	} {
		if _, err := pgstandby.Start(context.Background(), cfg); !errors.Is(err, pgstandby.ErrInvalidConfig) {
			t.Errorf("%s: got %v, want ErrInvalidConfig", name, err)
		}
	}
}

// TestDelayedStandby starts a standby whose apply is delayed, writes on the
// primary, and checks that the standby shows the write only after the
// delay (a read that sees it must have started at least the delay after
// the commit began) and once it has replayed the commit's WAL position;
// and that it refuses writes.
func TestDelayedStandby(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a standby (-short; make test runs it)")
	}
	const delay = 500 * time.Millisecond
	srv := pgtest.Shared(t)
	dbURL := pgtest.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	started := time.Now()
	sb, err := pgstandby.Start(ctx, pgstandby.Config{PrimaryURL: srv.URL, ApplyDelay: delay})
	if err != nil {
		if errors.Is(err, pgstandby.ErrNoBinaries) {
			t.Skip(err) // no pg_basebackup of the primary\'s major version here
		}
		t.Fatal(err)
	}
	t.Logf("standby started in %v", time.Since(started))
	t.Cleanup(func() {
		if err := sb.Close(); err != nil {
			t.Error(err)
		}
		if err := sb.Close(); err != nil { // idempotent
			t.Error(err)
		}
	})

	primary, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer primary.Close(ctx)
	standbyURL, err := sb.ConnStringFor(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	// The database was created before the base backup: it is there.
	replica, err := pgx.Connect(ctx, standbyURL)
	if err != nil {
		t.Fatal(err)
	}
	defer replica.Close(ctx)

	began := time.Now()
	if _, err := primary.Exec(ctx, `INSERT INTO orgperm.permissions (codename) VALUES ('standby.see_me')`); err != nil {
		t.Fatal(err)
	}
	var lsn string
	if err := primary.QueryRow(ctx, `SELECT pg_catalog.pg_current_wal_insert_lsn()::text`).Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	seen := func() bool {
		var n int
		if err := replica.QueryRow(ctx, `SELECT count(*) FROM orgperm.permissions WHERE codename = 'standby.see_me'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	// Watch the standby until it shows the write: the first read that does
	// must have begun at least the delay after the commit began.
	for {
		asked := time.Now()
		if seen() {
			if asked.Sub(began) < delay {
				t.Fatalf("the standby showed the write %v after its commit began, before the apply delay %v", asked.Sub(began), delay)
			}
			t.Logf("the standby showed the write %v after its commit began", asked.Sub(began))
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the standby never showed the write: %v", ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	if err := sb.WaitReplay(ctx, lsn); err != nil {
		t.Fatal(err)
	}
	if !seen() {
		t.Fatalf("the standby has replayed %s but does not show the write", lsn)
	}
	var replay string
	if replay, err = sb.ReplayLSN(ctx); err != nil || replay == "" {
		t.Fatalf("ReplayLSN: %q, %v", replay, err)
	}

	_, err = replica.Exec(ctx, `INSERT INTO orgperm.permissions (codename) VALUES ('standby.refused')`)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "25006" { // read_only_sql_transaction
		t.Fatalf("a write on the standby: got %v, want SQLSTATE 25006", err)
	}
}

// TestPromote promotes a standby: it then accepts writes, shows every write
// it had replayed, and starts its unlogged tables empty (orgperm.queue, in
// queue mode, holds a row on the primary that the promoted copy does not
// have: docs/DECISIONS.md 53).
func TestPromote(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a standby (-short; make test runs it)")
	}
	t.Parallel()
	srv := pgtest.Shared(t)
	dbURL := pgtest.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sb := pgstandby.StartTB(t, pgstandby.Config{PrimaryURL: srv.URL})

	primary, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer primary.Close(ctx)
	var mode string
	if err := primary.QueryRow(ctx, `SELECT orgperm.set_transport('queue')`).Scan(&mode); err != nil || mode != "queue" {
		t.Fatalf("set_transport('queue') = %q, %v", mode, err)
	}
	// A write whose payload waits in the queue (no relay runs).
	if _, err := primary.Exec(ctx, `INSERT INTO orgperm.permissions (codename) VALUES ('standby.promoted')`); err != nil {
		t.Fatal(err)
	}
	var queued int
	if err := primary.QueryRow(ctx, `SELECT count(*) FROM orgperm.queue`).Scan(&queued); err != nil || queued == 0 {
		t.Fatalf("orgperm.queue on the primary holds %d rows, %v; want the write's payload", queued, err)
	}
	var lsn string
	if err := primary.QueryRow(ctx, `SELECT pg_catalog.pg_current_wal_insert_lsn()::text`).Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	if err := sb.WaitReplay(ctx, lsn); err != nil {
		t.Fatal(err)
	}

	if err := sb.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	promotedURL, err := sb.ConnStringFor(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	promoted, err := pgx.Connect(ctx, promotedURL)
	if err != nil {
		t.Fatal(err)
	}
	defer promoted.Close(ctx)
	var rec bool
	if err := promoted.QueryRow(ctx, `SELECT pg_catalog.pg_is_in_recovery()`).Scan(&rec); err != nil || rec {
		t.Fatalf("pg_is_in_recovery() after Promote = %v, %v; want false", rec, err)
	}
	var n int
	if err := promoted.QueryRow(ctx, `SELECT count(*) FROM orgperm.permissions WHERE codename = 'standby.promoted'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("the promoted standby shows the replayed write %d times, %v; want 1", n, err)
	}
	if err := promoted.QueryRow(ctx, `SELECT count(*) FROM orgperm.queue`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("orgperm.queue on the promoted standby holds %d rows, %v; want 0 (unlogged)", n, err)
	}
	// It accepts writes (a standby refuses them with SQLSTATE 25006).
	if _, err := promoted.Exec(ctx, `INSERT INTO orgperm.permissions (codename) VALUES ('standby.after_promotion')`); err != nil {
		t.Fatalf("a write on the promoted standby: %v", err)
	}
}
