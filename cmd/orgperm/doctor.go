package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/orgperm/orgperm/migrations"
)

// notifyTriggers are the invalidation triggers of sql/triggers.sql, by
// table: the cache is only correct while every one is present and enabled.
// doctor checks them itself when the database has no orgperm.inspect(),
// and the audit triggers in any case.
var notifyTriggers = map[string][]string{
	"permissions":      {"update", "delete", "truncate"},
	"roles":            {"update", "delete", "truncate"},
	"role_permissions": {"insert", "update", "delete", "truncate"},
	"memberships":      {"insert", "update", "delete", "truncate"},
	"membership_roles": {"insert", "update", "delete", "truncate"},
	"data_access":      {"insert", "update", "delete", "truncate"},
}

// auditVersion is the migration that installs the audit trail.
const auditVersion = 5

// auditTriggers are the audit trail's triggers (sql/audit.sql): every
// event of every table.
var auditTriggers = map[string][]string{
	"permissions":      {"insert", "update", "delete", "truncate"},
	"roles":            {"insert", "update", "delete", "truncate"},
	"role_permissions": {"insert", "update", "delete", "truncate"},
	"memberships":      {"insert", "update", "delete", "truncate"},
	"membership_roles": {"insert", "update", "delete", "truncate"},
	"data_access":      {"insert", "update", "delete", "truncate"},
}

// Severities of a finding.
const (
	sevError   = "error"
	sevWarning = "warning"
)

type finding struct {
	Severity string `json:"severity"`
	Object   string `json:"object"`
	Problem  string `json:"problem"`
}

type triggerJSON struct {
	Table   string `json:"table"`
	Name    string `json:"name"`
	Enabled string `json:"enabled"`
}

type listenerJSON struct {
	PID    int32   `json:"pid"`
	Client string  `json:"client"`
	Since  *string `json:"since"`
}

type doctorJSON struct {
	Server         string         `json:"server"`
	Database       string         `json:"database"`
	SchemaVersion  int64          `json:"schema_version"`
	Pending        []int64        `json:"pending_migrations"`
	SchemaFunction *string        `json:"schema_version_function"`
	Triggers       []triggerJSON  `json:"triggers"`
	Listeners      []listenerJSON `json:"listeners"`
	Transport      *transportJSON `json:"transport"`
	QueueUsage     float64        `json:"notify_queue_usage"`
	InspectUsed    bool           `json:"inspect_used"`
	Findings       []finding      `json:"findings"`
	OK             bool           `json:"ok"`
}

var enabledNames = map[string]string{"O": "origin", "A": "always", "R": "replica", "D": "disabled"}

func setupDoctor(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, _ []string) error {
		d, err := c.diagnose(ctx)
		if err != nil {
			return err
		}
		c.print(d, func(w io.Writer) {
			fmt.Fprintf(w, "server:\t%s\n", d.Server)
			fmt.Fprintf(w, "database:\t%s\n", d.Database)
			fmt.Fprintf(w, "schema version:\t%d", d.SchemaVersion)
			if len(d.Pending) > 0 {
				fmt.Fprintf(w, " (pending: %v)", d.Pending)
			}
			if d.SchemaFunction != nil {
				fmt.Fprintf(w, "; orgperm.schema_version() = %s", *d.SchemaFunction)
			}
			fmt.Fprintln(w)
			fmt.Fprintf(w, "triggers:\t%d in schema orgperm\n", len(d.Triggers))
			fmt.Fprintf(w, "listeners:\t%d connected (application_name orgperm_listener)\n", len(d.Listeners))
			for _, l := range d.Listeners {
				since := "-"
				if l.Since != nil {
					since = *l.Since
				}
				fmt.Fprintf(w, "\tpid %d from %s since %s\n", l.PID, l.Client, since)
			}
			if d.Transport != nil {
				printTransport(w, d.Transport)
			}
			fmt.Fprintf(w, "notify queue:\t%.1f%% used\n", 100*d.QueueUsage)
			source := "own catalog checks"
			if d.InspectUsed {
				source = "orgperm.inspect()"
			}
			fmt.Fprintf(w, "checks:\t%s\n\n", source)
			if len(d.Findings) == 0 {
				fmt.Fprintln(w, "OK: no problem found")
				return
			}
			fmt.Fprintln(w, "SEVERITY\tOBJECT\tPROBLEM")
			for _, f := range d.Findings {
				fmt.Fprintf(w, "%s\t%s\t%s\n", f.Severity, f.Object, f.Problem)
			}
		})
		if !d.OK {
			return errDenied
		}
		return nil
	}
}

