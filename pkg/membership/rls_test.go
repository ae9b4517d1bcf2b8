package membership

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orgperm/orgperm/pkg/pgtest"
)

// appRole creates a role with no privilege on orgperm's tables, a member of
// orgperm_reader when reader is true, and drops it when the test ends. Roles
// are cluster-wide, so the name is unique to the test.
func appRole(t *testing.T, pool *pgxpool.Pool, reader bool) string {
	t.Helper()
	ctx := context.Background()
	name := fmt.Sprintf("orgperm_test_app_%d", rand.Uint64())
	if _, err := pool.Exec(ctx, `CREATE ROLE `+name+` NOLOGIN`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := pool.Exec(context.Background(), `DROP OWNED BY `+name+`; DROP ROLE `+name); err != nil {
			t.Errorf("dropping role %s: %v", name, err)
		}
	})
	if reader {
		if _, err := pool.Exec(ctx, `GRANT orgperm_reader TO `+name); err != nil {
			t.Fatal(err)
		}
	}
	return name
}

// asRole runs f in a transaction of role, with the principal (org, user)
// when user is not empty, and rolls it back.
func asRole(t *testing.T, pool *pgxpool.Pool, role, org, user string, f func(tx pgx.Tx) error) error {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `SET LOCAL ROLE `+role); err != nil {
		t.Fatal(err)
	}
	if user != "" {
		if err := SetPrincipal(ctx, tx, org, user); err != nil {
			t.Fatal(err)
		}
	}
	return f(tx)
}

// rlsRowIDs are the record IDs of every org's rows in the protected tables.
var rlsRowIDs = []string{"r0", "r1", "r2", "r3", "r4", "zz"}

