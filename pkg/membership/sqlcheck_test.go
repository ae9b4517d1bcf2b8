package membership

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/orgperm/orgperm/internal/pgcluster"
	"github.com/orgperm/orgperm/migrations"
	"github.com/orgperm/orgperm/pkg/pgtest"
)

// The differential test of the SQL check functions (migrations/
// 00004_checks.sql): on the property test's random datasets, at its
// instants (boundaries, a microsecond before them, random ones) and at the
// database's own time (no at argument), every SQL function gives the answer
// of the Go API (Store.Load and the PermissionSet accessors, Store.
// LoadUserActive) to every question. The seed is logged; ORGPERM_SEED
// replays it.

// sqlQuestions asks every SQL check of one (org, user) in one statement.
// $1 org, $2 user, $3 at (NULL: the variant without at, whose first column
// is then the statement's time), $4 codenames, $5 codename lists (JSON), $6
// and $7 (type, id) pairs, $8 types.
const sqlQuestionsTmpl = `
SELECT coalesce($3::timestamptz, pg_catalog.statement_timestamp()),
    orgperm.is_active_member($1, $2 {{at}}),
    array(SELECT orgperm.has_permission($1, $2, c {{at}}) FROM unnest($4::text[]) WITH ORDINALITY u(c, n) ORDER BY n),
    array(SELECT orgperm.has_any_permission($1, $2, array(SELECT jsonb_array_elements_text(l)) {{at}})
          FROM jsonb_array_elements($5::jsonb) WITH ORDINALITY u(l, n) ORDER BY n),
    array(SELECT orgperm.has_all_permissions($1, $2, array(SELECT jsonb_array_elements_text(l)) {{at}})
          FROM jsonb_array_elements($5::jsonb) WITH ORDINALITY u(l, n) ORDER BY n),
    array(SELECT orgperm.can_access($1, $2, t, r {{at}}) FROM unnest($6::text[], $7::text[]) WITH ORDINALITY u(t, r, n) ORDER BY n),
    (SELECT json_agg(json_build_object('all', a.all_of_type, 'ids', a.ids) ORDER BY u.n)
     FROM unnest($8::text[]) WITH ORDINALITY u(t, n), orgperm.accessible_ids($1, $2, u.t {{at}}) a)::text`

func sqlQuestions(withAt bool) string {
	at := ""
	if withAt {
		at = ", $3"
	}
	return strings.ReplaceAll(sqlQuestionsTmpl, "{{at}}", at)
}

// sqlAnswers is one row of sqlQuestions.
type sqlAnswers struct {
	at         time.Time
	active     bool
	has        []bool
	hasAny     []bool
	hasAll     []bool
	canAccess  []bool
	accessJSON string
}

type accessAnswer struct {
	All bool     `json:"all"`
	IDs []string `json:"ids"`
}

// diffTally counts the questions asked and the disagreements found.
type diffTally struct {
	questions, disagreements int
}

func (d *diffTally) check(t *testing.T, ok bool, format string, args ...any) {
	t.Helper()
	d.questions++
	if !ok {
		d.disagreements++
		if d.disagreements <= 20 {
			t.Errorf(format, args...)
		}
	}
}

// diffInputs are the questions asked of every (org, user).
type diffInputs struct {
	codenames []string   // Has
	lists     [][]string // HasAny, HasAll
	types     []string   // CanAccess (with ids), AccessibleIDs
	ids       []string
}

func newDiffInputs(d *propData, rng *rand.Rand) diffInputs {
	in := diffInputs{
		// Unknown, malformed and empty codenames too: Has denies them.
		codenames: append(slices.Clone(d.codenames), "app0.nope", "Not A Codename", ""),
		// Unknown and malformed types and IDs too.
		types: append(slices.Clone(propTypes), "Bad Type!", ""),
		ids:   []string{"r0", "r1", "r2", "r3", "r4", "zz", ""},
	}
	in.lists = [][]string{{}, {"app0.nope"}}
	for range 8 {
		var l []string
		for range 1 + rng.IntN(3) {
			l = append(l, in.codenames[rng.IntN(len(in.codenames))])
		}
		in.lists = append(in.lists, l)
	}
	return in
}

// ask runs sqlQuestions for (org, user) at `at` (nil: without at).
func (in diffInputs) ask(ctx context.Context, db DB, org, user string, at *time.Time) (sqlAnswers, error) {
	lists, err := json.Marshal(in.lists)
	if err != nil {
		return sqlAnswers{}, err
	}
	var pairT, pairID []string
	for _, typ := range in.types {
		for _, id := range in.ids {
			pairT, pairID = append(pairT, typ), append(pairID, id)
		}
	}
	var a sqlAnswers
	err = db.QueryRow(ctx, sqlQuestions(at != nil), org, user, at, in.codenames, string(lists), pairT, pairID, in.types).
		Scan(&a.at, &a.active, &a.has, &a.hasAny, &a.hasAll, &a.canAccess, &a.accessJSON)
	return a, err
}

