package membership

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orgperm/orgperm/pkg/pgtest"
)

// t0 is the reference instant of the semantics fixture.
var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// fixture is the semantics test's data, written with plain SQL so that the
// test does not depend on the admin API:
//
//	system role viewer:        billing.view_invoice, users.view_user
//	acme role accountant:      billing.view_invoice, billing.edit_invoice
//	acme role temp_admin:      users.manage_user
//	globex role globex_admin:  users.manage_user, reports.view_report
//
//	acme alice:  active; viewer, accountant, temp_admin until t0+1h
//	acme bob:    invited; accountant
//	acme carol:  suspended; accountant
//	acme dave:   revoked; accountant
//	acme erin:   active in [t0+1h, t0+2h); accountant until t0+90m
//	acme frank:  active, no role
//	globex alice: active; globex_admin, viewer
//
//	acme data:   alice invoice inv-1, inv-2; accountant invoice inv-3 and
//	             all customer; temp_admin all report; frank project p1;
//	             viewer (system role) document d1
//	globex data: alice invoice inv-9; globex_admin all invoice;
//	             viewer document d9
type fixture struct {
	pool  *pgxpool.Pool
	store *Store
	roles map[string]int64
	grant map[string]int64
}

func setupFixture(t *testing.T) *fixture {
	t.Helper()
	pool := pgtest.NewPool(t)
	ctx := context.Background()
	f := &fixture{pool: pool, store: NewStore(pool), roles: map[string]int64{}, grant: map[string]int64{}}
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := pool.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("fixture: %v\n%s", err, sql)
		}
	}
	exec(`INSERT INTO orgperm.permissions (codename) VALUES
		('billing.view_invoice'), ('billing.edit_invoice'), ('users.view_user'),
		('users.manage_user'), ('reports.view_report')`)
	for _, r := range []struct {
		org   any
		name  string
		perms []string
	}{
		{nil, "viewer", []string{"billing.view_invoice", "users.view_user"}},
		{"acme", "accountant", []string{"billing.view_invoice", "billing.edit_invoice"}},
		{"acme", "temp_admin", []string{"users.manage_user"}},
		{"globex", "globex_admin", []string{"users.manage_user", "reports.view_report"}},
	} {
		var id int64
		if err := pool.QueryRow(ctx, `INSERT INTO orgperm.roles (org_id, name) VALUES ($1, $2) RETURNING id`,
			r.org, r.name).Scan(&id); err != nil {
			t.Fatal(err)
		}
		f.roles[r.name] = id
		exec(`INSERT INTO orgperm.role_permissions (role_id, codename) SELECT $1, unnest($2::text[])`, id, r.perms)
	}
	member := func(org, user, status string, from, until *time.Time) {
		exec(`INSERT INTO orgperm.memberships (org_id, user_id, status, valid_from, valid_until) VALUES ($1, $2, $3, $4, $5)`,
			org, user, status, from, until)
	}
	assign := func(org, user, role string, until *time.Time) {
		exec(`INSERT INTO orgperm.membership_roles (org_id, user_id, role_id, valid_until) VALUES ($1, $2, $3, $4)`,
			org, user, f.roles[role], until)
	}
	at := func(d time.Duration) *time.Time { x := t0.Add(d); return &x }
	member("acme", "alice", "active", nil, nil)
	assign("acme", "alice", "viewer", nil)
	assign("acme", "alice", "accountant", nil)
	assign("acme", "alice", "temp_admin", at(time.Hour))
	for _, m := range [][2]string{{"bob", "invited"}, {"carol", "suspended"}, {"dave", "revoked"}} {
		member("acme", m[0], m[1], nil, nil)
		assign("acme", m[0], "accountant", nil)
	}
	member("acme", "erin", "active", at(time.Hour), at(2*time.Hour))
	assign("acme", "erin", "accountant", at(90*time.Minute))
	member("acme", "frank", "active", nil, nil)
	member("globex", "alice", "active", nil, nil)
	assign("globex", "alice", "globex_admin", nil)
	assign("globex", "alice", "viewer", nil)

	grant := func(key, org string, user any, role string, typ string, id any) {
		var roleID any
		if role != "" {
			roleID = f.roles[role]
		}
		var gid int64
		if err := pool.QueryRow(ctx, `INSERT INTO orgperm.data_access (org_id, user_id, role_id, resource_type, resource_id)
			VALUES ($1, $2, $3, $4, $5) RETURNING id`, org, user, roleID, typ, id).Scan(&gid); err != nil {
			t.Fatalf("grant %s: %v", key, err)
		}
		f.grant[key] = gid
	}
	grant("alice-inv1", "acme", "alice", "", "invoice", "inv-1")
	grant("alice-inv2", "acme", "alice", "", "invoice", "inv-2")
	grant("accountant-inv3", "acme", nil, "accountant", "invoice", "inv-3")
	grant("accountant-customer", "acme", nil, "accountant", "customer", nil)
	grant("temp-report", "acme", nil, "temp_admin", "report", nil)
	grant("frank-p1", "acme", "frank", "", "project", "p1")
	grant("viewer-d1", "acme", nil, "viewer", "document", "d1")
	grant("alice-inv9", "globex", "alice", "", "invoice", "inv-9")
	grant("globex-invoice", "globex", nil, "globex_admin", "invoice", nil)
	grant("viewer-d9", "globex", nil, "viewer", "document", "d9")
	return f
}