// TestRLSMatchesAccess: on the property test's random datasets, moved in
// time so that their boundaries lie around the database's present, the rows
// of an RLS-protected table that a role with no privilege on orgperm's
// tables sees, for every (org, user) as the principal, are exactly those
// the Go API's CanAccess and AccessibleIDs admit (and Has, for a table
// protected with a codename) at the statement's instant. No principal, or a
// user without an org, sees nothing.
func TestRLSMatchesAccess(t *testing.T) {
	t.Parallel()
	seed := propSeed(t)
	t.Logf("seed %d (ORGPERM_SEED=%d to replay)", seed, seed)
	for i := range propDatasets {
		t.Run(fmt.Sprintf("dataset%d", i), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(seed, 2000+uint64(i)))
			pool := pgtest.NewPool(t)
			d := generate(t, pool, rng)
			ctx := context.Background()
			exec := func(sql string, args ...any) {
				t.Helper()
				if _, err := pool.Exec(ctx, sql, args...); err != nil {
					t.Fatalf("%v\n%s", err, sql)
				}
			}
			// t0 becomes now: the windows and role ends straddle the
			// present, where the policies evaluate.
			shift := time.Until(t0).Truncate(time.Microsecond)
			exec(`UPDATE orgperm.memberships SET valid_from = valid_from - $1::interval, valid_until = valid_until - $1::interval`, shift)
			exec(`UPDATE orgperm.membership_roles SET valid_until = valid_until - $1::interval`, shift)
			// A random dataset may admit nobody to an invoice at the
			// present, and then the comparison proves nothing: one member
			// active now (made so, when there is none) gets record r0.
			var org0, user0 string
			err := pool.QueryRow(ctx, `SELECT org_id, user_id FROM orgperm.memberships
				WHERE status = 'active' AND (valid_from IS NULL OR valid_from <= now())
				  AND (valid_until IS NULL OR valid_until > now())
				ORDER BY org_id, user_id LIMIT 1`).Scan(&org0, &user0)
			if errors.Is(err, pgx.ErrNoRows) {
				err = pool.QueryRow(ctx, `UPDATE orgperm.memberships SET status = 'active', valid_from = NULL, valid_until = NULL
					WHERE (org_id, user_id) = (SELECT org_id, user_id FROM orgperm.memberships ORDER BY org_id, user_id LIMIT 1)
					RETURNING org_id, user_id`).Scan(&org0, &user0)
			}
			if err != nil {
				t.Fatal(err)
			}
			exec(`INSERT INTO orgperm.data_access (org_id, user_id, resource_type, resource_id)
				VALUES ($1, $2, 'invoice', 'r0') ON CONFLICT DO NOTHING`, org0, user0)

			codename := d.codenames[rng.IntN(len(d.codenames))]
			role := appRole(t, pool, true)
			exec(`CREATE TABLE public.invoices (org_id text, id text, amount int)`)
			exec(`CREATE TABLE public.invoices_strict (LIKE public.invoices)`)
			for _, tbl := range []string{"invoices", "invoices_strict"} {
				exec(`INSERT INTO public.`+tbl+` (org_id, id, amount)
					SELECT o, r, 1 FROM unnest($1::text[]) o, unnest($2::text[]) r
					UNION ALL VALUES ('org-0', NULL, 1), (NULL, 'r0', 1)`,
					append(slices.Clone(d.orgs), "org-none"), rlsRowIDs)
				exec(`GRANT SELECT ON public.` + tbl + ` TO ` + role)
			}
			exec(`SELECT orgperm.protect_table('public.invoices', 'org_id', 'id', 'invoice')`)
			exec(`SELECT orgperm.protect_table('public.invoices_strict', 'org_id', 'id', 'invoice', $1)`, codename)

			visible := func(org, user string) (at time.Time, rows, strict []string) {
				t.Helper()
				err := asRole(t, pool, role, org, user, func(tx pgx.Tx) error {
					return tx.QueryRow(ctx, `SELECT statement_timestamp(),
						array(SELECT coalesce(org_id, '-') || '/' || coalesce(id, '-') FROM public.invoices ORDER BY 1),
						array(SELECT coalesce(org_id, '-') || '/' || coalesce(id, '-') FROM public.invoices_strict ORDER BY 1)`).
						Scan(&at, &rows, &strict)
				})
				if err != nil {
					t.Fatal(err)
				}
				return at, rows, strict
			}

			pairs, seen := 0, 0
			for _, org := range append(slices.Clone(d.orgs), "org-none") {
				for _, user := range append(slices.Clone(d.users), "user-none") {
					at, rows, strict := visible(org, user)
					s, err := d.store.Load(ctx, org, user, at)
					if err != nil {
						t.Fatal(err)
					}
					// From CanAccess, row by row.
					var want, wantStrict []string
					for _, id := range rlsRowIDs {
						if s.CanAccess("invoice", id) {
							want = append(want, org+"/"+id)
						}
					}
					if s.Has(codename) {
						wantStrict = want
					}
					// From AccessibleIDs.
					all, ids := s.AccessibleIDs("invoice")
					var fromIDs []string
					for _, id := range rlsRowIDs {
						if all || slices.Contains(ids, id) {
							fromIDs = append(fromIDs, org+"/"+id)
						}
					}
					where := fmt.Sprintf("(%s, %s) at %s", org, user, at.Format(time.RFC3339Nano))
					if !slices.Equal(rows, want) && len(rows)+len(want) > 0 {
						t.Errorf("%s: invoices visible %v, CanAccess admits %v", where, rows, want)
					}
					if !slices.Equal(rows, fromIDs) && len(rows)+len(fromIDs) > 0 {
						t.Errorf("%s: invoices visible %v, AccessibleIDs admits %v", where, rows, fromIDs)
					}
					if !slices.Equal(strict, wantStrict) && len(strict)+len(wantStrict) > 0 {
						t.Errorf("%s: invoices_strict visible %v, Has(%q) && CanAccess admit %v", where, strict, codename, wantStrict)
					}
					pairs++
					seen += len(rows)
				}
			}
			// A user but no org: nothing.
			for _, user := range d.users {
				if _, rows, strict := visible("", user); len(rows)+len(strict) > 0 {
					t.Errorf("principal %s without an org sees %v %v", user, rows, strict)
				}
			}
			// No principal at all: nothing.
			if _, rows, strict := visible("", ""); len(rows)+len(strict) > 0 {
				t.Errorf("no principal: sees %v %v", rows, strict)
			}
			if seen == 0 {
				t.Errorf("no (org, user) sees any row: the comparison proves nothing")
			}
			t.Logf("%d (org, user) principals, %d rows visible in all, codename %s", pairs, seen, codename)
		})
	}
}