// compare checks every answer in a against the Go API's set s.
func (in diffInputs) compare(t *testing.T, tally *diffTally, where string, s *PermissionSet, a sqlAnswers) {
	t.Helper()
	tally.check(t, a.active == s.Active(), "%s: is_active_member = %v, Active = %v", where, a.active, s.Active())
	for i, c := range in.codenames {
		tally.check(t, a.has[i] == s.Has(c), "%s: has_permission(%q) = %v, Has = %v", where, c, a.has[i], s.Has(c))
	}
	for i, l := range in.lists {
		tally.check(t, a.hasAny[i] == s.HasAny(l...), "%s: has_any_permission(%q) = %v, HasAny = %v", where, l, a.hasAny[i], s.HasAny(l...))
		tally.check(t, a.hasAll[i] == s.HasAll(l...), "%s: has_all_permissions(%q) = %v, HasAll = %v", where, l, a.hasAll[i], s.HasAll(l...))
	}
	k := 0
	for _, typ := range in.types {
		for _, id := range in.ids {
			tally.check(t, a.canAccess[k] == s.CanAccess(typ, id), "%s: can_access(%q, %q) = %v, CanAccess = %v",
				where, typ, id, a.canAccess[k], s.CanAccess(typ, id))
			k++
		}
	}
	var access []accessAnswer
	if err := json.Unmarshal([]byte(a.accessJSON), &access); err != nil || len(access) != len(in.types) {
		t.Fatalf("%s: accessible_ids: %v, %s", where, err, a.accessJSON)
	}
	for i, typ := range in.types {
		all, ids := s.AccessibleIDs(typ)
		got := access[i]
		tally.check(t, got.All == all && slices.Equal(got.IDs, ids) && got.IDs != nil,
			"%s: accessible_ids(%q) = %v %q, AccessibleIDs = %v %q", where, typ, got.All, got.IDs, all, ids)
	}
}

func TestSQLChecksAgree(t *testing.T) {
	t.Parallel()
	seed := propSeed(t)
	t.Logf("seed %d (ORGPERM_SEED=%d to replay)", seed, seed)
	for i := range propDatasets {
		t.Run(fmt.Sprintf("dataset%d", i), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(seed, 1000+uint64(i)))
			pool := pgtest.NewPool(t)
			d := generate(t, pool, rng)
			in := newDiffInputs(d, rng)
			ctx := context.Background()
			var tally diffTally
			var keys []Key
			for _, o := range append(slices.Clone(d.orgs), "org-none") {
				for _, u := range append(slices.Clone(d.users), "user-none") {
					keys = append(keys, Key{o, u})
				}
			}
			users := append(slices.Clone(d.users), "user-none")
			check := func(at *time.Time) {
				for _, k := range keys {
					a, err := in.ask(ctx, pool, k.Org, k.User, at)
					if err != nil {
						t.Fatal(err)
					}
					// Without at, the Go set is loaded at the instant the
					// SQL statement ran at.
					s, err := d.store.Load(ctx, k.Org, k.User, a.at)
					if err != nil {
						t.Fatal(err)
					}
					where := fmt.Sprintf("(%s, %s) at %s", k.Org, k.User, a.at.Format(time.RFC3339Nano))
					if at == nil {
						where += " (no at)"
					}
					in.compare(t, &tally, where, s, a)
				}
				var stmtAt time.Time
				var got []bool
				err := pool.QueryRow(ctx, `SELECT coalesce($2::timestamptz, pg_catalog.statement_timestamp()),
					array(SELECT CASE WHEN $2::timestamptz IS NULL THEN orgperm.user_has_active_membership(u)
					                  ELSE orgperm.user_has_active_membership(u, $2) END
					      FROM unnest($1::text[]) WITH ORDINALITY x(u, n) ORDER BY n)`, users, at).Scan(&stmtAt, &got)
				if err != nil {
					t.Fatal(err)
				}
				for i, u := range users {
					ua, err := d.store.LoadUserActive(ctx, u, stmtAt)
					if err != nil {
						t.Fatal(err)
					}
					tally.check(t, got[i] == ua.Active, "user_has_active_membership(%s) at %s = %v, LoadUserActive = %v",
						u, stmtAt.Format(time.RFC3339Nano), got[i], ua.Active)
				}
			}
			for _, at := range d.instants {
				check(&at)
			}
			check(nil)
			t.Logf("%d questions at %d instants and the database's time, %d disagreements",
				tally.questions, len(d.instants), tally.disagreements)
		})
	}
}

