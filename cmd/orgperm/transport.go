package main

import (
	"context"
	"fmt"
	"io"

	"github.com/orgperm/orgperm/pkg/relay"
)

// Transport modes, as orgperm.transport() names them (docs/DECISIONS.md
// 53); modeUnknown when orgperm.send has a body set_transport did not
// install (orgperm.inspect() says so).
const (
	modeNotify  = "notify"
	modeQueue   = "queue"
	modeUnknown = "unknown"
)

// transportJSON is doctor's view of the transport: how payloads leave the
// writers' transactions, and in queue mode whether they leave the queue.
type transportJSON struct {
	// Mode is notify, queue or unknown; notify before migration 6.
	Mode string `json:"mode"`
	// QueueRows counts the rows waiting in orgperm.queue; null before
	// migration 6. The table has no time column, so the age of the oldest
	// row is not known (docs/DECISIONS.md 55).
	QueueRows *int64 `json:"queue_rows"`
	// RelayLeader is the session holding the relay's advisory lock
	// (relay.LockID), null when none does.
	RelayLeader *relayLeaderJSON `json:"relay_leader"`
}

type relayLeaderJSON struct {
	PID         int32   `json:"pid"`
	Application string  `json:"application_name"`
	Client      string  `json:"client"`
	Since       *string `json:"since"`
}

// transport fills d.Transport and adds its findings: rows waiting while no
// relay leads is an error in either mode (after a switch back to notify,
// proofs still go through the queue while it holds rows); queue mode with
// no relay leading, the queue empty, is a warning.
func (c *cli) transport(ctx context.Context, d *doctorJSON, add func(sev, obj, format string, args ...any)) error {
	tr := &transportJSON{Mode: modeNotify}
	d.Transport = tr
	var hasTransport, hasQueue bool
	if err := c.pool.QueryRow(ctx, `SELECT to_regprocedure('orgperm.transport()') IS NOT NULL, to_regclass('orgperm.queue') IS NOT NULL`).
		Scan(&hasTransport, &hasQueue); err != nil {
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

	// Only the schema owner (or a superuser) may read the queue; doctor
	// already needs one to read the migrations' version table.
	var rows int64
	if err := c.pool.QueryRow(ctx, `SELECT count(*) FROM orgperm.queue`).Scan(&rows); err != nil {
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
	case tr.RelayLeader != nil:
	case rows > 0:
		add(sevError, "orgperm.queue", "%s waiting and no relay holds the relay lock: invalidations are not delivered, proofs of delivery do not come back and every instance's cache bypasses itself (run an app instance with membership.Config{Relay: true})",
			plural(*tr.QueueRows, "row"))
	case tr.Mode == modeQueue:
		add(sevWarning, "relay", "queue mode and no relay holds the relay lock: the next write's invalidation will wait in orgperm.queue and every cache will bypass itself (run an app instance with membership.Config{Relay: true})")
	}
	return nil
}

// printTransport is doctor's text for d.Transport.
func printTransport(w io.Writer, tr *transportJSON) {
	fmt.Fprintf(w, "transport:\t%s\n", tr.Mode)
	if tr.QueueRows != nil {
		fmt.Fprintf(w, "orgperm.queue:\t%s waiting (age not recorded)\n", plural(*tr.QueueRows, "row"))
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
	case tr.QueueRows != nil || tr.Mode == modeQueue:
		fmt.Fprintf(w, "relay:\tnone: no session holds the relay lock\n")
	}
}

// plural is "1 row", "2 rows".
func plural(n int64, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
