package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/orgperm/orgperm/migrations"
	"github.com/orgperm/orgperm/pkg/membership"
)

// print writes v as JSON with --json, else calls human with a tab writer
// (columns separated by \t) and flushes it.
func (c *cli) print(v any, human func(w io.Writer)) {
	if c.json {
		enc := json.NewEncoder(c.out)
		enc.SetIndent("", "  ")
		_ = enc.Encode(v)
		return
	}
	if human == nil {
		return
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	human(tw)
	_ = tw.Flush()
}

func (c *cli) store() *membership.Store { return membership.NewStore(c.pool) }

// jtime is a time for JSON: RFC 3339 in UTC, null for the zero time.
func jtime(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := t.UTC().Format(time.RFC3339Nano)
	return &s
}

// htime is a time for people: "-" for the zero time.
func htime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// dbTime reads the database's time, the instant a check without --at is
// evaluated at (as the read API does), so the host clock changes nothing.
func (c *cli) dbTime(ctx context.Context) (time.Time, error) {
	var t time.Time
	if err := c.pool.QueryRow(ctx, `SELECT statement_timestamp()`).Scan(&t); err != nil {
		return time.Time{}, fmt.Errorf("read the database's time: %w", err)
	}
	return t.UTC(), nil
}

// listFlags are the flags of a paginated list.
type listFlags struct {
	at     timeFlag
	limit  int
	cursor string
}

func (l *listFlags) declare(fs *flag.FlagSet, withAt bool) {
	if withAt {
		fs.Var(&l.at, "at", "evaluate at this RFC 3339 instant (default: the database's time)")
	}
	fs.IntVar(&l.limit, "limit", 0, "page size (default 100, at most 1000)")
	fs.StringVar(&l.cursor, "cursor", "", "continue after the page that printed this cursor")
}

func (l *listFlags) options() membership.ListOptions {
	return membership.ListOptions{At: l.at.t, Limit: l.limit, Cursor: l.cursor}
}

func printNext(w io.Writer, next string) {
	if next != "" {
		fmt.Fprintf(w, "\nmore: --cursor %s\n", next)
	}
}

// ---- migrate

type migrationJSON struct {
	Version int64   `json:"version"`
	Source  string  `json:"source"`
	Applied bool    `json:"applied"`
	At      *string `json:"applied_at"`
}

func setupMigrate(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		db := stdlib.OpenDBFromPool(c.pool)
		defer db.Close()
		switch args[0] {
		case "up", "down":
			var (
				res []*goose.MigrationResult
				err error
			)
			if args[0] == "up" {
				res, err = migrations.Up(ctx, db)
			} else {
				res, err = migrateDown(ctx, db)
			}
			out := []migrationJSON{}
			for _, r := range res {
				if r.Source != nil {
					out = append(out, migrationJSON{Version: r.Source.Version, Source: r.Source.Path, Applied: args[0] == "up"})
				}
			}
			if err != nil {
				return err
			}
			c.print(map[string]any{"direction": args[0], "migrations": out}, func(w io.Writer) {
				if len(out) == 0 {
					fmt.Fprintf(w, "nothing to migrate %s\n", args[0])
				}
				for _, m := range out {
					fmt.Fprintf(w, "%s\t%d\t%s\n", args[0], m.Version, m.Source)
				}
			})
			return nil
		case "status":
			st, err := migrations.Status(ctx, db)
			if err != nil {
				return err
			}
			out := []migrationJSON{}
			for _, s := range st {
				m := migrationJSON{Version: s.Source.Version, Source: s.Source.Path, Applied: s.State == goose.StateApplied}
				if m.Applied {
					m.At = jtime(s.AppliedAt)
				}
				out = append(out, m)
			}
			c.print(map[string]any{"migrations": out}, func(w io.Writer) {
				fmt.Fprintln(w, "VERSION\tSOURCE\tAPPLIED")
				for _, m := range out {
					at := "pending"
					if m.At != nil {
						at = *m.At
					}
					fmt.Fprintf(w, "%d\t%s\t%s\n", m.Version, m.Source, at)
				}
			})
			return nil
		}
		return usagef("migrate: want up, down or status, got %q", args[0])
	}
}