// TestSQLChecksFailClosed: NULL, unknown and malformed input gets false (or
// no access) from every check function, never an error; so does a
// principal that is not set.
func TestSQLChecksFailClosed(t *testing.T) {
	t.Parallel()
	f := setupFixture(t)
	ctx := context.Background()
	// alice is an active member of acme with billing.view_invoice and
	// invoice access: each valid question below is true for her, so a
	// false answer comes from the bad argument alone.
	valid := []string{
		`orgperm.is_active_member('acme', 'alice', $1)`,
		`orgperm.has_permission('acme', 'alice', 'billing.view_invoice', $1)`,
		`orgperm.has_any_permission('acme', 'alice', '{billing.view_invoice}', $1)`,
		`orgperm.has_all_permissions('acme', 'alice', '{billing.view_invoice}', $1)`,
		`orgperm.can_access('acme', 'alice', 'invoice', 'inv-1', $1)`,
		`(SELECT a.all_of_type OR cardinality(a.ids) > 0 FROM orgperm.accessible_ids('acme', 'alice', 'invoice', $1) a)`,
		`orgperm.user_has_active_membership('alice', $1)`,
	}
	for _, q := range valid {
		var ok bool
		if err := f.pool.QueryRow(ctx, `SELECT `+q, t0).Scan(&ok); err != nil || !ok {
			t.Fatalf("%s = %v, %v; the fixture should grant it", q, ok, err)
		}
	}
	long := strings.Repeat("x", 200)
	bad := []string{
		`orgperm.is_active_member(NULL, 'alice', $1)`,
		`orgperm.is_active_member('acme', NULL, $1)`,
		`orgperm.is_active_member('acme', 'alice', NULL)`,
		`orgperm.is_active_member('acme', '` + long + `', $1)`,
		`orgperm.is_active_member('acme', E'ali\nce', $1)`,
		`orgperm.is_active_member('', 'alice', $1)`,
		`orgperm.has_permission('acme', 'alice', NULL, $1)`,
		`orgperm.has_permission('acme', 'alice', 'billing.view_invoice', NULL)`,
		`orgperm.has_permission(NULL, 'alice', 'billing.view_invoice', $1)`,
		`orgperm.has_permission('acme', 'alice', 'Billing View', $1)`,
		`orgperm.has_any_permission('acme', 'alice', NULL, $1)`,
		`orgperm.has_any_permission('acme', 'alice', '{}', $1)`,
		`orgperm.has_any_permission('acme', 'alice', '{NULL}', $1)`,
		`orgperm.has_any_permission('acme', 'alice', '{billing.view_invoice}', NULL)`,
		`orgperm.has_all_permissions('acme', 'alice', NULL, $1)`,
		`orgperm.has_all_permissions('acme', 'alice', '{}', $1)`,
		`orgperm.has_all_permissions('acme', 'alice', '{billing.view_invoice,NULL}', $1)`,
		`orgperm.has_all_permissions('acme', 'alice', '{billing.view_invoice}', NULL)`,
		`orgperm.can_access('acme', 'alice', 'invoice', NULL, $1)`,
		`orgperm.can_access('acme', 'alice', NULL, 'inv-1', $1)`,
		`orgperm.can_access('acme', 'alice', 'invoice', 'inv-1', NULL)`,
		`orgperm.can_access('acme', NULL, 'invoice', 'inv-1', $1)`,
		`orgperm.can_access('acme', 'alice', 'Invoice!', 'inv-1', $1)`,
		`(SELECT a.all_of_type OR cardinality(a.ids) > 0 FROM orgperm.accessible_ids('acme', 'alice', NULL, $1) a)`,
		`(SELECT a.all_of_type OR cardinality(a.ids) > 0 FROM orgperm.accessible_ids('acme', 'alice', 'invoice', NULL) a)`,
		`(SELECT a.all_of_type OR cardinality(a.ids) > 0 FROM orgperm.accessible_ids(NULL, 'alice', 'invoice', $1) a)`,
		`orgperm.user_has_active_membership(NULL, $1)`,
		`orgperm.user_has_active_membership('alice', NULL)`,
		`orgperm.user_has_active_membership('` + long + `', $1)`,
		// No principal set: the policies' inputs are NULL.
		`orgperm.has_permission(orgperm.principal_org(), orgperm.principal_user(), 'billing.view_invoice', $1)`,
		`(SELECT a.all_of_type OR cardinality(a.ids) > 0 FROM orgperm.accessible_ids(orgperm.principal_org(), orgperm.principal_user(), 'invoice', $1) a)`,
	}
	for _, q := range bad {
		var args []any
		if strings.Contains(q, "$1") {
			args = append(args, t0)
		}
		var ok *bool
		if err := f.pool.QueryRow(ctx, `SELECT `+q, args...).Scan(&ok); err != nil {
			t.Errorf("%s: error %v; want false", q, err)
		} else if ok == nil || *ok {
			t.Errorf("%s = %v; want false", q, ok)
		}
	}
	// accessible_ids never returns a NULL list: `id = ANY(ids)` stays a
	// plain false.
	var n int
	if err := f.pool.QueryRow(ctx, `SELECT count(*) FROM orgperm.accessible_ids(NULL, NULL, NULL, NULL) a
		WHERE a.ids = '{}' AND NOT a.all_of_type`).Scan(&n); err != nil || n != 1 {
		t.Errorf("accessible_ids(NULL...) = %d rows (false, '{}'), %v; want 1", n, err)
	}
}

