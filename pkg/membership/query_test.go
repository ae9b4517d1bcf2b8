package membership

import (
	"context"
	"strings"
	"testing"
	"time"
)

// queryEnv is a small model: acme with alice (active, editor), bob
// (invited, editor) and carol (active, no role); the role editor grants
// app.edit; a grant of invoice inv-1 to alice.
func queryEnv(t *testing.T) *adminEnv {
	t.Helper()
	e := setupAdmin(t)
	ctx := context.Background()
	_, err := e.store.EnsurePermissions(ctx, Permission{Codename: "app.edit"})
	must(t, err)
	id, _, err := e.store.EnsureRole(ctx, "acme", "editor", []string{"app.edit"})
	must(t, err)
	must(t, e.store.AddMember(ctx, "acme", "alice", MemberOptions{}))
	must(t, e.store.AddMember(ctx, "acme", "bob", MemberOptions{Status: StatusInvited}))
	must(t, e.store.AddMember(ctx, "acme", "carol", MemberOptions{}))
	must(t, e.store.AssignRole(ctx, "acme", "alice", id, nil))
	must(t, e.store.AssignRole(ctx, "acme", "bob", id, nil))
	_, err = e.store.GrantDataAccess(ctx, "acme", UserSubject("alice"), "invoice", "inv-1")
	must(t, err)
	return e
}

func users[T any](items []T, key func(T) string) string {
	var out []string
	for _, it := range items {
		out = append(out, key(it))
	}
	return strings.Join(out, ",")
}

func memberUser(m Member) string { return m.User }
func holderUser(h Holder) string { return h.User }

