// Package sidecheck shows what one membership write sends, so that a
// benchmark or the soak can prove, before it times or judges anything, that
// a side is what it is named for: "queue mode" queues, "no triggers" sends
// nothing, "the current triggers" send one payload (docs/DECISIONS.md 63).
// It reads the database only: no listener of the library is involved.
package sidecheck

import (
	"context"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Channel is the invalidation channel the checks listen on.
const Channel = "orgperm_invalidate"

// FlipStatus is a membership UPDATE, without its WHERE clause, that
// always changes the rows it reaches: their status flips between active
// and suspended.
const FlipStatus = `UPDATE orgperm.memberships
	SET status = CASE status WHEN 'active' THEN 'suspended' ELSE 'active' END`

// Flip is FlipStatus of org $1's member $2.
const Flip = FlipStatus + `
	WHERE org_id = $1 AND user_id = $2`

// marker is what Notified sends after the write to know it has seen
// everything the write sent.
const marker = "orgperm-sidecheck-marker"

// QueuedRows makes one Flip of org's member user in a transaction that
// rolls back and returns how many rows of orgperm.queue name the member
// inside that transaction, before any relay can take them: at least one in
// queue mode with the invalidation triggers on, none otherwise. It fails
// when there is no such membership.
func QueuedRows(ctx context.Context, pool *pgxpool.Pool, org, user string) (int, error) {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	tag, err := tx.Exec(ctx, Flip, org, user)
	if err != nil {
		return 0, err
	}
	if tag.RowsAffected() != 1 {
		return 0, fmt.Errorf("sidecheck: no membership %s/%s to write", org, user)
	}
	var n int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM orgperm.queue WHERE strpos(payload, $1) > 0`, strconv.Quote(user)).Scan(&n); err != nil {
		return 0, err
	}
	return n, nil
}

// Notified returns the payloads on Channel that a listener connected to
// url gets from write, run after it LISTENs: everything delivered before a
// marker the listener sends itself once write has returned (a session gets
// its own notifications, after those committed before them).
func Notified(ctx context.Context, url string, write func(context.Context) error) ([]string, error) {
	return notified(ctx, url, write, `SELECT pg_notify($1, $2)`)
}

// Relayed is Notified for the wal transport (orgperm.set_transport('wal')):
// the marker is a logical message, committed with synchronous_commit on
// (which flushes the write's commit before it), and the relay sends it
// after the scopes it decoded from the write. With no relay streaming the
// database's WAL it waits until ctx ends.
func Relayed(ctx context.Context, url string, write func(context.Context) error) ([]string, error) {
	return notified(ctx, url, write,
		`SELECT pg_catalog.set_config('synchronous_commit', 'on', true), pg_catalog.pg_logical_emit_message(true, $1, $2)`)
}

// notified is Notified with the marker sent by markSQL($1 channel, $2
// payload).
func notified(ctx context.Context, url string, write func(context.Context) error, markSQL string) ([]string, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+Channel); err != nil {
		return nil, err
	}
	if err := write(ctx); err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, markSQL, Channel, marker); err != nil {
		return nil, err
	}
	var got []string
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return got, err
		}
		if n.Channel == Channel && n.Payload == marker {
			return got, nil
		}
		got = append(got, n.Payload)
	}
}

// BenchFlip is the statement the write benchmarks time: FlipStatus of
// every member of org "bench" named in the text array $1.
const BenchFlip = FlipStatus + `
	WHERE org_id = 'bench' AND user_id = ANY ($1)`

// Batches returns the members BenchFlip's statement i names, for a
// benchmark over users members "user-0" ... "user-<users-1>" and rows
// members per statement: users i*rows ... i*rows+rows-1, modulo users.
// Every batch is made before Batches returns, so that none is built while
// a clock runs.
func Batches(users, rows int) func(i int) []string {
	batches := map[int][]string{}
	for i := 0; batches[i*rows%users] == nil; i++ {
		ids := make([]string, rows)
		for j := range ids {
			ids[j] = fmt.Sprintf("user-%d", (i*rows+j)%users)
		}
		batches[i*rows%users] = ids
	}
	return func(i int) []string { return batches[i*rows%users] }
}

// Querier is what WAL, WALSlot and NotifyTriggersOn read through: a
// *pgx.Conn or a *pgxpool.Pool.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// WAL reports whether the server behind q can run the wal transport
// (orgperm.set_transport('wal'): wal_level logical, PostgreSQL 14 or
// later), and if not, why, for a test to skip with.
func WAL(ctx context.Context, q Querier) (ok bool, why string, err error) {
	var level string
	var version int
	if err := q.QueryRow(ctx, `SELECT current_setting('wal_level'), current_setting('server_version_num')::int`).Scan(&level, &version); err != nil {
		return false, "", err
	}
	if level != "logical" || version < 140000 {
		return false, fmt.Sprintf("the wal transport needs wal_level logical and PostgreSQL 14 (wal_level %s, version %d)", level, version), nil
	}
	return true, "", nil
}

// NotifyTriggersOn returns how many of the notify triggers
// (orgperm.expected_triggers()) are enabled in any mode: none in wal mode,
// whose writes fire no trigger.
func NotifyTriggersOn(ctx context.Context, q Querier) (int, error) {
	var on int
	err := q.QueryRow(ctx, `SELECT count(*)::int FROM orgperm.expected_triggers() x
		JOIN pg_trigger t ON t.tgname = x.trigger_name AND t.tgrelid = ('orgperm.' || x.table_name)::regclass
		WHERE t.tgenabled <> 'D'`).Scan(&on)
	return on, err
}

// WALSlot reports whether the database behind q has its wal slot
// (orgperm.wal_slot()) and whether a walsender streams it. While the relay
// creates the slot, the creating backend holds it, not a walsender, and
// what commits before the slot is consistent is never decoded: a test
// writing for the relay to see waits for streaming.
func WALSlot(ctx context.Context, q Querier) (exists, streaming bool, err error) {
	err = q.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = orgperm.wal_slot()),
		EXISTS (SELECT FROM pg_replication_slots s JOIN pg_stat_activity a ON a.pid = s.active_pid
		        WHERE s.slot_name = orgperm.wal_slot() AND a.backend_type = 'walsender')`).Scan(&exists, &streaming)
	return exists, streaming, err
}