// TestRLSPrivileges: a role with orgperm_reader but no privilege on
// orgperm's tables reads a protected table through the policy, cannot read
// orgperm's tables, cannot protect or unprotect a table, and writes only
// rows it may access. A role without orgperm_reader gets an error, never a
// row. The principal ends with its transaction.
func TestRLSPrivileges(t *testing.T) {
	t.Parallel()
	f := setupFixture(t)
	ctx := context.Background()
	pool := f.pool
	exec := func(sql string) {
		t.Helper()
		if _, err := pool.Exec(ctx, sql); err != nil {
			t.Fatalf("%v\n%s", err, sql)
		}
	}
	reader := appRole(t, pool, true)
	outsider := appRole(t, pool, false)
	exec(`CREATE TABLE public.invoices (org_id text NOT NULL, id text NOT NULL, PRIMARY KEY (org_id, id))`)
	exec(`INSERT INTO public.invoices VALUES ('acme', 'inv-1'), ('acme', 'inv-2'), ('acme', 'inv-3'), ('acme', 'inv-4'), ('globex', 'inv-9')`)
	exec(`GRANT SELECT, INSERT ON public.invoices TO ` + reader + `, ` + outsider)
	exec(`SELECT orgperm.protect_table('public.invoices', 'org_id', 'id', 'invoice')`)

	ids := func(tx pgx.Tx) ([]string, error) {
		var ids []string
		err := tx.QueryRow(ctx, `SELECT array(SELECT org_id || '/' || id FROM public.invoices ORDER BY 1)`).Scan(&ids)
		return ids, err
	}
	// alice in acme: inv-1 and inv-2 (her own grants), inv-3 (accountant).
	if err := asRole(t, pool, reader, "acme", "alice", func(tx pgx.Tx) error {
		got, err := ids(tx)
		if err != nil {
			return err
		}
		if want := []string{"acme/inv-1", "acme/inv-2", "acme/inv-3"}; !slices.Equal(got, want) {
			t.Errorf("alice in acme sees %v, want %v", got, want)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	denied := []string{
		`SELECT count(*) FROM orgperm.memberships`,
		`SELECT count(*) FROM orgperm.data_access`,
		`SELECT count(*) FROM ONLY orgperm.roles`,
		`SELECT orgperm.unprotect_table('public.invoices')`,
		`SELECT orgperm.protect_table('public.invoices', 'org_id', 'id', 'project')`,
	}
	for _, q := range denied {
		err := asRole(t, pool, reader, "acme", "alice", func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, q)
			return err
		})
		if !isInsufficientPrivilege(err) {
			t.Errorf("%s as a reader: %v; want permission denied", q, err)
		}
	}

	// Writes: a row alice may access is admitted, one she may not is not.
	if err := asRole(t, pool, reader, "acme", "alice", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM public.invoices WHERE id = 'inv-1'`); !isInsufficientPrivilege(err) {
			t.Errorf("DELETE without the privilege: %v", err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	exec(`DELETE FROM public.invoices WHERE id = 'inv-2'`)
	if err := asRole(t, pool, reader, "acme", "alice", func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO public.invoices VALUES ('acme', 'inv-2')`)
		return err
	}); err != nil {
		t.Errorf("alice inserting inv-2, which she may access: %v", err)
	}
	if err := asRole(t, pool, reader, "acme", "alice", func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO public.invoices VALUES ('acme', 'inv-7')`)
		return err
	}); !isInsufficientPrivilege(err) {
		t.Errorf("alice inserting inv-7, which she may not access: %v; want a row-level security violation", err)
	}

	// Without orgperm_reader: an error, not rows.
	err := asRole(t, pool, outsider, "acme", "alice", func(tx pgx.Tx) error {
		got, err := ids(tx)
		if err == nil {
			t.Errorf("a role without orgperm_reader read %v", got)
		}
		return err
	})
	if !isInsufficientPrivilege(err) {
		t.Errorf("a role without orgperm_reader: %v; want permission denied", err)
	}

	// The principal ends with its transaction: on the same connection, the
	// next transaction sees nothing.
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	for i, principal := range []bool{true, false} {
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `SET LOCAL ROLE `+reader); err != nil {
			t.Fatal(err)
		}
		if principal {
			if err := SetPrincipal(ctx, tx, "acme", "alice"); err != nil {
				t.Fatal(err)
			}
		}
		got, err := ids(tx)
		if err != nil {
			t.Fatal(err)
		}
		if (len(got) > 0) != principal {
			t.Errorf("transaction %d (principal set: %v) sees %v", i, principal, got)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRLSOncePerStatement: the policy computes the permission data once
// per statement, not once per row: scanning 2,000 rows, or looking one up
// by its key, calls policy_all_of_type once, and policy_ids once when the
// principal has no type-wide access, never when it has.
func TestRLSOncePerStatement(t *testing.T) {
	t.Parallel()
	f := setupFixture(t)
	ctx := context.Background()
	pool := f.pool
	reader := appRole(t, pool, true)
	for _, sql := range []string{
		`CREATE TABLE public.invoices (org_id text, id text PRIMARY KEY)`,
		`INSERT INTO public.invoices SELECT 'acme', 'inv-' || i FROM generate_series(1, 2000) i`,
		`CREATE TABLE public.customers (org_id text, id text PRIMARY KEY)`,
		`INSERT INTO public.customers SELECT 'acme', 'c-' || i FROM generate_series(1, 2000) i`,
		`GRANT SELECT ON public.invoices, public.customers TO ` + reader,
		`SELECT orgperm.protect_table('public.invoices', 'org_id', 'id', 'invoice', 'billing.view_invoice')`,
		`SELECT orgperm.protect_table('public.customers', 'org_id', 'id', 'customer', 'billing.view_invoice')`,
	} {
		if _, err := pool.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		table, where       string
		rows               int
		allCalls, idsCalls int64
	}{
		// alice: inv-1, inv-2 (hers), inv-3 (accountant): the flag is
		// false, then the list.
		{"invoices", "", 3, 1, 1},
		{"invoices", "WHERE id = 'inv-2'", 1, 1, 1},
		// The accountant role has every customer: the flag is true and
		// the list is never asked for.
		{"customers", "", 2000, 1, 0},
		{"customers", "WHERE id = 'c-7'", 1, 1, 0},
	} {
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var n int
		var allCalls, idsCalls, allBefore, idsBefore int64
		// pg_stat_xact_user_functions may still hold calls of earlier
		// transactions of the connection (not yet flushed): count the
		// difference, inside this transaction.
		const calls = `SELECT
				coalesce(sum(calls) FILTER (WHERE funcname = 'policy_all_of_type'), 0),
				coalesce(sum(calls) FILTER (WHERE funcname = 'policy_ids'), 0)
				FROM pg_stat_xact_user_functions WHERE schemaname = 'orgperm'`
		err = func() error {
			if _, err := tx.Exec(ctx, `SET LOCAL track_functions = 'pl'`); err != nil {
				return err
			}
			if err := tx.QueryRow(ctx, calls).Scan(&allBefore, &idsBefore); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `SET LOCAL ROLE `+reader); err != nil {
				return err
			}
			if err := SetPrincipal(ctx, tx, "acme", "alice"); err != nil {
				return err
			}
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM public.`+c.table+` `+c.where).Scan(&n); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `RESET ROLE`); err != nil {
				return err
			}
			return tx.QueryRow(ctx, calls).Scan(&allCalls, &idsCalls)
		}()
		allCalls -= allBefore
		idsCalls -= idsBefore
		_ = tx.Rollback(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n != c.rows {
			t.Errorf("%s %s: alice sees %d rows, want %d", c.table, c.where, n, c.rows)
		}
		if allCalls != c.allCalls || idsCalls != c.idsCalls {
			t.Errorf("%s %s: the statement called policy_all_of_type %d times and policy_ids %d times; want %d and %d",
				c.table, c.where, allCalls, idsCalls, c.allCalls, c.idsCalls)
		}
	}
}