// Bad input: a typed error and no SQL.
func TestQueryValidation(t *testing.T) {
	t.Parallel()
	e := queryEnv(t)
	ctx := context.Background()
	// A cursor of another list, and garbage.
	p, err := e.store.ListMembers(ctx, "acme", MemberQuery{ListOptions: ListOptions{Limit: 1}})
	must(t, err)
	if p.Next == "" {
		t.Fatal("no next page")
	}
	foreign := p.Next
	calls := e.tracer.n.Load()
	for _, c := range []struct {
		name string
		call func() error
		want error
	}{
		{"bad org", func() error { _, err := e.store.ListMembers(ctx, "", MemberQuery{}); return err }, ErrInvalidID},
		{"bad status", func() error {
			_, err := e.store.ListMembers(ctx, "acme", MemberQuery{Status: "gone"})
			return err
		}, ErrInvalidStatus},
		{"negative limit", func() error {
			_, err := e.store.ListMembers(ctx, "acme", MemberQuery{ListOptions: ListOptions{Limit: -1}})
			return err
		}, ErrInvalidLimit},
		{"limit too big", func() error {
			_, _, err := e.store.UserOrgs(ctx, "alice", ListOptions{Limit: MaxLimit + 1})
			return err
		}, ErrInvalidLimit},
		{"garbage cursor", func() error {
			_, err := e.store.ListMembers(ctx, "acme", MemberQuery{ListOptions: ListOptions{Cursor: "!!not base64"}})
			return err
		}, ErrInvalidCursor},
		{"json but not a cursor", func() error {
			_, err := e.store.ListRoles(ctx, "acme", ListOptions{Cursor: "e30"}) // {}
			return err
		}, ErrInvalidCursor},
		{"cursor of another list", func() error {
			_, err := e.store.WhoHas(ctx, "acme", "app.edit", ListOptions{Cursor: foreign})
			return err
		}, ErrInvalidCursor},
		{"members cursor for roles", func() error {
			_, err := e.store.ListRoles(ctx, "acme", ListOptions{Cursor: foreign})
			return err
		}, ErrInvalidCursor},
		{"bad codename", func() error { _, err := e.store.WhoHas(ctx, "acme", "edit", ListOptions{}); return err }, ErrInvalidCodename},
		{"bad resource type", func() error {
			_, err := e.store.WhoCanAccess(ctx, "acme", "Invoice", "x", ListOptions{})
			return err
		}, ErrInvalidResourceType},
		{"empty resource id", func() error {
			_, err := e.store.WhoCanAccess(ctx, "acme", "invoice", "", ListOptions{})
			return err
		}, ErrInvalidID},
		{"resource id without type", func() error {
			_, err := e.store.ListGrants(ctx, "acme", GrantQuery{ResourceID: "x"})
			return err
		}, ErrInvalidResourceType},
		{"bad role name", func() error { _, err := e.store.RoleByName(ctx, "acme", ""); return err }, ErrInvalidRoleName},
		{"bad user", func() error { _, _, err := e.store.UserOrgs(ctx, "a\x00b", ListOptions{}); return err }, ErrInvalidID},
	} {
		if err := c.call(); !errorsIs(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	if n := e.tracer.n.Load() - calls; n != 0 {
		t.Errorf("bad input made %d round trips", n)
	}
	if _, err := e.store.RoleByName(ctx, "acme", "nope"); !errorsIs(err, ErrUnknownRole) {
		t.Errorf("RoleByName(nope): %v", err)
	}
}

// Each read is one statement, and the pages follow each other.
func TestQueryOneStatementAndPages(t *testing.T) {
	t.Parallel()
	e := queryEnv(t)
	ctx := context.Background()
	one := func(what string, call func() error) {
		t.Helper()
		before := e.tracer.n.Load()
		must(t, call())
		if n := e.tracer.n.Load() - before; n != 1 {
			t.Errorf("%s: %d round trips, want 1", what, n)
		}
	}
	var all []Member
	cursor := ""
	for {
		var p Page[Member]
		one("ListMembers", func() (err error) {
			p, err = e.store.ListMembers(ctx, "acme", MemberQuery{ListOptions: ListOptions{Limit: 2, Cursor: cursor}})
			return err
		})
		all = append(all, p.Items...)
		if p.Next == "" {
			break
		}
		cursor = p.Next
	}
	if got := users(all, memberUser); got != "alice,bob,carol" {
		t.Errorf("members = %s", got)
	}
	one("UserOrgs", func() error { _, _, err := e.store.UserOrgs(ctx, "alice", ListOptions{}); return err })
	one("ListRoles", func() error { _, err := e.store.ListRoles(ctx, "acme", ListOptions{}); return err })
	one("RoleByName", func() error { _, err := e.store.RoleByName(ctx, "acme", "editor"); return err })
	one("WhoHas", func() error { _, err := e.store.WhoHas(ctx, "acme", "app.edit", ListOptions{}); return err })
	one("WhoCanAccess", func() error {
		_, err := e.store.WhoCanAccess(ctx, "acme", "invoice", "inv-1", ListOptions{})
		return err
	})
	one("ListGrants", func() error { _, err := e.store.ListGrants(ctx, "acme", GrantQuery{}); return err })

	who, err := e.store.WhoHas(ctx, "acme", "app.edit", ListOptions{})
	must(t, err)
	if got := users(who.Items, holderUser); got != "alice" || who.Items[0].RoleName != "editor" {
		t.Errorf("WhoHas = %+v (bob is invited, carol has no role)", who.Items)
	}
	acc, err := e.store.WhoCanAccess(ctx, "acme", "invoice", "inv-1", ListOptions{})
	must(t, err)
	if got := users(acc.Items, holderUser); got != "alice" || acc.Items[0].GrantID == 0 {
		t.Errorf("WhoCanAccess = %+v", acc.Items)
	}
}

// A zero At is the database's time, read in the statement itself.
func TestQueryDatabaseTime(t *testing.T) {
	t.Parallel()
	e := queryEnv(t)
	ctx := context.Background()
	// dave's window opened an hour ago by the database's clock and ends
	// in an hour; erin's opens in an hour.
	_, err := e.plain.Exec(ctx, `INSERT INTO orgperm.memberships (org_id, user_id, valid_from, valid_until) VALUES
		('acme', 'dave', now() - interval '1 hour', now() + interval '1 hour'),
		('acme', 'erin', now() + interval '1 hour', NULL)`)
	must(t, err)
	var before, after time.Time
	must(t, e.plain.QueryRow(ctx, `SELECT statement_timestamp()`).Scan(&before))
	p, err := e.store.ListMembers(ctx, "acme", MemberQuery{})
	must(t, err)
	must(t, e.plain.QueryRow(ctx, `SELECT statement_timestamp()`).Scan(&after))
	if p.At.Before(before) || p.At.After(after) {
		t.Errorf("Page.At %v not in the database's [%v, %v]", p.At, before, after)
	}
	for _, m := range p.Items {
		if want := m.User != "bob" && m.User != "erin"; m.Active != want {
			t.Errorf("%s: Active %v, want %v", m.User, m.Active, want)
		}
	}
	// An explicit At: two hours later dave is out and erin in.
	p, err = e.store.ListMembers(ctx, "acme", MemberQuery{ListOptions: ListOptions{At: after.Add(2 * time.Hour)}})
	must(t, err)
	for _, m := range p.Items {
		if want := m.User != "bob" && m.User != "dave"; m.Active != want {
			t.Errorf("+2h %s: Active %v, want %v", m.User, m.Active, want)
		}
	}
}

// 'infinity' and '-infinity' are open bounds, as PostgreSQL orders them.
func TestQueryInfinity(t *testing.T) {
	t.Parallel()
	e := queryEnv(t)
	ctx := context.Background()
	_, err := e.plain.Exec(ctx, `
		UPDATE orgperm.memberships SET valid_from = '-infinity', valid_until = 'infinity' WHERE user_id = 'alice';
		UPDATE orgperm.membership_roles SET valid_until = 'infinity' WHERE user_id = 'alice';
		INSERT INTO orgperm.memberships (org_id, user_id, valid_until) VALUES ('globex', 'alice', '-infinity')`)
	must(t, err)
	p, err := e.store.ListMembers(ctx, "acme", MemberQuery{})
	must(t, err)
	a := p.Items[0]
	if a.User != "alice" || !a.Active || !a.ValidFrom.IsZero() || !a.ValidUntil.IsZero() ||
		len(a.Roles) != 1 || !a.Roles[0].ValidUntil.IsZero() {
		t.Errorf("alice = %+v", a)
	}
	who, err := e.store.WhoHas(ctx, "acme", "app.edit", ListOptions{})
	must(t, err)
	if got := users(who.Items, holderUser); got != "alice" {
		t.Errorf("WhoHas = %s", got)
	}
	orgs, ua, err := e.store.UserOrgs(ctx, "alice", ListOptions{})
	must(t, err)
	// globex ended at '-infinity': never active; no finite boundary.
	if len(orgs.Items) != 2 || !orgs.Items[0].Active || orgs.Items[1].Active || !ua.Active || !ua.ValidUntil.IsZero() {
		t.Errorf("UserOrgs = %+v, %+v", orgs.Items, ua)
	}
}

// Rows of a child table that INHERITs an orgperm table are not part of the
// model.
func TestQueryOnlyTheTables(t *testing.T) {
	t.Parallel()
	e := queryEnv(t)
	ctx := context.Background()
	_, err := e.plain.Exec(ctx, `
		CREATE TABLE public.memberships_archive () INHERITS (orgperm.memberships);
		INSERT INTO public.memberships_archive (org_id, user_id) VALUES ('acme', 'zed');
		CREATE TABLE public.grants_archive () INHERITS (orgperm.data_access);
		INSERT INTO public.grants_archive (id, org_id, user_id, resource_type, resource_id) VALUES (1000, 'acme', 'carol', 'invoice', 'inv-1')`)
	must(t, err)
	var n int
	must(t, e.plain.QueryRow(ctx, `SELECT count(*) FROM orgperm.memberships WHERE org_id = 'acme'`).Scan(&n))
	if n != 4 {
		t.Fatalf("without ONLY the parent shows %d rows, want 4 (the test would prove nothing)", n)
	}
	p, err := e.store.ListMembers(ctx, "acme", MemberQuery{})
	must(t, err)
	if got := users(p.Items, memberUser); got != "alice,bob,carol" {
		t.Errorf("ListMembers = %s", got)
	}
	orgs, _, err := e.store.UserOrgs(ctx, "zed", ListOptions{})
	must(t, err)
	if len(orgs.Items) != 0 {
		t.Errorf("UserOrgs(zed) = %+v", orgs.Items)
	}
	acc, err := e.store.WhoCanAccess(ctx, "acme", "invoice", "inv-1", ListOptions{})
	must(t, err)
	if got := users(acc.Items, holderUser); got != "alice" {
		t.Errorf("WhoCanAccess = %s", got)
	}
	g, err := e.store.ListGrants(ctx, "acme", GrantQuery{})
	must(t, err)
	if len(g.Items) != 1 {
		t.Errorf("ListGrants = %+v", g.Items)
	}
}
