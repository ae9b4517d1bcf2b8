package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/orgperm/orgperm/pkg/relay"
)

// Transport modes, as orgperm.transport() names them (docs/DECISIONS.md
// 53); modeUnknown when orgperm.send has a body set_transport did not
// install (orgperm.inspect() says so).
const (
	modeNotify  = "notify"
	modeQueue   = "queue"
	modeWAL     = "wal"
	modeUnknown = "unknown"
)

// transportJSON is doctor's view of the transport: how payloads leave the
// writers' transactions, and in queue mode whether they leave the queue.
type transportJSON struct {
	// Mode is notify, queue, wal or unknown; notify before migration 6.
	Mode string `json:"mode"`
	// QueueRows counts the rows waiting in orgperm.queue; null before
	// migration 6.
	QueueRows *int64 `json:"queue_rows"`
	// OldestAge is how long the oldest waiting row has waited, in seconds,
	// since its writing statement began; null when nothing waits, and
	// before migration 7 (whose queue rows carry queued_at).
	OldestAge *float64 `json:"oldest_row_age_seconds"`
	// RelayLeader is the session holding the relay's advisory lock
	// (relay.LockID), null when none does.
	RelayLeader *relayLeaderJSON `json:"relay_leader"`
	// Slot is the wal transport's replication slot (orgperm.wal_slot()),
	// null when the database has none.
	Slot *walSlotJSON `json:"wal_slot"`
}

// walSlotJSON is the wal transport's replication slot, as
// pg_replication_slots shows it.
type walSlotJSON struct {
	Name string `json:"name"`
	// Active: a relay streams it now.
	Active bool `json:"active"`
	// WALStatus is pg_replication_slots.wal_status: reserved, extended,
	// unreserved or lost (the WAL it needs is gone).
	WALStatus string `json:"wal_status"`
	// RetainedBytes is the WAL the server keeps for it.
	RetainedBytes int64 `json:"retained_bytes"`
	// Lost: PostgreSQL invalidated it (wal_status lost, or an
	// invalidation reason where the server names one).
	Lost bool `json:"lost"`
}

type relayLeaderJSON struct {
	PID         int32   `json:"pid"`
	Application string  `json:"application_name"`
	Client      string  `json:"client"`
	Since       *string `json:"since"`
}

// stuckAfter is how long a row may wait while a relay leads before doctor
// calls the relay stuck: far above a round (milliseconds) and above the
// relay's statement deadline (5 s), which a round cut once doubles.
const stuckAfter = 30 * time.Second