// TestProtectTableColumnTypes: columns of other types than text are
// compared in their text form (a uuid org, a bigint ID), and bad arguments
// are rejected with a clear error.
func TestProtectTableColumnTypes(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	ctx := context.Background()
	const org = "6f0e5d1c-0000-4000-8000-000000000001"
	reader := appRole(t, pool, true)
	for _, sql := range []string{
		`INSERT INTO orgperm.memberships (org_id, user_id) VALUES ('` + org + `', 'u1')`,
		`INSERT INTO orgperm.data_access (org_id, user_id, resource_type, resource_id) VALUES
			('` + org + `', 'u1', 'thing', '7'), ('` + org + `', 'u1', 'thing', '09'), ('` + org + `', 'u1', 'thing', 'x')`,
		`CREATE TABLE public.things (tenant uuid NOT NULL, id bigint PRIMARY KEY)`,
		`INSERT INTO public.things SELECT '` + org + `', i FROM generate_series(1, 20) i`,
		`INSERT INTO public.things VALUES ('6f0e5d1c-0000-4000-8000-000000000002', 21)`,
		`GRANT SELECT ON public.things TO ` + reader,
		`SELECT orgperm.protect_table('things', 'tenant', 'id', 'thing')`,
	} {
		if _, err := pool.Exec(ctx, sql); err != nil {
			t.Fatalf("%v\n%s", err, sql)
		}
	}
	var got []int64
	if err := asRole(t, pool, reader, org, "u1", func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT array(SELECT id FROM public.things ORDER BY id)`).Scan(&got)
	}); err != nil {
		t.Fatal(err)
	}
	// '09' is not the text form of 9; 'x' is no bigint: neither matches.
	if !slices.Equal(got, []int64{7}) {
		t.Errorf("u1 sees things %v, want [7]", got)
	}

	for _, c := range []struct{ call, want string }{
		{`orgperm.protect_table('things', 'nope', 'id', 'thing')`, "42703"},
		{`orgperm.protect_table('things', 'tenant', 'nope', 'thing')`, "42703"},
		{`orgperm.protect_table('things', 'tenant', 'id', 'Thing!')`, "22023"},
		{`orgperm.protect_table('things', 'tenant', 'id', 'thing', 'not a codename')`, "22023"},
		{`orgperm.protect_table('things', 'tenant', 'id', NULL)`, "22004"},
		{`orgperm.protect_table('orgperm.memberships', 'org_id', 'user_id', 'thing')`, "22023"},
		{`orgperm.protect_table('no_such_table', 'tenant', 'id', 'thing')`, "42P01"},
	} {
		_, err := pool.Exec(ctx, `SELECT `+c.call)
		var code string
		if pgErr := (*pgconnError)(nil); errors.As(err, &pgErr) {
			code = pgErr.Code
		}
		if code != c.want {
			t.Errorf("%s: %v; want SQLSTATE %s", c.call, err, c.want)
		}
	}
	// A failed call changed nothing: the policy still admits 7 only.
	if err := asRole(t, pool, reader, org, "u1", func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT array(SELECT id FROM public.things ORDER BY id)`).Scan(&got)
	}); err != nil || !slices.Equal(got, []int64{7}) {
		t.Errorf("after the failed calls u1 sees %v, %v", got, err)
	}

	// unprotect_table: RLS off, every row visible again.
	if _, err := pool.Exec(ctx, `SELECT orgperm.unprotect_table('things')`); err != nil {
		t.Fatal(err)
	}
	if err := asRole(t, pool, reader, "", "", func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT array(SELECT id FROM public.things ORDER BY id)`).Scan(&got)
	}); err != nil || len(got) != 21 {
		t.Errorf("after unprotect_table: %d rows, %v; want 21", len(got), err)
	}
}

// TestProtectTableTypedIDs: integer and uuid ID columns are compared in
// their own type against the granted IDs that are canonical text forms of
// that type, with the answers of a comparison in text form: for every
// column type and principal, the visible rows are exactly those whose
// id::text is granted. u1's grants include forms that are not canonical
// ('09', '+4', ' 5', an upper-case uuid) and values out of range, so the
// list is checked ID by ID; u2's are all canonical, checked as one list.
// u3 may access every thing (a type-wide grant), u4 none.
func TestProtectTableTypedIDs(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	ctx := context.Background()
	reader := appRole(t, pool, true)
	const u1 = "6f0e5d1c-0000-4000-8000-0000000000a1"
	const u2 = "6F0E5D1C-0000-4000-8000-0000000000A2"
	grants := map[string][]string{
		"u1": {"7", "09", "x", "-3", "+4", " 5", "0", "-0", "32767", "32768", "2147483648", "-2147483649",
			"9223372036854775807", "9223372036854775808", "-9223372036854775808", "-9223372036854775809",
			"100000000000000000", "1000000000000000000", u1, u2, "{1,2}"},
		"u2": {"1", "2", "-32768", "2147483647", "999999999999999999", strings.ToLower(u2)},
	}
	for _, sql := range []string{
		`INSERT INTO orgperm.memberships (org_id, user_id) VALUES ('acme', 'u1'), ('acme', 'u2'), ('acme', 'u3'), ('acme', 'u4')`,
		`INSERT INTO orgperm.data_access (org_id, user_id, resource_type) VALUES ('acme', 'u3', 'thing')`,
		`CREATE TABLE public.ids (v text PRIMARY KEY)`,
		`INSERT INTO public.ids VALUES ('7'), ('9'), ('-3'), ('4'), ('5'), ('0'), ('1'), ('2'), ('32767'), ('32768'), ('-32768'),
			('2147483647'), ('2147483648'), ('-2147483649'), ('9223372036854775807'), ('-9223372036854775808'),
			('100000000000000000'), ('1000000000000000000'), ('999999999999999999')`,
		`INSERT INTO public.ids VALUES ('` + u1 + `'), ('` + strings.ToLower(u2) + `'), ('6f0e5d1c-0000-4000-8000-0000000000a3')`,
	} {
		if _, err := pool.Exec(ctx, sql); err != nil {
			t.Fatalf("%v\n%s", err, sql)
		}
	}
	for user, ids := range grants {
		if _, err := pool.Exec(ctx, `INSERT INTO orgperm.data_access (org_id, user_id, resource_type, resource_id)
			SELECT 'acme', $1, 'thing', unnest($2::text[])`, user, ids); err != nil {
			t.Fatal(err)
		}
	}
	// The values of public.ids each type holds.
	types := map[string]string{
		"int2":    `v ~ '^-?[0-9]{1,18}$' AND v::int8 BETWEEN -32768 AND 32767`,
		"int4":    `v ~ '^-?[0-9]{1,18}$' AND v::int8 BETWEEN -2147483648 AND 2147483647`,
		"int8":    `v ~ '^-?[0-9]{1,19}$'`,
		"uuid":    `v ~ '^[0-9a-f]{8}-'`,
		"numeric": `v ~ '^-?[0-9]+$'`,
		"text":    `true`,
	}
	for typ, holds := range types {
		tbl := "public.t_" + typ
		for _, sql := range []string{
			`CREATE TABLE ` + tbl + ` (org_id text NOT NULL, id ` + typ + ` PRIMARY KEY)`,
			`INSERT INTO ` + tbl + ` SELECT 'acme', v::` + typ + ` FROM public.ids WHERE ` + holds,
			`GRANT SELECT ON ` + tbl + ` TO ` + reader,
			`SELECT orgperm.protect_table('` + tbl + `', 'org_id', 'id', 'thing')`,
		} {
			if _, err := pool.Exec(ctx, sql); err != nil {
				t.Fatalf("%v\n%s", err, sql)
			}
		}
		for user := range grants {
			var want, got []string
			if err := pool.QueryRow(ctx, `SELECT array(SELECT id::text FROM `+tbl+` WHERE id::text IN
				(SELECT resource_id FROM orgperm.data_access WHERE user_id = $1) ORDER BY 1)`, user).Scan(&want); err != nil {
				t.Fatal(err)
			}
			if err := asRole(t, pool, reader, "acme", user, func(tx pgx.Tx) error {
				return tx.QueryRow(ctx, `SELECT array(SELECT id::text FROM `+tbl+` ORDER BY 1)`).Scan(&got)
			}); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) || len(want) == 0 {
				t.Errorf("%s, %s: sees %v, want %v (the rows whose id::text is granted)", typ, user, got, want)
			}
		}
		// u3's type-wide grant admits every row, whatever the column's
		// type; u4, a member without grants, none.
		for user, all := range map[string]bool{"u3": true, "u4": false} {
			var n, total int
			if err := pool.QueryRow(ctx, `SELECT count(*) FROM `+tbl).Scan(&total); err != nil {
				t.Fatal(err)
			}
			if err := asRole(t, pool, reader, "acme", user, func(tx pgx.Tx) error {
				return tx.QueryRow(ctx, `SELECT count(*) FROM `+tbl).Scan(&n)
			}); err != nil {
				t.Fatal(err)
			}
			if want := map[bool]int{true: total, false: 0}[all]; n != want || total == 0 {
				t.Errorf("%s, %s: sees %d of %d rows, want %d", typ, user, n, total, want)
			}
		}
	}
}