type accessWant struct {
	typ, id string
	allowed bool
	reason  Reason
	grant   string // fixture grant key of an allowed (or role-expired) decision
}

type idsWant struct {
	all bool
	ids []string
}

type semCase struct {
	name       string
	org, user  string
	at         time.Time
	status     Status
	active     bool
	validUntil time.Time
	roles      []string          // held role names, by ID
	perms      []string          // exactly the permissions
	explain    map[string]Reason // codename -> reason
	grantedBy  map[string]string // codename -> role name of the allow (or expired role)
	access     []accessWant
	ids        map[string]idsWant
}

func TestSemantics(t *testing.T) {
	t.Parallel()
	f := setupFixture(t)
	ctx := context.Background()
	none := []string{}
	inactive := func(r Reason) map[string]Reason {
		return map[string]Reason{"billing.view_invoice": r, "users.view_user": r, "nope.nope": r}
	}
	cases := []semCase{
		{
			name: "no membership", org: "acme", user: "ghost", at: t0,
			status: StatusNone, perms: none, explain: inactive(ReasonNotMember),
			access: []accessWant{{typ: "invoice", id: "inv-1", reason: ReasonNotMember}},
			ids:    map[string]idsWant{"invoice": {}},
		},
		{
			name: "invited", org: "acme", user: "bob", at: t0, status: StatusInvited,
			perms: none, explain: inactive(ReasonInvited),
			access: []accessWant{{typ: "invoice", id: "inv-3", reason: ReasonInvited}},
			ids:    map[string]idsWant{"invoice": {}, "customer": {}},
		},
		{
			name: "suspended", org: "acme", user: "carol", at: t0, status: StatusSuspended,
			perms: none, explain: inactive(ReasonSuspended),
			access: []accessWant{{typ: "customer", id: "c1", reason: ReasonSuspended}},
		},
		{
			name: "revoked", org: "acme", user: "dave", at: t0, status: StatusRevoked,
			perms: none, explain: inactive(ReasonRevoked),
			access: []accessWant{{typ: "customer", id: "c1", reason: ReasonRevoked}},
		},
		{
			name: "window not yet started", org: "acme", user: "erin", at: t0, status: StatusActive,
			validUntil: t0.Add(time.Hour), perms: none, explain: inactive(ReasonNotYetValid),
			access: []accessWant{{typ: "invoice", id: "inv-3", reason: ReasonNotYetValid}},
		},
		{
			name: "one microsecond before valid_from", org: "acme", user: "erin",
			at: t0.Add(time.Hour - time.Microsecond), status: StatusActive,
			validUntil: t0.Add(time.Hour), perms: none, explain: inactive(ReasonNotYetValid),
		},
		{
			name: "exactly at valid_from", org: "acme", user: "erin", at: t0.Add(time.Hour),
			status: StatusActive, active: true, validUntil: t0.Add(90 * time.Minute),
			roles: []string{"accountant"}, perms: []string{"billing.edit_invoice", "billing.view_invoice"},
			explain:   map[string]Reason{"billing.edit_invoice": ReasonGranted, "users.view_user": ReasonNotGranted},
			grantedBy: map[string]string{"billing.edit_invoice": "accountant"},
			access: []accessWant{
				{typ: "invoice", id: "inv-3", allowed: true, reason: ReasonGranted, grant: "accountant-inv3"},
				{typ: "customer", id: "anything", allowed: true, reason: ReasonGranted, grant: "accountant-customer"},
				{typ: "invoice", id: "inv-1", reason: ReasonNotGranted},
			},
			ids: map[string]idsWant{"invoice": {ids: []string{"inv-3"}}, "customer": {all: true}},
		},
		{
			name: "role assignment ends exactly now", org: "acme", user: "erin", at: t0.Add(90 * time.Minute),
			status: StatusActive, active: true, validUntil: t0.Add(2 * time.Hour),
			roles: none, perms: none,
			explain:   map[string]Reason{"billing.edit_invoice": ReasonRoleExpired, "users.view_user": ReasonNoRole},
			grantedBy: map[string]string{"billing.edit_invoice": "accountant"},
			access: []accessWant{
				{typ: "invoice", id: "inv-3", reason: ReasonRoleExpired, grant: "accountant-inv3"},
				{typ: "customer", id: "c", reason: ReasonRoleExpired, grant: "accountant-customer"},
			},
			ids: map[string]idsWant{"invoice": {}, "customer": {}},
		},
		{
			name: "one microsecond before valid_until", org: "acme", user: "erin",
			at: t0.Add(2*time.Hour - time.Microsecond), status: StatusActive, active: true,
			validUntil: t0.Add(2 * time.Hour), roles: none, perms: none,
		},
		{
			name: "exactly at valid_until", org: "acme", user: "erin", at: t0.Add(2 * time.Hour),
			status: StatusActive, perms: none, explain: inactive(ReasonExpired),
			access: []accessWant{{typ: "invoice", id: "inv-3", reason: ReasonExpired}},
		},
		{
			name: "system and org roles, time-bound elevation", org: "acme", user: "alice", at: t0,
			status: StatusActive, active: true, validUntil: t0.Add(time.Hour),
			roles: []string{"viewer", "accountant", "temp_admin"},
			perms: []string{"billing.edit_invoice", "billing.view_invoice", "users.manage_user", "users.view_user"},
			explain: map[string]Reason{
				"billing.view_invoice": ReasonGranted, "users.manage_user": ReasonGranted,
				"reports.view_report": ReasonNotGranted, "nope.nope": ReasonNotGranted,
			},
			// billing.view_invoice comes from two roles: the lowest ID wins.
			grantedBy: map[string]string{"billing.view_invoice": "viewer", "users.view_user": "viewer",
				"billing.edit_invoice": "accountant", "users.manage_user": "temp_admin"},
			access: []accessWant{
				{typ: "invoice", id: "inv-1", allowed: true, reason: ReasonGranted, grant: "alice-inv1"},
				{typ: "invoice", id: "inv-3", allowed: true, reason: ReasonGranted, grant: "accountant-inv3"},
				{typ: "invoice", id: "inv-9", reason: ReasonNotGranted},
				{typ: "report", id: "r1", allowed: true, reason: ReasonGranted, grant: "temp-report"},
				{typ: "document", id: "d1", allowed: true, reason: ReasonGranted, grant: "viewer-d1"},
				{typ: "document", id: "d9", reason: ReasonNotGranted},
				{typ: "project", id: "p1", reason: ReasonNotGranted},
			},
			ids: map[string]idsWant{
				"invoice":  {ids: []string{"inv-1", "inv-2", "inv-3"}},
				"customer": {all: true}, "report": {all: true},
				"document": {ids: []string{"d1"}}, "project": {},
			},
		},
		{
			name: "elevation ends exactly now", org: "acme", user: "alice", at: t0.Add(time.Hour),
			status: StatusActive, active: true, roles: []string{"viewer", "accountant"},
			perms:     []string{"billing.edit_invoice", "billing.view_invoice", "users.view_user"},
			explain:   map[string]Reason{"users.manage_user": ReasonRoleExpired, "reports.view_report": ReasonNotGranted},
			grantedBy: map[string]string{"users.manage_user": "temp_admin"},
			access: []accessWant{
				{typ: "report", id: "r1", reason: ReasonRoleExpired, grant: "temp-report"},
				{typ: "invoice", id: "inv-2", allowed: true, reason: ReasonGranted, grant: "alice-inv2"},
			},
			ids: map[string]idsWant{"report": {}, "invoice": {ids: []string{"inv-1", "inv-2", "inv-3"}}},
		},
		{
			name: "other org: its own roles and grants only", org: "globex", user: "alice", at: t0,
			status: StatusActive, active: true, roles: []string{"viewer", "globex_admin"},
			perms: []string{"billing.view_invoice", "reports.view_report", "users.manage_user", "users.view_user"},
			explain: map[string]Reason{"billing.edit_invoice": ReasonNotGranted,
				"reports.view_report": ReasonGranted},
			grantedBy: map[string]string{"users.manage_user": "globex_admin", "billing.view_invoice": "viewer"},
			access: []accessWant{
				{typ: "invoice", id: "inv-1", allowed: true, reason: ReasonGranted, grant: "globex-invoice"},
				{typ: "invoice", id: "inv-9", allowed: true, reason: ReasonGranted, grant: "alice-inv9"},
				{typ: "customer", id: "c1", reason: ReasonNotGranted},
				{typ: "report", id: "r1", reason: ReasonNotGranted},
				{typ: "document", id: "d9", allowed: true, reason: ReasonGranted, grant: "viewer-d9"},
				{typ: "document", id: "d1", reason: ReasonNotGranted},
			},
			ids: map[string]idsWant{"invoice": {all: true}, "customer": {}, "document": {ids: []string{"d9"}}},
		},
		{
			name: "active member without a role", org: "acme", user: "frank", at: t0,
			status: StatusActive, active: true, roles: none, perms: none,
			explain: map[string]Reason{"billing.view_invoice": ReasonNoRole},
			access: []accessWant{
				{typ: "project", id: "p1", allowed: true, reason: ReasonGranted, grant: "frank-p1"},
				{typ: "project", id: "p2", reason: ReasonNotGranted},
			},
			ids: map[string]idsWant{"project": {ids: []string{"p1"}}},
		},
		{
			name: "a member of one org is not one of another", org: "globex", user: "frank", at: t0,
			status: StatusNone, perms: none, explain: inactive(ReasonNotMember),
			access: []accessWant{{typ: "project", id: "p1", reason: ReasonNotMember}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s, err := f.store.Load(ctx, c.org, c.user, c.at)
			if err != nil {
				t.Fatal(err)
			}
			checkCase(t, f, s, c)
			// The JSON round trip answers the checks alike.
			b, err := s.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			var d PermissionSet
			if err := d.UnmarshalJSON(b); err != nil {
				t.Fatalf("round trip: %v\n%s", err, b)
			}
			if b2, _ := d.MarshalJSON(); string(b2) != string(b) {
				t.Errorf("round trip changed the JSON:\n%s\n%s", b, b2)
			}
			for _, p := range append(slices.Clone(c.perms), "billing.edit_invoice", "users.manage_user") {
				if d.Has(p) != s.Has(p) {
					t.Errorf("decoded Has(%q) = %v, want %v", p, d.Has(p), s.Has(p))
				}
			}
			for _, a := range c.access {
				if d.CanAccess(a.typ, a.id) != a.allowed {
					t.Errorf("decoded CanAccess(%q, %q) = %v", a.typ, a.id, !a.allowed)
				}
			}
		})
	}
}