// migrateDown rolls back the newest applied migration.
func migrateDown(ctx context.Context, db *sql.DB) ([]*goose.MigrationResult, error) {
	p, err := migrations.NewProvider(db)
	if err != nil {
		return nil, err
	}
	r, err := p.Down(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate down: %w", err)
	}
	return []*goose.MigrationResult{r}, nil
}

// ---- check, explain

type decisionJSON struct {
	Org      string  `json:"org"`
	User     string  `json:"user"`
	Codename string  `json:"codename"`
	Allowed  bool    `json:"allowed"`
	Reason   string  `json:"reason"`
	RoleID   int64   `json:"role_id,omitempty"`
	RoleName string  `json:"role_name,omitempty"`
	Message  string  `json:"message"`
	At       *string `json:"at"`
}

func setupCheck(explain bool) func(*cli, *flag.FlagSet) func(context.Context, []string) error {
	return func(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
		var at timeFlag
		fs.Var(&at, "at", "evaluate at this RFC 3339 instant (default: the database's time)")
		return func(ctx context.Context, args []string) error {
			org, user, code := args[0], args[1], args[2]
			if !membership.ValidCodename(code) {
				return fmt.Errorf("%w: %q", membership.ErrInvalidCodename, code)
			}
			when := at.t
			if when.IsZero() {
				var err error
				if when, err = c.dbTime(ctx); err != nil {
					return err
				}
			}
			set, err := c.store().Load(ctx, org, user, when)
			if err != nil {
				return err
			}
			d := set.Explain(code)
			out := decisionJSON{Org: org, User: user, Codename: code, Allowed: d.Allowed, Reason: d.Reason.String(),
				RoleID: d.RoleID, RoleName: d.RoleName, Message: d.Message, At: jtime(when)}
			c.print(out, func(w io.Writer) {
				verdict := "deny"
				if d.Allowed {
					verdict = "allow"
				}
				if !explain {
					fmt.Fprintf(w, "%s\t%s\n", verdict, d.Reason)
					return
				}
				fmt.Fprintf(w, "answer:\t%s\n", verdict)
				fmt.Fprintf(w, "reason:\t%s\n", d.Reason)
				if d.RoleName != "" {
					fmt.Fprintf(w, "role:\t%s (id %d)\n", d.RoleName, d.RoleID)
				}
				fmt.Fprintf(w, "why:\t%s\n", d.Message)
				fmt.Fprintf(w, "at:\t%s\n", htime(when))
			})
			if !d.Allowed {
				return errDenied
			}
			return nil
		}
	}
}

// ---- members, orgs, roles, who

type roleJSON struct {
	ID         int64   `json:"id"`
	Name       string  `json:"name"`
	System     bool    `json:"system"`
	ValidUntil *string `json:"valid_until"`
}

type memberJSON struct {
	User       string     `json:"user"`
	Status     string     `json:"status"`
	Active     bool       `json:"active"`
	ValidFrom  *string    `json:"valid_from"`
	ValidUntil *string    `json:"valid_until"`
	Roles      []roleJSON `json:"roles"`
}

func roleNames(roles []membership.Role) string {
	var s []string
	for _, r := range roles {
		n := r.Name
		if !r.ValidUntil.IsZero() {
			n += " (until " + htime(r.ValidUntil) + ")"
		}
		s = append(s, n)
	}
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, ", ")
}