// TestSQLChecksInfinity: PostgreSQL's ordering of 'infinity' and
// '-infinity' is the reference: an infinite valid_until is an open end, an
// infinite valid_from never starts, and so on.
func TestSQLChecksInfinity(t *testing.T) {
	t.Parallel()
	f := setupFixture(t)
	ctx := context.Background()
	exec := func(sql string) {
		t.Helper()
		if _, err := f.pool.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	exec(`INSERT INTO orgperm.memberships (org_id, user_id, valid_from, valid_until) VALUES
		('inf', 'open-end', NULL, 'infinity'),
		('inf', 'open-start', '-infinity', NULL),
		('inf', 'never', 'infinity', NULL),
		('inf', 'ended', NULL, '-infinity')`)
	exec(`INSERT INTO orgperm.roles (org_id, name) VALUES ('inf', 'r')`)
	exec(`INSERT INTO orgperm.role_permissions (role_id, codename)
		SELECT id, 'billing.view_invoice' FROM orgperm.roles WHERE org_id = 'inf'`)
	exec(`INSERT INTO orgperm.membership_roles (org_id, user_id, role_id, valid_until)
		SELECT 'inf', u, r.id, v::timestamptz FROM orgperm.roles r,
		(VALUES ('open-end', 'infinity'), ('open-start', '-infinity')) x(u, v) WHERE r.org_id = 'inf'`)
	for _, c := range []struct {
		user         string
		active, perm bool
	}{
		{"open-end", true, true},    // valid_until infinity: open; role until infinity: held
		{"open-start", true, false}, // valid_from -infinity: open; role until -infinity: ended
		{"never", false, false},     // valid_from infinity: never starts
		{"ended", false, false},     // valid_until -infinity: always ended
	} {
		var active, perm, userActive bool
		if err := f.pool.QueryRow(ctx, `SELECT orgperm.is_active_member('inf', $1),
			orgperm.has_permission('inf', $1, 'billing.view_invoice'), orgperm.user_has_active_membership($1)`,
			c.user).Scan(&active, &perm, &userActive); err != nil {
			t.Fatal(err)
		}
		if active != c.active || userActive != c.active || perm != c.perm {
			t.Errorf("%s: active %v, user active %v, permission %v; want %v, %v, %v",
				c.user, active, userActive, perm, c.active, c.active, c.perm)
		}
	}
}

// TestSQLChecksOnlyModelRows: rows of a table that INHERITs an orgperm
// table are not part of the model.
func TestSQLChecksOnlyModelRows(t *testing.T) {
	t.Parallel()
	f := setupFixture(t)
	ctx := context.Background()
	for _, sql := range []string{
		`CREATE TABLE public.memberships_archive () INHERITS (orgperm.memberships)`,
		`INSERT INTO public.memberships_archive (org_id, user_id) VALUES ('acme', 'zed')`,
		`CREATE TABLE public.grants_archive () INHERITS (orgperm.data_access)`,
		`INSERT INTO public.grants_archive (id, org_id, user_id, resource_type) VALUES (1000000, 'acme', 'frank', 'invoice')`,
	} {
		if _, err := f.pool.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	var zed, zedAnywhere, frank bool
	if err := f.pool.QueryRow(ctx, `SELECT orgperm.is_active_member('acme', 'zed'), orgperm.user_has_active_membership('zed'),
		orgperm.can_access('acme', 'frank', 'invoice', 'inv-1')`).Scan(&zed, &zedAnywhere, &frank); err != nil {
		t.Fatal(err)
	}
	if zed || zedAnywhere || frank {
		t.Errorf("rows of child tables counted: zed member %v, zed active anywhere %v, frank invoice access %v", zed, zedAnywhere, frank)
	}
}

// TestSQLChecksAttributes: every check function is SECURITY DEFINER with a
// pinned search_path, STABLE and PARALLEL SAFE, with generic plans (planned
// once per session, not per call) of index probes (enable_seqscan off),
// and PUBLIC cannot execute any orgperm function this migration adds.
func TestSQLChecksAttributes(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	ctx := context.Background()
	rows, err := pool.Query(ctx, `
		SELECT p.proname, p.prosecdef, p.provolatile::text, p.proparallel::text, coalesce(p.proconfig, '{}'),
		       EXISTS (SELECT FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
		               WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE')
		FROM pg_proc p WHERE p.pronamespace = 'orgperm'::regnamespace
		  AND p.proname IN ('is_active_member', 'has_permission', 'has_any_permission', 'has_all_permissions',
		                    'can_access', 'accessible_ids', 'user_has_active_membership',
		                    'principal_user', 'principal_org', 'policy_all_of_type', 'policy_ids',
		                    'text_to', 'protect_table', 'unprotect_table')
		ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	type fn struct {
		name               string
		secdef             bool
		volatile, parallel string
		config             []string
		public             bool
	}
	fns, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (fn, error) {
		var f fn
		err := r.Scan(&f.name, &f.secdef, &f.volatile, &f.parallel, &f.config, &f.public)
		return f, err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(fns) != 14 {
		t.Fatalf("%d functions, want 14: %+v", len(fns), fns)
	}
	for _, f := range fns {
		if f.public {
			t.Errorf("%s: PUBLIC may execute it", f.name)
		}
		switch f.name {
		case "protect_table", "unprotect_table":
			if f.secdef || f.volatile != "v" {
				t.Errorf("%s: security definer %v, volatility %s; want invoker, volatile", f.name, f.secdef, f.volatile)
			}
		case "text_to":
			if f.secdef || f.volatile != "i" {
				t.Errorf("%s: %+v; want invoker, immutable", f.name, f)
			}
		case "principal_user", "principal_org":
			// Inlined SQL: no SET clause, caller's rights.
			if f.secdef || f.volatile != "s" || f.parallel != "s" || len(f.config) != 0 {
				t.Errorf("%s: %+v; want invoker, stable, parallel safe, no SET", f.name, f)
			}
		default:
			if !f.secdef || f.volatile != "s" || f.parallel != "s" ||
				!slices.Equal(f.config, []string{"search_path=pg_catalog, pg_temp", "plan_cache_mode=force_generic_plan", "enable_seqscan=off"}) {
				t.Errorf("%s: %+v; want SECURITY DEFINER, STABLE, PARALLEL SAFE, search_path=pg_catalog, pg_temp, generic plans, no sequential scans", f.name, f)
			}
		}
	}
}

type pgconnError = pgconn.PgError

// isInsufficientPrivilege reports a permission-denied error (42501).
func isInsufficientPrivilege(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42501"
}

// TestChecksMigrationWithoutCreateRole: a migrator that is not a superuser
// and may not create roles still migrates (a notice names the grants to
// make by hand), and the check functions work for it; PUBLIC cannot run
// them. On a cluster of its own, where orgperm_reader does not exist yet.
func TestChecksMigrationWithoutCreateRole(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster of its own (-short; make test runs it)")
	}
	t.Parallel()
	srv := pgcluster.StartTB(t)
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	for _, sql := range []string{
		`CREATE ROLE migrator LOGIN NOCREATEROLE`,
		`CREATE DATABASE migrated OWNER migrator`,
	} {
		if _, err := admin.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	u, err := url.Parse(pgcluster.ConnString(srv.URL, "migrated"))
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User("migrator")
	db, err := sql.Open("pgx", u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := migrations.Up(ctx, db); err != nil {
		t.Fatalf("migrating as a migrator without CREATEROLE: %v", err)
	}
	var readers int
	var ok, public bool
	if err := db.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM pg_roles WHERE rolname = 'orgperm_reader'),
		orgperm.is_active_member('o', 'u') IS NOT NULL,
		has_function_privilege('public', 'orgperm.has_permission(text, text, text, timestamptz)', 'EXECUTE')`).
		Scan(&readers, &ok, &public); err != nil {
		t.Fatal(err)
	}
	if readers != 0 || !ok || public {
		t.Errorf("orgperm_reader roles %d, checks answer %v, PUBLIC may execute %v; want 0, true, false", readers, ok, public)
	}
}