func checkCase(t *testing.T, f *fixture, s *PermissionSet, c semCase) {
	t.Helper()
	if s.Org() != c.org || s.User() != c.user || !s.ComputedAt().Equal(c.at) {
		t.Errorf("key = (%q, %q, %v)", s.Org(), s.User(), s.ComputedAt())
	}
	if s.Status() != c.status {
		t.Errorf("Status = %q, want %q", s.Status(), c.status)
	}
	if s.Active() != c.active {
		t.Errorf("Active = %v, want %v", s.Active(), c.active)
	}
	if !s.ValidUntil().Equal(c.validUntil) {
		t.Errorf("ValidUntil = %v, want %v", s.ValidUntil(), c.validUntil)
	}
	var roles []string
	for _, r := range s.Roles() {
		roles = append(roles, r.Name)
		if r.System != (r.Name == "viewer") {
			t.Errorf("role %q System = %v", r.Name, r.System)
		}
	}
	if c.roles != nil && !slices.Equal(roles, c.roles) {
		t.Errorf("Roles = %v, want %v", roles, c.roles)
	}
	if got := s.Permissions(); !slices.Equal(got, c.perms) && !(len(got) == 0 && len(c.perms) == 0) {
		t.Errorf("Permissions = %v, want %v", got, c.perms)
	}
	for _, p := range []string{"billing.view_invoice", "billing.edit_invoice", "users.view_user",
		"users.manage_user", "reports.view_report", "nope.nope", ""} {
		want := slices.Contains(c.perms, p)
		if s.Has(p) != want {
			t.Errorf("Has(%q) = %v, want %v", p, !want, want)
		}
		d := s.Explain(p)
		if d.Allowed != want {
			t.Errorf("Explain(%q).Allowed = %v, want %v", p, d.Allowed, want)
		}
		if want && d.Reason != ReasonGranted {
			t.Errorf("Explain(%q).Reason = %v, want granted", p, d.Reason)
		}
		if d.Message == "" {
			t.Errorf("Explain(%q) has no message", p)
		}
	}
	for p, want := range c.explain {
		if d := s.Explain(p); d.Reason != want {
			t.Errorf("Explain(%q) = %v (%s), want %v", p, d.Reason, d.Message, want)
		}
	}
	for p, role := range c.grantedBy {
		d := s.Explain(p)
		if d.RoleName != role || d.RoleID != f.roles[role] {
			t.Errorf("Explain(%q) role = %q #%d, want %q #%d", p, d.RoleName, d.RoleID, role, f.roles[role])
		}
	}
	if len(c.perms) > 0 {
		if !s.HasAll(c.perms...) || !s.HasAny(append([]string{"nope.nope"}, c.perms...)...) {
			t.Errorf("HasAll/HasAny(%v) = false", c.perms)
		}
	}
	if s.HasAll() || s.HasAny() || s.HasAll(append(slices.Clone(c.perms), "nope.nope")...) || s.HasAny("nope.nope") {
		t.Error("HasAll/HasAny allowed what is not granted")
	}
	for _, a := range c.access {
		if got := s.CanAccess(a.typ, a.id); got != a.allowed {
			t.Errorf("CanAccess(%q, %q) = %v, want %v", a.typ, a.id, got, a.allowed)
		}
		d := s.ExplainAccess(a.typ, a.id)
		if d.Allowed != a.allowed || d.Reason != a.reason {
			t.Errorf("ExplainAccess(%q, %q) = %v %v (%s), want %v %v", a.typ, a.id,
				d.Allowed, d.Reason, d.Message, a.allowed, a.reason)
		}
		if a.grant != "" && d.GrantID != f.grant[a.grant] {
			t.Errorf("ExplainAccess(%q, %q).GrantID = %d, want %s (%d)", a.typ, a.id, d.GrantID, a.grant, f.grant[a.grant])
		}
	}
	for typ, want := range c.ids {
		all, ids := s.AccessibleIDs(typ)
		if all != want.all || !slices.Equal(ids, want.ids) {
			t.Errorf("AccessibleIDs(%q) = %v %v, want %v %v", typ, all, ids, want.all, want.ids)
		}
		if len(ids) > 0 {
			ids[0] = "mutated" // a fresh copy: the set must not change
			if _, again := s.AccessibleIDs(typ); again[0] == "mutated" {
				t.Errorf("AccessibleIDs(%q) returned the set's own slice", typ)
			}
		}
	}
}