// diagnose gathers what an operator checks first.
func (c *cli) diagnose(ctx context.Context) (*doctorJSON, error) {
	d := &doctorJSON{Findings: []finding{}, Triggers: []triggerJSON{}, Listeners: []listenerJSON{}}
	add := func(sev, obj, format string, args ...any) {
		d.Findings = append(d.Findings, finding{sev, obj, fmt.Sprintf(format, args...)})
	}
	if err := c.pool.QueryRow(ctx, `SELECT current_setting('server_version'), current_database(), pg_notification_queue_usage()`).
		Scan(&d.Server, &d.Database, &d.QueueUsage); err != nil {
		return nil, fmt.Errorf("doctor: %w", err)
	}
	if d.QueueUsage > 0.5 {
		add(sevWarning, "notify queue", "%.0f%% used: a listener is not consuming", 100*d.QueueUsage)
	}

	// Schema version: the migrations applied, and those the binary has
	// that the database lacks.
	db := stdlib.OpenDBFromPool(c.pool)
	st, err := migrations.Status(ctx, db)
	_ = db.Close()
	if err != nil {
		return nil, fmt.Errorf("doctor: %w", err)
	}
	for _, s := range st {
		if s.State == goose.StateApplied {
			d.SchemaVersion = max(d.SchemaVersion, s.Source.Version)
		} else {
			d.Pending = append(d.Pending, s.Source.Version)
		}
	}
	switch {
	case d.SchemaVersion == 0:
		add(sevError, "schema", "orgperm is not installed: run orgperm migrate up")
	case len(d.Pending) > 0:
		add(sevWarning, "schema", "migrations %v are not applied: run orgperm migrate up", d.Pending)
	}
	if d.SchemaVersion == 0 {
		d.OK = false
		return d, nil
	}

	var hasVersionFn, hasInspect bool
	if err := c.pool.QueryRow(ctx, `SELECT to_regproc('orgperm.schema_version') IS NOT NULL, to_regproc('orgperm.inspect') IS NOT NULL`).
		Scan(&hasVersionFn, &hasInspect); err != nil {
		return nil, fmt.Errorf("doctor: %w", err)
	}
	if hasVersionFn {
		var v string
		if err := c.pool.QueryRow(ctx, `SELECT orgperm.schema_version()::text`).Scan(&v); err != nil {
			return nil, fmt.Errorf("doctor: orgperm.schema_version(): %w", err)
		}
		d.SchemaFunction = &v
	}

	// Triggers of the orgperm tables.
	rows, err := c.pool.Query(ctx, `
		SELECT c.relname::text, t.tgname::text, t.tgenabled::text
		FROM pg_catalog.pg_trigger t
		JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'orgperm' AND NOT t.tgisinternal
		ORDER BY 1, 2`)
	if err != nil {
		return nil, fmt.Errorf("doctor: triggers: %w", err)
	}
	for rows.Next() {
		var tr triggerJSON
		if err := rows.Scan(&tr.Table, &tr.Name, &tr.Enabled); err != nil {
			rows.Close()
			return nil, fmt.Errorf("doctor: triggers: %w", err)
		}
		tr.Enabled = enabledNames[tr.Enabled]
		d.Triggers = append(d.Triggers, tr)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("doctor: triggers: %w", err)
	}

	if hasInspect {
		d.InspectUsed = true
		rows, err := c.pool.Query(ctx, `SELECT severity::text, object::text, problem::text FROM orgperm.inspect()`)
		if err != nil {
			return nil, fmt.Errorf("doctor: orgperm.inspect(): %w", err)
		}
		for rows.Next() {
			var f finding
			if err := rows.Scan(&f.Severity, &f.Object, &f.Problem); err != nil {
				rows.Close()
				return nil, fmt.Errorf("doctor: orgperm.inspect(): %w", err)
			}
			d.Findings = append(d.Findings, f)
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("doctor: orgperm.inspect(): %w", err)
		}
	} else {
		checkTriggers(d.Triggers, "notify", notifyTriggers, "writes are not invalidated", add)
	}
	if d.SchemaVersion >= auditVersion {
		// The audit trail (migration 5): every table, every event.
		checkTriggers(d.Triggers, "audit", auditTriggers, "writes are not recorded in the audit trail", add)
	}

	// Listeners connected to this database.
	lrows, err := c.pool.Query(ctx, `
		SELECT pid, coalesce(host(client_addr), 'local socket'), backend_start
		FROM pg_catalog.pg_stat_activity
		WHERE application_name = 'orgperm_listener' AND datname = current_database()
		ORDER BY backend_start`)
	if err != nil {
		return nil, fmt.Errorf("doctor: listeners: %w", err)
	}
	for lrows.Next() {
		var (
			l     listenerJSON
			since *time.Time
		)
		if err := lrows.Scan(&l.PID, &l.Client, &since); err != nil {
			lrows.Close()
			return nil, fmt.Errorf("doctor: listeners: %w", err)
		}
		if since != nil {
			l.Since = jtime(*since)
		}
		d.Listeners = append(d.Listeners, l)
	}
	if err := lrows.Err(); err != nil {
		return nil, fmt.Errorf("doctor: listeners: %w", err)
	}
	if len(d.Listeners) == 0 {
		add(sevWarning, "listeners", "no orgperm listener is connected to this database (no app instance running, or one that does not set application_name orgperm_listener)")
	}

	// The transport, and in queue mode whether a relay empties the queue.
	if err := c.transport(ctx, d, add); err != nil {
		return nil, err
	}

	d.OK = !slices.ContainsFunc(d.Findings, func(f finding) bool { return f.Severity == sevError })
	return d, nil
}

// checkTriggers reports every trigger of kind (table_kind_event) in want
// that is missing or does not fire in ordinary sessions.
func checkTriggers(have []triggerJSON, kind string, want map[string][]string, consequence string,
	add func(sev, obj, format string, args ...any)) {
	byName := map[string]triggerJSON{}
	for _, t := range have {
		byName[t.Table+"."+t.Name] = t
	}
	tables := make([]string, 0, len(want))
	for t := range want {
		tables = append(tables, t)
	}
	slices.Sort(tables)
	for _, table := range tables {
		for _, ev := range want[table] {
			name := table + "_" + kind + "_" + ev
			obj := "orgperm." + table + " trigger " + name
			t, ok := byName[table+"."+name]
			switch {
			case !ok:
				add(sevError, obj, "missing: %s %s (run orgperm migrate up)", ev, consequence)
			case t.Enabled == "disabled":
				add(sevError, obj, "disabled: %s %s (ALTER TABLE orgperm.%s ENABLE TRIGGER %s)", ev, consequence, table, name)
			case t.Enabled == "replica":
				add(sevError, obj, "fires only in replica sessions (ALTER TABLE orgperm.%s ENABLE TRIGGER %s)", table, name)
			}
		}
	}
}
