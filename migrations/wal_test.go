package migrations_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/orgperm/orgperm/internal/sidecheck"
	"github.com/orgperm/orgperm/pkg/relay"
)

// walWant is what the wal transport sends where it differs from the
// triggers (TestTriggerNotifications' want): a deleted row's cascades are
// decoded row by row, each within its org. Every entry covers the
// triggers' payloads. (UPDATEs that change nothing that matters send
// nothing, as the triggers: set_transport('wal') gives memberships and
// membership_roles REPLICA IDENTITY FULL, so the WAL holds the old row.)
var walWant = map[string][]string{
	"memberships delete": {payload("memberships", `"members":[["o1","u1"],["o1","u2"]]`),
		payload("membership_roles", `"members":[["o1","u1"],["o1","u2"]]`)},
	"roles delete system role": {all("roles"), payload("membership_roles", `"members":[["o1","u1"]]`)},
	"roles delete org role": {payload("roles", `"orgs":["o1"]`),
		payload("membership_roles", `"members":[["o1","u1"],["o1","u2"]]`), payload("data_access", `"orgs":["o1"]`)},
}

func all(src string) string { return payload(src, `"all":true`) }

// setupWAL is setupNotify in wal mode, with a relay streaming the
// database's WAL. It skips where the server cannot decode (wal_level not
// logical, PostgreSQL before 14).
func setupWAL(t *testing.T) *env {
	t.Helper()
	e := setupNotify(t)
	ok, why, err := sidecheck.WAL(e.ctx, e.pool)
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		// Refused, and nothing changed.
		_, err := e.pool.Exec(e.ctx, `SELECT orgperm.set_transport('wal')`)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "55000" {
			t.Fatalf("set_transport('wal') where %s: %v; want SQLSTATE 55000", why, err)
		}
		var mode string
		if err := e.pool.QueryRow(e.ctx, `SELECT orgperm.transport()`).Scan(&mode); err != nil || mode != "notify" {
			t.Fatalf("after the refusal the transport is %q (%v)", mode, err)
		}
		t.Skip(why)
	}
	var got string
	if err := e.pool.QueryRow(e.ctx, `SELECT orgperm.set_transport('wal')`).Scan(&got); err != nil || got != "wal" {
		t.Fatalf("set_transport('wal') = %q, %v", got, err)
	}
	startWALRelay(t, e.ctx, e.url, time.Millisecond)
	e.drain() // the switch notifies directly
	e.wal = true
	e.drain()
	return e
}

// startWALRelay runs a relay on url until the test ends and waits until it
// streams.
func startWALRelay(t testing.TB, ctx context.Context, url string, interval time.Duration) *relay.Relay {
	t.Helper()
	r, err := relay.New(relay.Config{
		Connect:  func(ctx context.Context) (*pgx.Conn, error) { return pgx.Connect(ctx, url) },
		Interval: interval,
	})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close(context.Background())
		// The database's drop drops the slot (pgcluster.DropDatabase).
		if err := r.Stop(context.Background()); err != nil {
			t.Errorf("stop the relay: %v", err)
		}
	})
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	for {
		_, streaming, err := sidecheck.WALSlot(ctx, conn)
		if err != nil {
			t.Fatal(err)
		}
		if streaming {
			return r
		}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			t.Fatal("the relay did not start streaming")
		}
		time.Sleep(5 * time.Millisecond) // polling for the relay's slot
	}
}