func TestNilSetDenies(t *testing.T) {
	t.Parallel()
	var s *PermissionSet
	if s.Active() || s.Has("a.b") || s.HasAny("a.b") || s.HasAll("a.b") || s.CanAccess("x", "1") {
		t.Error("a nil set allowed something")
	}
	if all, ids := s.AccessibleIDs("x"); all || ids != nil {
		t.Error("a nil set has data access")
	}
	if d := s.Explain("a.b"); d.Allowed || d.Reason != ReasonNotMember {
		t.Errorf("Explain on nil = %+v", d)
	}
	if d := s.ExplainAccess("x", "1"); d.Allowed || d.Reason != ReasonNotMember {
		t.Errorf("ExplainAccess on nil = %+v", d)
	}
	if b, err := s.MarshalJSON(); err != nil || string(b) != "null" {
		t.Errorf("MarshalJSON on nil = %s, %v", b, err)
	}
}

// TestRoleOfAnotherOrg checks that the guard rejects a role of org A for a
// member of org B, through the API and through plain SQL, and that such a
// role, had it slipped in, would still not apply (Load filters it too).
func TestRoleOfAnotherOrg(t *testing.T) {
	t.Parallel()
	f := setupFixture(t)
	ctx := context.Background()
	err := f.store.AssignRole(ctx, "acme", "alice", f.roles["globex_admin"], nil)
	if !errorsIs(err, ErrRoleOrgMismatch) {
		t.Fatalf("AssignRole of another org's role = %v, want ErrRoleOrgMismatch", err)
	}
	_, err = f.pool.Exec(ctx, `INSERT INTO orgperm.membership_roles (org_id, user_id, role_id) VALUES ('acme', 'alice', $1)`,
		f.roles["globex_admin"])
	if !errorsIs(dbError("raw", err), ErrRoleOrgMismatch) {
		t.Fatalf("raw insert = %v, want role_org_mismatch", err)
	}
	// Smuggle it in with the guard off, as a superuser could.
	tx, err := f.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	for _, q := range []string{
		`ALTER TABLE orgperm.membership_roles DISABLE TRIGGER membership_roles_guard`,
		`ALTER TABLE orgperm.data_access DISABLE TRIGGER data_access_guard`,
	} {
		if _, err := tx.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO orgperm.membership_roles (org_id, user_id, role_id) VALUES ('acme', 'frank', $1)`,
		f.roles["globex_admin"]); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO orgperm.data_access (org_id, role_id, resource_type) VALUES ('acme', $1, 'secret')`,
		f.roles["globex_admin"]); err != nil {
		t.Fatal(err)
	}
	s, err := NewStore(tx).Load(ctx, "acme", "frank", t0)
	if err != nil {
		t.Fatal(err)
	}
	if s.Has("users.manage_user") || s.CanAccess("secret", "x") || len(s.Roles()) != 0 {
		t.Errorf("a role of another org applied: %v %v", s.Permissions(), s.Roles())
	}
}