// transport fills d.Transport and adds its findings: rows waiting while no
// relay leads is an error in either mode (after a switch back to notify,
// proofs still go through the queue while it holds rows), and so is a row
// older than stuckAfter while one leads; queue mode with no relay leading,
// the queue empty, is a warning.
func (c *cli) transport(ctx context.Context, d *doctorJSON, add func(sev, obj, format string, args ...any)) error {
	tr := &transportJSON{Mode: modeNotify}
	d.Transport = tr
	var hasTransport, hasQueue, hasQueuedAt bool
	if err := c.pool.QueryRow(ctx, `SELECT to_regprocedure('orgperm.transport()') IS NOT NULL, to_regclass('orgperm.queue') IS NOT NULL,
		EXISTS (SELECT FROM pg_attribute WHERE attrelid = to_regclass('orgperm.queue') AND attname = 'queued_at' AND NOT attisdropped)`).
		Scan(&hasTransport, &hasQueue, &hasQueuedAt); err != nil {
		return fmt.Errorf("doctor: transport: %w", err)
	}
	if hasTransport {
		var mode *string
		if err := c.pool.QueryRow(ctx, `SELECT orgperm.transport()`).Scan(&mode); err != nil {
			return fmt.Errorf("doctor: orgperm.transport(): %w", err)
		}
		tr.Mode = modeUnknown
		if mode != nil {
			tr.Mode = *mode
		}
	}
	if !hasQueue {
		return nil
	}
	slot, ok, err := relay.FindWALSlot(ctx, c.pool)
	if err != nil {
		return fmt.Errorf("doctor: %w", err)
	}
	if ok {
		tr.Slot = &walSlotJSON{Name: slot.Name, Active: slot.Active, WALStatus: slot.WALStatus, RetainedBytes: slot.RetainedBytes, Lost: slot.Lost}
	}

	// Only the schema owner (or a superuser) may read the queue; doctor
	// already needs one to read the migrations' version table.
	var rows int64
	query := `SELECT count(*), NULL::float8 FROM orgperm.queue`
	if hasQueuedAt {
		query = `SELECT count(*), extract(epoch FROM clock_timestamp() - min(queued_at))::float8 FROM orgperm.queue`
	}
	if err := c.pool.QueryRow(ctx, query).Scan(&rows, &tr.OldestAge); err != nil {
		return fmt.Errorf("doctor: orgperm.queue: %w", err)
	}
	tr.QueueRows = &rows

	leader, ok, err := relay.FindLeader(ctx, c.pool)
	if err != nil {
		return fmt.Errorf("doctor: relay lock: %w", err)
	}
	if ok {
		client := leader.ClientAddr
		if client == "" {
			client = "local socket"
		}
		tr.RelayLeader = &relayLeaderJSON{PID: leader.PID, Application: leader.ApplicationName, Client: client, Since: jtime(leader.Since)}
	}

	switch {
	case tr.RelayLeader != nil && tr.OldestAge != nil && *tr.OldestAge >= stuckAfter.Seconds():
		add(sevError, "orgperm.queue", "the oldest of %s has waited %.0f s while pid %d holds the relay lock: the relay is stuck or too slow, and every instance's cache bypasses itself meanwhile (see its orgperm_relay_* metrics and errors)",
			plural(rows, "row"), *tr.OldestAge, tr.RelayLeader.PID)
	case tr.RelayLeader != nil:
	case rows > 0:
		add(sevError, "orgperm.queue", "%s waiting and no relay holds the relay lock: invalidations are not delivered, proofs of delivery do not come back and every instance's cache bypasses itself (run an app instance with membership.Config{Relay: true})",
			plural(*tr.QueueRows, "row"))
	case tr.Mode == modeQueue:
		add(sevWarning, "relay", "queue mode and no relay holds the relay lock: the next write's invalidation will wait in orgperm.queue and every cache will bypass itself (run an app instance with membership.Config{Relay: true})")
	case tr.Mode == modeWAL:
		add(sevWarning, "relay", "wal mode and no relay holds the relay lock: nothing decodes the WAL, and every cache bypasses itself (run an app instance with membership.Config{Relay: true}; its role needs REPLICATION)")
	}
	switch sl := tr.Slot; {
	case sl != nil && sl.Lost && tr.Mode == modeWAL:
		add(sevError, "replication slot "+sl.Name, "lost: the server removed WAL it needed (max_slot_wal_keep_size), so writes in it were never decoded, and every cache bypasses itself until a relay drops the slot and makes it anew, evicting everything (a leading relay does so within a second; see orgperm_relay_wal_slots_created_total)")
	case sl == nil && tr.Mode == modeWAL && tr.RelayLeader != nil:
		add(sevWarning, "relay", "wal mode, and pid %d leads the relay but has no replication slot: unless it is making it this moment, it cannot (its role needs REPLICATION, or max_replication_slots is used up; see its log and orgperm_relay_errors_total), nothing decodes the WAL and every cache bypasses itself",
			tr.RelayLeader.PID)
	case sl != nil && sl.Lost:
		add(sevWarning, "replication slot "+sl.Name, "lost (the server removed WAL it needed) and unused: the transport is %s: SELECT pg_drop_replication_slot('%s')", tr.Mode, sl.Name)
	case sl != nil && tr.Mode != modeWAL && tr.RelayLeader == nil:
		add(sevWarning, "replication slot "+sl.Name, "the transport is %s, and the wal transport's slot keeps %d bytes of WAL with no relay to drop it: SELECT pg_drop_replication_slot('%s')", tr.Mode, sl.RetainedBytes, sl.Name)
	}
	if tr.Mode == modeWAL {
		var keep string
		if err := c.pool.QueryRow(ctx, `SELECT current_setting('max_slot_wal_keep_size')`).Scan(&keep); err != nil {
			return fmt.Errorf("doctor: max_slot_wal_keep_size: %w", err)
		}
		if keep == "-1" {
			add(sevWarning, "max_slot_wal_keep_size", "is -1: should the relay stop, the wal slot keeps the server's WAL without bound, until its disk is full; set a bound (ALTER SYSTEM SET max_slot_wal_keep_size = '10GB'; SELECT pg_reload_conf()): past it PostgreSQL invalidates the slot, and the next relay makes it anew and evicts every cache")
		}
	}
	return nil
}

// printTransport is doctor's text for d.Transport.
func printTransport(w io.Writer, tr *transportJSON) {
	fmt.Fprintf(w, "transport:\t%s\n", tr.Mode)
	switch {
	case tr.QueueRows == nil:
	case tr.OldestAge != nil:
		fmt.Fprintf(w, "orgperm.queue:\t%s waiting, the oldest for %.1f s\n", plural(*tr.QueueRows, "row"), *tr.OldestAge)
	default:
		fmt.Fprintf(w, "orgperm.queue:\t%s waiting\n", plural(*tr.QueueRows, "row"))
	}
	switch l := tr.RelayLeader; {
	case l != nil:
		since := "-"
		if l.Since != nil {
			since = *l.Since
		}
		app := l.Application
		if app == "" {
			app = "-"
		}
		fmt.Fprintf(w, "relay:\tpid %d (%s) from %s since %s holds the relay lock\n", l.PID, app, l.Client, since)
	case tr.QueueRows != nil || tr.Mode == modeQueue || tr.Mode == modeWAL:
		fmt.Fprintf(w, "relay:\tnone: no session holds the relay lock\n")
	}
	if sl := tr.Slot; sl != nil {
		state := "idle"
		if sl.Active {
			state = "streamed"
		}
		fmt.Fprintf(w, "wal slot:\t%s, %s, WAL %s, %d bytes kept\n", sl.Name, state, sl.WALStatus, sl.RetainedBytes)
	}
}

// plural is "1 row", "2 rows".
func plural(n int64, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