func setupMembers(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
	var (
		lf     listFlags
		status string
		role   string
	)
	lf.declare(fs, true)
	fs.StringVar(&status, "status", "", "only this status (active, invited, suspended, revoked)")
	fs.StringVar(&role, "role", "", "only the members holding this role (by name) now")
	return func(ctx context.Context, args []string) error {
		st := c.store()
		q := membership.MemberQuery{ListOptions: lf.options(), Status: membership.Status(status)}
		if role != "" {
			r, err := st.RoleByName(ctx, args[0], role)
			if err != nil {
				return err
			}
			q.RoleID = r.ID
		}
		p, err := st.ListMembers(ctx, args[0], q)
		if err != nil {
			return err
		}
		items := []memberJSON{}
		for _, m := range p.Items {
			mj := memberJSON{User: m.User, Status: string(m.Status), Active: m.Active,
				ValidFrom: jtime(m.ValidFrom), ValidUntil: jtime(m.ValidUntil), Roles: []roleJSON{}}
			for _, r := range m.Roles {
				mj.Roles = append(mj.Roles, roleJSON{r.ID, r.Name, r.System, jtime(r.ValidUntil)})
			}
			items = append(items, mj)
		}
		c.print(map[string]any{"org": args[0], "at": jtime(p.At), "members": items, "next": p.Next}, func(w io.Writer) {
			fmt.Fprintln(w, "USER\tSTATUS\tACTIVE\tFROM\tUNTIL\tROLES")
			for _, m := range p.Items {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", m.User, m.Status, yes(m.Active),
					htime(m.ValidFrom), htime(m.ValidUntil), roleNames(m.Roles))
			}
			printNext(w, p.Next)
		})
		return nil
	}
}

type orgJSON struct {
	Org        string  `json:"org"`
	Status     string  `json:"status"`
	Active     bool    `json:"active"`
	ValidFrom  *string `json:"valid_from"`
	ValidUntil *string `json:"valid_until"`
}

func setupOrgs(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
	var lf listFlags
	lf.declare(fs, true)
	return func(ctx context.Context, args []string) error {
		p, ua, err := c.store().UserOrgs(ctx, args[0], lf.options())
		if err != nil {
			return err
		}
		items := []orgJSON{}
		for _, o := range p.Items {
			items = append(items, orgJSON{o.Org, string(o.Status), o.Active, jtime(o.ValidFrom), jtime(o.ValidUntil)})
		}
		c.print(map[string]any{"user": args[0], "at": jtime(p.At), "orgs": items, "next": p.Next,
			"active_anywhere": ua.Active, "active_anywhere_until": jtime(ua.ValidUntil)}, func(w io.Writer) {
			fmt.Fprintln(w, "ORG\tSTATUS\tACTIVE\tFROM\tUNTIL")
			for _, o := range p.Items {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", o.Org, o.Status, yes(o.Active), htime(o.ValidFrom), htime(o.ValidUntil))
			}
			fmt.Fprintf(w, "\nactive in some organization: %s", yes(ua.Active))
			if !ua.ValidUntil.IsZero() {
				fmt.Fprintf(w, " (until %s)", htime(ua.ValidUntil))
			}
			fmt.Fprintln(w)
			printNext(w, p.Next)
		})
		return nil
	}
}

type roleInfoJSON struct {
	ID          int64    `json:"id"`
	Org         *string  `json:"org"`
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Codenames   []string `json:"codenames"`
}

func setupRoles(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
	var lf listFlags
	lf.declare(fs, false)
	return func(ctx context.Context, args []string) error {
		p, err := c.store().ListRoles(ctx, args[0], lf.options())
		if err != nil {
			return err
		}
		items := []roleInfoJSON{}
		for _, r := range p.Items {
			rj := roleInfoJSON{ID: r.ID, Name: r.Name, Description: r.Description, Codenames: r.Codenames}
			if rj.Codenames == nil {
				rj.Codenames = []string{}
			}
			if !r.System() {
				rj.Org = &r.Org
			}
			items = append(items, rj)
		}
		c.print(map[string]any{"org": args[0], "roles": items, "next": p.Next}, func(w io.Writer) {
			fmt.Fprintln(w, "ID\tROLE\tSCOPE\tCODENAMES")
			for _, r := range p.Items {
				scope := r.Org
				if r.System() {
					scope = "system"
				}
				fmt.Fprintf(w, "%d\t%s\t%s\t%s\n", r.ID, r.Name, scope, strings.Join(r.Codenames, ", "))
			}
			printNext(w, p.Next)
		})
		return nil
	}
}

