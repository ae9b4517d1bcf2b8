package membership

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

type adminEnv struct {
	store  *Store
	plain  *pgxpool.Pool
	tracer *countingTracer
	rec    *scopeRecorder
}

func setupAdmin(t *testing.T) *adminEnv {
	t.Helper()
	traced, plain, tr := tracedPool(t)
	e := &adminEnv{store: NewStore(traced), plain: plain, tracer: tr, rec: &scopeRecorder{}}
	e.store.onWrite = e.rec.record
	return e
}

func (e *adminEnv) load(t *testing.T, org, user string, at time.Time) *PermissionSet {
	t.Helper()
	s, err := e.store.Load(context.Background(), org, user, at)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// expectScopes checks the scopes OnWrite reported since the last call.
func (e *adminEnv) expectScopes(t *testing.T, what string, want ...Scope) {
	t.Helper()
	if got := e.rec.take(); !slices.Equal(got, want) {
		t.Errorf("%s: write hook scopes = %+v, want %+v", what, got, want)
	}
}

// snapshot is the content of every orgperm table, to prove that a failed
// write wrote nothing.
func snapshot(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	var b strings.Builder
	for _, table := range []string{"permissions", "roles", "role_permissions", "memberships", "membership_roles", "data_access"} {
		var n int64
		var sum string
		err := pool.QueryRow(context.Background(), fmt.Sprintf(
			`SELECT count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM orgperm.%s t`, table)).Scan(&n, &sum)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s=%d:%s ", table, n, sum)
	}
	return b.String()
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func mustID(t *testing.T) func(int64, error) int64 {
	return func(id int64, err error) int64 {
		t.Helper()
		must(t, err)
		return id
	}
}

func TestAdminWrites(t *testing.T) {
	t.Parallel()
	e := setupAdmin(t)
	ctx := context.Background()
	id := mustID(t)
	hour := func(h float64) *time.Time { x := t0.Add(time.Duration(h * float64(time.Hour))); return &x }

	for _, c := range []string{"billing.view_invoice", "billing.edit_invoice", "users.view_user", "users.manage_user"} {
		must(t, e.store.EnsurePermission(ctx, c, "first"))
	}
	must(t, e.store.EnsurePermission(ctx, "users.view_user", "See users"))
	var desc string
	must(t, e.plain.QueryRow(ctx, `SELECT description FROM orgperm.permissions WHERE codename = 'users.view_user'`).Scan(&desc))
	if desc != "See users" {
		t.Errorf("description = %q", desc)
	}
	e.expectScopes(t, "EnsurePermission")

	viewer := id(e.store.CreateRole(ctx, "", "viewer", "billing.view_invoice"))
	acct := id(e.store.CreateRole(ctx, "acme", "acct", "billing.edit_invoice", "billing.view_invoice", "billing.edit_invoice"))
	globexRole := id(e.store.CreateRole(ctx, "globex", "acct"))
	e.expectScopes(t, "CreateRole")

	must(t, e.store.AddMember(ctx, "acme", "alice", MemberOptions{}))
	e.expectScopes(t, "AddMember", Scope{Org: "acme", User: "alice"})
	if s := e.load(t, "acme", "alice", t0); !s.Active() || s.Status() != StatusActive || len(s.Permissions()) != 0 {
		t.Errorf("after AddMember: %s", mustJSON(t, s))
	}

	must(t, e.store.AssignRole(ctx, "acme", "alice", viewer, nil))
	must(t, e.store.AssignRole(ctx, "acme", "alice", acct, hour(1)))
	e.expectScopes(t, "AssignRole", Scope{Org: "acme", User: "alice"}, Scope{Org: "acme", User: "alice"})
	s := e.load(t, "acme", "alice", t0)
	if !s.HasAll("billing.view_invoice", "billing.edit_invoice") || !s.ValidUntil().Equal(*hour(1)) {
		t.Errorf("after AssignRole: %s", mustJSON(t, s))
	}
	if s := e.load(t, "acme", "alice", *hour(1)); s.Has("billing.edit_invoice") || !s.Has("billing.view_invoice") {
		t.Errorf("after the assignment's end: %s", mustJSON(t, s))
	}
	must(t, e.store.AssignRole(ctx, "acme", "alice", acct, nil)) // re-assigning sets the end
	e.rec.take()
	if s := e.load(t, "acme", "alice", *hour(5)); !s.Has("billing.edit_invoice") {
		t.Errorf("after re-assigning without an end: %s", mustJSON(t, s))
	}

	must(t, e.store.GrantPermissions(ctx, acct, "users.view_user"))
	e.expectScopes(t, "GrantPermissions org role", Scope{Org: "acme"})
	must(t, e.store.GrantPermissions(ctx, acct, "users.view_user"))
	e.expectScopes(t, "GrantPermissions again")
	must(t, e.store.GrantPermissions(ctx, viewer, "users.manage_user"))
	e.expectScopes(t, "GrantPermissions system role", Scope{All: true})
	if s := e.load(t, "acme", "alice", t0); !s.HasAll("users.view_user", "users.manage_user") {
		t.Errorf("after GrantPermissions: %s", mustJSON(t, s))
	}
	must(t, e.store.RevokePermissions(ctx, acct, "users.view_user", "users.manage_user"))
	e.expectScopes(t, "RevokePermissions", Scope{Org: "acme"})
	must(t, e.store.RevokePermissions(ctx, acct, "users.view_user"))
	e.expectScopes(t, "RevokePermissions again")
	if s := e.load(t, "acme", "alice", t0); s.Has("users.view_user") || !s.Has("users.manage_user") {
		t.Errorf("after RevokePermissions: %s", mustJSON(t, s))
	}

	must(t, e.store.RenameRole(ctx, acct, "accountant"))
	e.expectScopes(t, "RenameRole org role", Scope{Org: "acme"})
	must(t, e.store.RenameRole(ctx, viewer, "reader"))
	e.expectScopes(t, "RenameRole system role", Scope{All: true})
	var names []string
	for _, r := range e.load(t, "acme", "alice", t0).Roles() {
		names = append(names, r.Name)
	}
	if !slices.Equal(names, []string{"reader", "accountant"}) {
		t.Errorf("roles after RenameRole = %v", names)
	}

	g1 := id(e.store.GrantDataAccess(ctx, "acme", UserSubject("alice"), "invoice", "inv-1"))
	e.expectScopes(t, "GrantDataAccess to a user", Scope{Org: "acme", User: "alice"})
	if again := id(e.store.GrantDataAccess(ctx, "acme", UserSubject("alice"), "invoice", "inv-1")); again != g1 {
		t.Errorf("granting again = %d, want the existing %d", again, g1)
	}
	e.expectScopes(t, "GrantDataAccess again")
	g2 := id(e.store.GrantDataAccess(ctx, "acme", RoleSubject(acct), "customer", ""))
	g3 := id(e.store.GrantDataAccess(ctx, "acme", RoleSubject(viewer), "invoice", "inv-2"))
	e.expectScopes(t, "GrantDataAccess to roles", Scope{Org: "acme"}, Scope{Org: "acme"})
	s = e.load(t, "acme", "alice", t0)
	if all, ids := s.AccessibleIDs("invoice"); all || !slices.Equal(ids, []string{"inv-1", "inv-2"}) {
		t.Errorf("invoice access = %v %v", all, ids)
	}
	if d := s.ExplainAccess("customer", "c7"); !d.Allowed || d.GrantID != g2 || d.RoleID != acct {
		t.Errorf("customer access = %+v", d)
	}
	if d := s.ExplainAccess("invoice", "inv-2"); d.GrantID != g3 || d.RoleName != "reader" {
		t.Errorf("invoice inv-2 access = %+v", d)
	}
	if err := e.store.RevokeDataAccess(ctx, "globex", g1); !errors.Is(err, ErrUnknownGrant) {
		t.Errorf("RevokeDataAccess from another org = %v, want ErrUnknownGrant", err)
	}
	must(t, e.store.RevokeDataAccess(ctx, "acme", g1))
	must(t, e.store.RevokeDataAccess(ctx, "acme", g2))
	e.expectScopes(t, "RevokeDataAccess", Scope{Org: "acme", User: "alice"}, Scope{Org: "acme"})
	if s := e.load(t, "acme", "alice", t0); s.CanAccess("invoice", "inv-1") || s.CanAccess("customer", "c7") {
		t.Errorf("after RevokeDataAccess: %s", mustJSON(t, s))
	}

	must(t, e.store.SuspendMember(ctx, "acme", "alice"))
	if s := e.load(t, "acme", "alice", t0); s.Active() || s.Status() != StatusSuspended || s.Explain("billing.view_invoice").Reason != ReasonSuspended {
		t.Errorf("after SuspendMember: %s", mustJSON(t, s))
	}
	must(t, e.store.RevokeMember(ctx, "acme", "alice"))
	if s := e.load(t, "acme", "alice", t0); s.Status() != StatusRevoked || s.Has("billing.view_invoice") {
		t.Errorf("after RevokeMember: %s", mustJSON(t, s))
	}
	must(t, e.store.AddMember(ctx, "acme", "alice", MemberOptions{Status: StatusActive, ValidFrom: hour(-1), ValidUntil: hour(1)}))
	if s := e.load(t, "acme", "alice", t0); !s.Active() || !s.ValidUntil().Equal(*hour(1)) {
		t.Errorf("after AddMember again: %s", mustJSON(t, s))
	}
	must(t, e.store.SetMembershipWindow(ctx, "acme", "alice", hour(2), nil))
	if s := e.load(t, "acme", "alice", t0); s.Active() || s.Explain("billing.view_invoice").Reason != ReasonNotYetValid {
		t.Errorf("after SetMembershipWindow: %s", mustJSON(t, s))
	}
	e.expectScopes(t, "membership writes", slices.Repeat([]Scope{{Org: "acme", User: "alice"}}, 4)...)
	ua, err := e.store.LoadUserActive(ctx, "alice", t0)
	must(t, err)
	if ua.Active || !ua.ValidUntil.Equal(*hour(2)) {
		t.Errorf("LoadUserActive = %+v", ua)
	}
	must(t, e.store.SetMembershipWindow(ctx, "acme", "alice", nil, nil))
	e.rec.take()

	must(t, e.store.UnassignRole(ctx, "acme", "alice", viewer))
	e.expectScopes(t, "UnassignRole", Scope{Org: "acme", User: "alice"})
	must(t, e.store.UnassignRole(ctx, "acme", "alice", viewer))
	e.expectScopes(t, "UnassignRole again")
	if s := e.load(t, "acme", "alice", t0); s.Has("users.manage_user") || !s.Has("billing.edit_invoice") {
		t.Errorf("after UnassignRole: %s", mustJSON(t, s))
	}

	must(t, e.store.DeleteRole(ctx, acct))
	e.expectScopes(t, "DeleteRole org role", Scope{Org: "acme"})
	must(t, e.store.DeleteRole(ctx, viewer))
	e.expectScopes(t, "DeleteRole system role", Scope{All: true})
	if s := e.load(t, "acme", "alice", t0); len(s.Roles()) != 0 || len(s.Permissions()) != 0 || s.Explain("billing.edit_invoice").Reason != ReasonNoRole {
		t.Errorf("after DeleteRole: %s", mustJSON(t, s))
	}
	if err := e.store.DeleteRole(ctx, acct); !errors.Is(err, ErrUnknownRole) {
		t.Errorf("DeleteRole again = %v, want ErrUnknownRole", err)
	}

	// A role of another org, through the API: refused, nothing written.
	before := snapshot(t, e.plain)
	if err := e.store.AssignRole(ctx, "acme", "alice", globexRole, nil); !errors.Is(err, ErrRoleOrgMismatch) {
		t.Errorf("AssignRole of a globex role in acme = %v, want ErrRoleOrgMismatch", err)
	}
	if _, err := e.store.GrantDataAccess(ctx, "acme", RoleSubject(globexRole), "invoice", ""); !errors.Is(err, ErrRoleOrgMismatch) {
		t.Errorf("GrantDataAccess to a globex role in acme = %v, want ErrRoleOrgMismatch", err)
	}
	if after := snapshot(t, e.plain); after != before {
		t.Errorf("a refused write wrote:\n%s\n%s", before, after)
	}
	e.expectScopes(t, "refused writes")
}

func TestAdminBadInput(t *testing.T) {
	t.Parallel()
	e := setupAdmin(t)
	ctx := context.Background()
	id := mustID(t)
	must(t, e.store.EnsurePermission(ctx, "billing.view_invoice", ""))
	sys := id(e.store.CreateRole(ctx, "", "viewer", "billing.view_invoice"))
	acme := id(e.store.CreateRole(ctx, "acme", "acct"))
	globex := id(e.store.CreateRole(ctx, "globex", "acct"))
	acme2 := id(e.store.CreateRole(ctx, "acme", "auditor"))
	must(t, e.store.AddMember(ctx, "acme", "alice", MemberOptions{}))
	must(t, e.store.AssignRole(ctx, "acme", "alice", acme, nil))
	e.rec.take()

	long := strings.Repeat("x", 129)
	from := t0
	sameMicro := t0.Add(500 * time.Nanosecond) // after from, but equal once stored
	cases := []struct {
		name  string
		write func() error
		want  error
		field string // the ValidationError field, when caught before SQL
	}{
		{"AddMember empty org", func() error { return e.store.AddMember(ctx, "", "u", MemberOptions{}) }, ErrInvalidID, "org"},
		{"AddMember long user", func() error { return e.store.AddMember(ctx, "acme", long, MemberOptions{}) }, ErrInvalidID, "user"},
		{"AddMember control char", func() error { return e.store.AddMember(ctx, "acme", "a\nb", MemberOptions{}) }, ErrInvalidID, "user"},
		{"AddMember invalid UTF-8", func() error { return e.store.AddMember(ctx, "ac\xffme", "u", MemberOptions{}) }, ErrInvalidID, "org"},
		{"AddMember status", func() error { return e.store.AddMember(ctx, "acme", "u", MemberOptions{Status: "boss"}) }, ErrInvalidStatus, "status"},
		{"AddMember empty window", func() error {
			return e.store.AddMember(ctx, "acme", "u", MemberOptions{ValidFrom: &from, ValidUntil: &from})
		}, ErrInvalidWindow, "valid_until"},
		{"AddMember window within a microsecond", func() error {
			return e.store.AddMember(ctx, "acme", "u", MemberOptions{ValidFrom: &from, ValidUntil: &sameMicro})
		}, ErrInvalidWindow, "valid_until"},
		{"SuspendMember non-member", func() error { return e.store.SuspendMember(ctx, "acme", "bob") }, ErrNotMember, ""},
		{"RevokeMember non-member", func() error { return e.store.RevokeMember(ctx, "globex", "alice") }, ErrNotMember, ""},
		{"SetMembershipWindow non-member", func() error { return e.store.SetMembershipWindow(ctx, "acme", "bob", nil, nil) }, ErrNotMember, ""},
		{"SetMembershipWindow backwards", func() error {
			return e.store.SetMembershipWindow(ctx, "acme", "alice", &sameMicro, &from)
		}, ErrInvalidWindow, "valid_until"},
		{"EnsurePermission upper case", func() error { return e.store.EnsurePermission(ctx, "Billing.view", "") }, ErrInvalidCodename, "codename"},
		{"EnsurePermission no dot", func() error { return e.store.EnsurePermission(ctx, "billing", "") }, ErrInvalidCodename, "codename"},
		{"EnsurePermission too long", func() error {
			return e.store.EnsurePermission(ctx, "a."+strings.Repeat("b", 99), "")
		}, ErrInvalidCodename, "codename"},
		{"CreateRole empty name", func() error { _, err := e.store.CreateRole(ctx, "acme", ""); return err }, ErrInvalidRoleName, "name"},
		{"CreateRole control char", func() error { _, err := e.store.CreateRole(ctx, "acme", "a\tb"); return err }, ErrInvalidRoleName, "name"},
		{"CreateRole bad org", func() error { _, err := e.store.CreateRole(ctx, long, "r"); return err }, ErrInvalidID, "org"},
		{"CreateRole bad codename", func() error { _, err := e.store.CreateRole(ctx, "acme", "r", "x"); return err }, ErrInvalidCodename, "codename"},
		{"CreateRole unknown permission", func() error {
			_, err := e.store.CreateRole(ctx, "acme", "r", "billing.view_invoice", "billing.fly")
			return err
		}, ErrUnknownPermission, ""},
		{"CreateRole org name taken", func() error { _, err := e.store.CreateRole(ctx, "acme", "acct"); return err }, ErrRoleExists, ""},
		{"CreateRole system name taken", func() error { _, err := e.store.CreateRole(ctx, "", "viewer"); return err }, ErrRoleExists, ""},
		{"RenameRole unknown", func() error { return e.store.RenameRole(ctx, 999999, "x") }, ErrUnknownRole, ""},
		{"RenameRole name taken", func() error { return e.store.RenameRole(ctx, acme2, "acct") }, ErrRoleExists, ""},
		{"RenameRole bad name", func() error { return e.store.RenameRole(ctx, acme, "") }, ErrInvalidRoleName, "name"},
		{"DeleteRole unknown", func() error { return e.store.DeleteRole(ctx, -5) }, ErrUnknownRole, ""},
		{"GrantPermissions unknown role", func() error { return e.store.GrantPermissions(ctx, 999999, "billing.view_invoice") }, ErrUnknownRole, ""},
		{"GrantPermissions unknown permission", func() error { return e.store.GrantPermissions(ctx, acme, "billing.fly") }, ErrUnknownPermission, ""},
		{"GrantPermissions bad codename", func() error { return e.store.GrantPermissions(ctx, acme, "fly") }, ErrInvalidCodename, "codename"},
		{"RevokePermissions unknown role", func() error { return e.store.RevokePermissions(ctx, 999999, "billing.view_invoice") }, ErrUnknownRole, ""},
		{"AssignRole unknown role", func() error { return e.store.AssignRole(ctx, "acme", "alice", 999999, nil) }, ErrUnknownRole, ""},
		{"AssignRole non-member", func() error { return e.store.AssignRole(ctx, "acme", "bob", sys, nil) }, ErrNotMember, ""},
		{"AssignRole role of another org", func() error { return e.store.AssignRole(ctx, "acme", "alice", globex, nil) }, ErrRoleOrgMismatch, ""},
		{"AssignRole bad user", func() error { return e.store.AssignRole(ctx, "acme", "", sys, nil) }, ErrInvalidID, "user"},
		{"UnassignRole bad org", func() error { return e.store.UnassignRole(ctx, long, "alice", sys) }, ErrInvalidID, "org"},
		{"GrantDataAccess no subject", func() error {
			_, err := e.store.GrantDataAccess(ctx, "acme", Subject{}, "invoice", "")
			return err
		}, ErrInvalidSubject, "subject"},
		{"GrantDataAccess two subjects", func() error {
			_, err := e.store.GrantDataAccess(ctx, "acme", Subject{User: "alice", RoleID: acme}, "invoice", "")
			return err
		}, ErrInvalidSubject, "subject"},
		{"GrantDataAccess bad type", func() error {
			_, err := e.store.GrantDataAccess(ctx, "acme", UserSubject("alice"), "Invoice", "")
			return err
		}, ErrInvalidResourceType, "resource_type"},
		{"GrantDataAccess bad resource ID", func() error {
			_, err := e.store.GrantDataAccess(ctx, "acme", UserSubject("alice"), "invoice", long)
			return err
		}, ErrInvalidID, "resource_id"},
		{"GrantDataAccess bad user", func() error {
			_, err := e.store.GrantDataAccess(ctx, "acme", UserSubject("a\x00"), "invoice", "")
			return err
		}, ErrInvalidID, "user"},
		{"GrantDataAccess unknown role", func() error {
			_, err := e.store.GrantDataAccess(ctx, "acme", RoleSubject(999999), "invoice", "")
			return err
		}, ErrUnknownRole, ""},
		{"GrantDataAccess role of another org", func() error {
			_, err := e.store.GrantDataAccess(ctx, "acme", RoleSubject(globex), "invoice", "i1")
			return err
		}, ErrRoleOrgMismatch, ""},
		{"RevokeDataAccess unknown", func() error { return e.store.RevokeDataAccess(ctx, "acme", 42) }, ErrUnknownGrant, ""},
		{"Load bad org", func() error { _, err := e.store.Load(ctx, "", "alice", t0); return err }, ErrInvalidID, "org"},
		{"LoadMany bad key", func() error {
			_, err := e.store.LoadMany(ctx, []Key{{"acme", "alice"}, {"acme", long}}, t0)
			return err
		}, ErrInvalidID, "user"},
		{"LoadUserActive bad user", func() error { _, err := e.store.LoadUserActive(ctx, "", t0); return err }, ErrInvalidID, "user"},
	}
	for _, c := range cases {
		// Sequential: the cases share the database and the round-trip count.
		before := snapshot(t, e.plain)
		trips := e.tracer.n.Load()
		err := c.write()
		if !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
			continue
		}
		var ve *ValidationError
		if c.field != "" {
			if !errors.As(err, &ve) || ve.Field != c.field {
				t.Errorf("%s: err = %#v, want a ValidationError of field %q", c.name, err, c.field)
			}
			if n := e.tracer.n.Load() - trips; n != 0 {
				t.Errorf("%s: %d round trips for input rejected before SQL", c.name, n)
			}
		} else if errors.As(err, &ve) {
			t.Errorf("%s: a ValidationError for a rule only the database checks: %v", c.name, err)
		}
		if after := snapshot(t, e.plain); after != before {
			t.Errorf("%s: a failed write wrote:\n%s\n%s", c.name, before, after)
		}
		e.expectScopes(t, c.name)
	}
}

// TestConstraintMapping checks that a constraint violation that slips past
// Go validation (a race, a stricter database) still yields the typed error.
func TestConstraintMapping(t *testing.T) {
	t.Parallel()
	for name, want := range constraintErrors {
		pgErr := &pgconn.PgError{Code: "23514", ConstraintName: name, Message: "violation"}
		err := dbError("op", fmt.Errorf("wrapped: %w", pgErr))
		if !errors.Is(err, want) {
			t.Errorf("%s: %v does not match %v", name, err, want)
		}
		var back *pgconn.PgError
		if !errors.As(err, &back) || back != pgErr {
			t.Errorf("%s: the PgError is lost", name)
		}
	}
	other := dbError("op", &pgconn.PgError{Code: "57P01", Message: "terminating connection"})
	for _, s := range sentinels {
		if errors.Is(other, s) {
			t.Errorf("a connection error matches %v", s)
		}
	}
	if !strings.Contains(other.Error(), "membership: op:") {
		t.Errorf("error = %q", other)
	}
	// Real constraints, through the database: the ext_id domain and the
	// window check, which Go validation would have caught.
	_, plain, _ := tracedPool(t)
	ctx := context.Background()
	_, err := plain.Exec(ctx, `INSERT INTO orgperm.memberships (org_id, user_id) VALUES ('', 'u')`)
	if !errors.Is(dbError("raw", err), ErrInvalidID) {
		t.Errorf("ext_id violation = %v", err)
	}
	_, err = plain.Exec(ctx, `INSERT INTO orgperm.memberships (org_id, user_id, valid_from, valid_until) VALUES ('o', 'u', now(), now())`)
	if !errors.Is(dbError("raw", err), ErrInvalidWindow) {
		t.Errorf("window violation = %v", err)
	}
	_, err = plain.Exec(ctx, `INSERT INTO orgperm.permissions (codename) VALUES ('Bad')`)
	if !errors.Is(dbError("raw", err), ErrInvalidCodename) {
		t.Errorf("codename violation = %v", err)
	}
}

func TestDatabaseErrorFailsClosed(t *testing.T) {
	t.Parallel()
	traced, _, _ := tracedPool(t)
	store := NewStore(traced)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s, err := store.Load(ctx, "acme", "alice", t0)
	if err == nil || s != nil {
		t.Fatalf("Load with a cancelled context = %v, %v; want an error and no set", s, err)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want it to wrap context.Canceled", err)
	}
	if _, err := store.LoadMany(ctx, []Key{{"a", "b"}}, t0); err == nil {
		t.Error("LoadMany with a cancelled context succeeded")
	}
	if ua, err := store.LoadUserActive(ctx, "alice", t0); err == nil || ua.Active {
		t.Errorf("LoadUserActive with a cancelled context = %+v, %v", ua, err)
	}
}
