package sidecheck_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orgperm/orgperm/internal/sidecheck"
	"github.com/orgperm/orgperm/pkg/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

// TestSides: the checks tell the sides apart on real databases: the
// triggers notify one payload naming the member and queue nothing; with the
// triggers off nothing is sent or queued; in queue mode the write is
// queued inside its transaction and nothing is notified.
func TestSides(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	side := func(t *testing.T, setup string) (string, *pgxpool.Pool) {
		url := pgtest.NewDatabase(t)
		pool, err := pgxpool.New(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		if _, err := pool.Exec(ctx, `INSERT INTO orgperm.memberships (org_id, user_id) VALUES ('bench', 'user-0'), ('bench', 'user-1')`); err != nil {
			t.Fatal(err)
		}
		if setup != "" {
			if _, err := pool.Exec(ctx, setup); err != nil {
				t.Fatal(err)
			}
		}
		return url, pool
	}
	flip := func(pool *pgxpool.Pool) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := pool.Exec(ctx, sidecheck.Flip, "bench", "user-0")
			return err
		}
	}
	for _, tc := range []struct {
		name, setup string
		notified    int // payloads naming user-0
		queued      bool
	}{
		{"notify", "", 1, false},
		{"off", "ALTER TABLE orgperm.memberships DISABLE TRIGGER memberships_notify_update", 0, false},
		{"queue", "SELECT orgperm.set_transport('queue')", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url, pool := side(t, tc.setup)
			got, err := sidecheck.Notified(ctx, url, flip(pool))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.notified || (tc.notified == 1 && !strings.Contains(got[0], `"user-0"`)) {
				t.Errorf("Notified = %q, want %d payloads naming user-0", got, tc.notified)
			}
			n, err := sidecheck.QueuedRows(ctx, pool, "bench", "user-0")
			if err != nil {
				t.Fatal(err)
			}
			if (n > 0) != tc.queued {
				t.Errorf("QueuedRows = %d, want queued %v", n, tc.queued)
			}
			// The write was rolled back: a second look finds the same.
			if m, err := sidecheck.QueuedRows(ctx, pool, "bench", "user-0"); err != nil || m != n {
				t.Errorf("QueuedRows again = %d, %v; want %d", m, err, n)
			}
		})
	}
	t.Run("no such member", func(t *testing.T) {
		_, pool := side(t, "")
		if _, err := sidecheck.QueuedRows(ctx, pool, "bench", "nobody"); err == nil {
			t.Error("QueuedRows of a missing membership: no error")
		}
	})
}

// TestBatches: statement i names rows consecutive members from i*rows,
// wrapping at users.
func TestBatches(t *testing.T) {
	batch := sidecheck.Batches(5, 3)
	for i, want := range []string{"user-0 user-1 user-2", "user-3 user-4 user-0", "user-1 user-2 user-3"} {
		if got := strings.Join(batch(i), " "); got != want {
			t.Errorf("batch(%d) = %s, want %s", i, got, want)
		}
	}
}

// TestNotifyTriggersOn: every notify trigger counts while the triggers
// notify, one disabled by hand counts no more, and in wal mode none counts.
func TestNotifyTriggersOn(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := pgxpool.New(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var all int
	if err := pool.QueryRow(ctx, `SELECT count(*)::int FROM orgperm.expected_triggers()`).Scan(&all); err != nil {
		t.Fatal(err)
	}
	if on, err := sidecheck.NotifyTriggersOn(ctx, pool); err != nil || on != all || all == 0 {
		t.Fatalf("notify mode: %d of %d triggers on (%v)", on, all, err)
	}
	if _, err := pool.Exec(ctx, `ALTER TABLE orgperm.memberships DISABLE TRIGGER memberships_notify_update`); err != nil {
		t.Fatal(err)
	}
	if on, err := sidecheck.NotifyTriggersOn(ctx, pool); err != nil || on != all-1 {
		t.Fatalf("one disabled: %d of %d triggers on (%v)", on, all, err)
	}
	if ok, why, err := sidecheck.WAL(ctx, pool); err != nil {
		t.Fatal(err)
	} else if !ok {
		t.Skip(why)
	}
	if _, err := pool.Exec(ctx, `SELECT orgperm.set_transport('wal')`); err != nil {
		t.Fatal(err)
	}
	if on, err := sidecheck.NotifyTriggersOn(ctx, pool); err != nil || on != 0 {
		t.Fatalf("wal mode: %d triggers on (%v)", on, err)
	}
	if exists, streaming, err := sidecheck.WALSlot(ctx, pool); err != nil || exists || streaming {
		t.Fatalf("wal mode, no relay: slot exists %v, streamed %v (%v)", exists, streaming, err)
	}
}