type holderJSON struct {
	User     string `json:"user"`
	RoleID   int64  `json:"role_id"`
	RoleName string `json:"role_name"`
}

func setupWho(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
	var lf listFlags
	lf.declare(fs, true)
	return func(ctx context.Context, args []string) error {
		p, err := c.store().WhoHas(ctx, args[0], args[1], lf.options())
		if err != nil {
			return err
		}
		items := []holderJSON{}
		for _, h := range p.Items {
			items = append(items, holderJSON{h.User, h.RoleID, h.RoleName})
		}
		c.print(map[string]any{"org": args[0], "codename": args[1], "at": jtime(p.At), "holders": items, "next": p.Next},
			func(w io.Writer) {
				fmt.Fprintln(w, "USER\tVIA ROLE")
				for _, h := range p.Items {
					fmt.Fprintf(w, "%s\t%s\n", h.User, h.RoleName)
				}
				printNext(w, p.Next)
			})
		return nil
	}
}

// ---- grant, revoke

func setupGrant(grant bool) func(*cli, *flag.FlagSet) func(context.Context, []string) error {
	return func(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
		var (
			until timeFlag
			actor string
		)
		if grant {
			fs.Var(&until, "until", "the assignment ends at this RFC 3339 instant (default: no end)")
		}
		fs.StringVar(&actor, "actor", c.getenv("ORGPERM_ACTOR"), "the actor recorded in the audit trail (default $ORGPERM_ACTOR)")
		return func(ctx context.Context, args []string) error {
			org, user, name := args[0], args[1], args[2]
			st := c.store()
			role, err := st.RoleByName(ctx, org, name)
			if err != nil {
				return err
			}
			if actor != "" {
				ctx = membership.WithActor(ctx, actor)
			}
			verb := "granted"
			if grant {
				var end *time.Time
				if !until.t.IsZero() {
					end = &until.t
				}
				err = st.AssignRole(ctx, org, user, role.ID, end)
			} else {
				verb = "revoked"
				err = st.UnassignRole(ctx, org, user, role.ID)
			}
			if err != nil {
				return err
			}
			c.print(map[string]any{"org": org, "user": user, "role": role.Name, "role_id": role.ID, verb: true,
				"valid_until": jtime(until.t)}, func(w io.Writer) {
				fmt.Fprintf(w, "%s role %s (id %d) %s %s in %s", verb, role.Name, role.ID,
					map[bool]string{true: "to", false: "from"}[grant], user, org)
				if !until.t.IsZero() {
					fmt.Fprintf(w, " until %s", htime(until.t))
				}
				fmt.Fprintln(w)
			})
			return nil
		}
	}
}

// ---- evict

func setupEvict(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		var (
			sql   string
			fargs []any
		)
		switch {
		case args[0] == "all" && len(args) == 1:
			sql = `SELECT orgperm.evict_all()`
		case args[0] == "org" && len(args) == 2:
			sql, fargs = `SELECT orgperm.evict_org($1)`, []any{args[1]}
		case args[0] == "member" && len(args) == 3:
			sql, fargs = `SELECT orgperm.evict_member($1, $2)`, []any{args[1], args[2]}
		case args[0] == "user" && len(args) == 2:
			sql, fargs = `SELECT orgperm.evict_user($1)`, []any{args[1]}
		default:
			return usagef("evict: want all, org ORG, member ORG USER or user USER")
		}
		for _, a := range fargs {
			if !membership.ValidID(a.(string)) {
				return fmt.Errorf("%w: %q", membership.ErrInvalidID, a)
			}
		}
		if _, err := c.pool.Exec(ctx, sql, fargs...); err != nil {
			return fmt.Errorf("evict: %w", err)
		}
		scope := strings.Join(args, " ")
		c.print(map[string]any{"evicted": scope}, func(w io.Writer) {
			fmt.Fprintf(w, "evicted %s on every listening instance\n", scope)
		})
		return nil
	}
}
