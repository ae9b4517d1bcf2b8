package membership

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orgperm/orgperm/internal/hooks"
	"github.com/orgperm/orgperm/pkg/localcache"
	"github.com/orgperm/orgperm/pkg/pgtest"
)

// seedRoleDefs writes, with plain SQL (no Client sees these writes but
// through the triggers), an org acme with a role "staff" granting app.a, a
// system role "auditor" granting app.c, and members alice, bob, carol and
// dave holding both. It returns the IDs of the two roles.
func seedRoleDefs(t *testing.T, pool *pgxpool.Pool) (staff, auditor int64) {
	t.Helper()
	ctx := context.Background()
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := pool.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%v\n%s", err, sql)
		}
	}
	exec(`INSERT INTO orgperm.permissions (codename) VALUES ('app.a'), ('app.b'), ('app.c')`)
	if err := pool.QueryRow(ctx, `INSERT INTO orgperm.roles (org_id, name) VALUES ('acme', 'staff') RETURNING id`).Scan(&staff); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, `INSERT INTO orgperm.roles (org_id, name) VALUES (NULL, 'auditor') RETURNING id`).Scan(&auditor); err != nil {
		t.Fatal(err)
	}
	exec(`INSERT INTO orgperm.role_permissions (role_id, codename) VALUES ($1, 'app.a'), ($2, 'app.c')`, staff, auditor)
	exec(`INSERT INTO orgperm.memberships (org_id, user_id) SELECT 'acme', u FROM unnest(ARRAY['alice', 'bob', 'carol', 'dave']) u`)
	exec(`INSERT INTO orgperm.membership_roles (org_id, user_id, role_id)
		SELECT 'acme', u, r FROM unnest(ARRAY['alice', 'bob', 'carol', 'dave']) u, unnest(ARRAY[$1::bigint, $2::bigint]) r`, staff, auditor)
	return staff, auditor
}

// roleDefsCached reports whether c holds the role definitions of org.
func roleDefsCached(c *Client, org string) bool {
	_, ok := c.roles.Get(localcache.Key{Org: org})
	return ok
}

// TestRoleDefinitionsEvicted: the first fill in an org reads the org's role
// definitions with the set, in one round trip; the next member's fill is
// composed from them; a change to a role's permissions, to the org's
// grants to a role, or to a system role, made on another connection,
// evicts them (through the triggers' notifications alone), and every set
// filled after it, composed or not, shows the change.
func TestRoleDefinitionsEvicted(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	staff, auditor := seedRoleDefs(t, pool)
	c := newTestClient(t, pool, Config{})
	ctx := context.Background()
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := pool.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%v\n%s", err, sql)
		}
		if err := c.Sync(ctx); err != nil { // the write's notification is applied here
			t.Fatal(err)
		}
	}
	// check fills (org, user) and compares it with Store.Load, and with
	// what it must hold.
	check := func(step, user string, perms []string, canAccess bool) {
		t.Helper()
		s, err := c.Permissions(ctx, "acme", user)
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		want, err := c.Store().Load(ctx, "acme", user, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if contentJSON(t, s) != contentJSON(t, want) {
			t.Errorf("%s: %s's filled set differs from Load:\n%s\n%s", step, user, contentJSON(t, s), contentJSON(t, want))
		}
		if got := s.Permissions(); !equalStrings(got, perms) {
			t.Errorf("%s: %s holds %v; want %v", step, user, got, perms)
		}
		if s.CanAccess("invoice", "7") != canAccess {
			t.Errorf("%s: %s CanAccess(invoice, 7) = %v; want %v", step, user, !canAccess, canAccess)
		}
	}
	hits := func() uint64 { return c.Stats().Roles.Hits }

	check("first fill", "alice", []string{"app.a", "app.c"}, false)
	if !roleDefsCached(c, "acme") {
		t.Fatal("the first fill did not cache the org's role definitions")
	}
	h := hits()
	check("composed fill", "bob", []string{"app.a", "app.c"}, false)
	if hits() != h+1 {
		t.Fatal("bob's fill was not composed from the cached definitions")
	}

	exec(`INSERT INTO orgperm.role_permissions (role_id, codename) VALUES ($1, 'app.b')`, staff)
	if roleDefsCached(c, "acme") {
		t.Fatal("a role's new permission left the org's role definitions cached")
	}
	check("after a role's new permission", "carol", []string{"app.a", "app.b", "app.c"}, false)
	h = hits()
	check("composed after a role's new permission", "alice", []string{"app.a", "app.b", "app.c"}, false)
	if hits() != h+1 {
		t.Fatal("alice's fill was not composed from the definitions read again")
	}

	exec(`INSERT INTO orgperm.data_access (org_id, role_id, resource_type, resource_id) VALUES ('acme', $1, 'invoice', '7')`, staff)
	if roleDefsCached(c, "acme") {
		t.Fatal("a grant to a role left the org's role definitions cached")
	}
	check("after a grant to a role", "bob", []string{"app.a", "app.b", "app.c"}, true)
	check("composed after a grant to a role", "carol", []string{"app.a", "app.b", "app.c"}, true)

	exec(`DELETE FROM orgperm.role_permissions WHERE role_id = $1`, auditor) // a system role: everything
	if roleDefsCached(c, "acme") {
		t.Fatal("a system role's change left the org's role definitions cached")
	}
	check("after a system role's change", "dave", []string{"app.a", "app.b"}, true)
	check("composed after a system role's change", "alice", []string{"app.a", "app.b"}, true)

	exec(`UPDATE orgperm.roles SET name = 'staff 2' WHERE id = $1`, staff)
	if roleDefsCached(c, "acme") {
		t.Fatal("a role's rename left the org's role definitions cached")
	}
	check("after a rename", "bob", []string{"app.a", "app.b"}, true)
	check("composed after a rename", "carol", []string{"app.a", "app.b"}, true)
	s, err := c.Permissions(ctx, "acme", "carol")
	if err != nil {
		t.Fatal(err)
	}
	if d := s.Explain("app.a"); d.RoleName != "staff 2" {
		t.Errorf("app.a granted by %q; want the renamed role", d.RoleName)
	}
}

// TestRoleDefinitionsNewRole: a role created after the org's definitions
// were read sends no notification (it has no holder yet); a member given
// it still gets its permissions, and the definitions are read again.
func TestRoleDefinitionsNewRole(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	seedRoleDefs(t, pool)
	c := newTestClient(t, pool, Config{})
	ctx := context.Background()
	if _, err := c.Permissions(ctx, "acme", "alice"); err != nil || !roleDefsCached(c, "acme") {
		t.Fatalf("first fill: %v", err)
	}
	var role int64
	if err := pool.QueryRow(ctx, `INSERT INTO orgperm.roles (org_id, name) VALUES ('acme', 'new') RETURNING id`).Scan(&role); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO orgperm.role_permissions (role_id, codename) VALUES ($1, 'app.b')`, role); err != nil {
		t.Fatal(err)
	}
	if err := c.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	// Fill the definitions again after the role_permissions eviction, so
	// that they know the role but no member holds it yet.
	if _, err := c.Permissions(ctx, "acme", "bob"); err != nil || !roleDefsCached(c, "acme") {
		t.Fatalf("refill: %v", err)
	}
	var other int64
	if err := pool.QueryRow(ctx, `INSERT INTO orgperm.roles (org_id, name) VALUES ('acme', 'newer') RETURNING id`).Scan(&other); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO orgperm.membership_roles (org_id, user_id, role_id) VALUES ('acme', 'dave', $1), ('acme', 'carol', $2)`, other, role); err != nil {
		t.Fatal(err)
	}
	if err := c.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"dave", "carol"} {
		s, err := c.Permissions(ctx, "acme", u)
		if err != nil {
			t.Fatal(err)
		}
		want, err := c.Store().Load(ctx, "acme", u, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if contentJSON(t, s) != contentJSON(t, want) {
			t.Errorf("%s's filled set differs from Load:\n%s\n%s", u, contentJSON(t, s), contentJSON(t, want))
		}
	}
	d, _ := c.roles.Get(localcache.Key{Org: "acme"})
	if d == nil || d.roles[other] == nil {
		t.Fatal("the definitions were not read again for a role they did not know")
	}

	// A role of another org held anyway (a replica session skips the
	// guard trigger) grants nothing, composed or not, as in Load.
	var foreign int64
	if err := pool.QueryRow(ctx, `INSERT INTO orgperm.roles (org_id, name) VALUES ('other', 'foreign') RETURNING id`).Scan(&foreign); err != nil {
		t.Fatal(err)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SET LOCAL session_replication_role = replica`); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO orgperm.role_permissions (role_id, codename) VALUES ($1, 'app.b')`,
		`INSERT INTO orgperm.membership_roles (org_id, user_id, role_id) VALUES ('acme', 'alice', $1)`,
	} {
		if _, err := tx.Exec(ctx, q, foreign); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 2 { // read with the definitions, then composed
		c.EvictMember("acme", "alice")
		s, err := c.Permissions(ctx, "acme", "alice")
		if err != nil {
			t.Fatal(err)
		}
		want, err := c.Store().Load(ctx, "acme", "alice", time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if contentJSON(t, s) != contentJSON(t, want) || s.Has("app.b") {
			t.Errorf("fill %d with a role of another org differs from Load:\n%s\n%s", i, contentJSON(t, s), contentJSON(t, want))
		}
	}
}

// TestRoleDefinitionsRaces: a read of an org's role definitions that began
// before an eviction of the org never lands (rule 1), whether the eviction
// came from a notification or from this instance's own write; and while
// the cache is not trusted, fills read every table, never the cached
// definitions (rule 2).
func TestRoleDefinitionsRaces(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	staff, _ := seedRoleDefs(t, pool)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Notifications are dropped: the cached definitions go stale, and only
	// what bypasses them can show the change.
	// The local clock can be pushed past the lease (proofs are sent on the
	// real clock); the TTL keeps cached definitions alive meanwhile.
	var ahead atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }
	c, err := New(hooks.WithClient(ctx, hooks.Client{DropInvalidations: true}), pool, Config{Now: now, TTL: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	select {
	case <-c.Ready():
	case <-ctx.Done():
		t.Fatal("client never ready")
	}
	rk := localcache.Key{Org: "acme"}

	for _, evict := range []func(){
		func() { c.apply(orgInv("role_permissions", "acme")) },
		func() { c.EvictAll() },
		func() { (&cacheTarget{c}).MarkUnsynced(); (&cacheTarget{c}).Resync() },
	} {
		d, err := c.store.loadRoleDefs(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		tk := c.roles.Begin(rk)
		evict()
		if tk.Store(d, 0) || roleDefsCached(c, "acme") {
			t.Fatal("role definitions read before an eviction of their org landed")
		}
	}
	// The same eviction for another org, or for one member, keeps them.
	d, err := c.store.loadRoleDefs(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	tk := c.roles.Begin(rk)
	c.apply(orgInv("roles", "other"))
	c.EvictMember("acme", "alice")
	if !tk.Store(d, 0) {
		t.Fatal("an eviction of another org or of one member kept role definitions out")
	}

	// Stale definitions (the notification was dropped) compose stale sets
	// while the cache is trusted: that is how the test sees they are used.
	if _, err := pool.Exec(ctx, `INSERT INTO orgperm.role_permissions (role_id, codename) VALUES ($1, 'app.b')`, staff); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.HasPermission(ctx, "acme", "bob", "app.b"); err != nil || ok {
		t.Fatalf("bob's fill with stale definitions: %v, %v; want them used", ok, err)
	}
	// Bypassed: every table is read.
	if ok, err := c.HasPermission(FullyConsistent(ctx), "acme", "carol", "app.b"); err != nil || !ok {
		t.Fatalf("a fully consistent read used the cached definitions: %v, %v", ok, err)
	}
	ahead.Store(int64(time.Hour)) // past the lease
	if ok, err := c.HasPermission(ctx, "acme", "carol", "app.b"); err != nil || !ok {
		t.Fatalf("a read past the lease used the cached definitions: %v, %v", ok, err)
	}
	if !roleDefsCached(c, "acme") {
		t.Fatal("the stale definitions are gone: the check above proves nothing")
	}
	ahead.Store(0)
	(&cacheTarget{c}).MarkUnsynced()
	for _, u := range []string{"bob", "dave"} {
		if ok, err := c.HasPermission(ctx, "acme", u, "app.b"); err != nil || !ok {
			t.Fatalf("%s's read while unsynced used the cached definitions: %v, %v", u, ok, err)
		}
	}
	if roleDefsCached(c, "acme") {
		t.Fatal("role definitions answered while unsynced")
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestUnpackGrants checks the split of memberSQL's grant triples, and that
// a malformed row is an error (the fill fails closed) rather than a guess.
func TestUnpackGrants(t *testing.T) {
	t.Parallel()
	m := memberRaw{grants: []string{"7", "invoice", "inv-1", "9", "doc", ""}}
	if err := m.unpack(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(m.grantID, []int64{7, 9}) || !slices.Equal(m.grantType, []string{"invoice", "doc"}) ||
		!slices.Equal(m.grantRes, []string{"inv-1", ""}) {
		t.Errorf("unpack = %v %v %v", m.grantID, m.grantType, m.grantRes)
	}
	none := memberRaw{}
	if err := none.unpack(); err != nil || len(none.grantID) != 0 {
		t.Errorf("no grants: %v, %v", none.grantID, err)
	}
	for _, bad := range [][]string{{"7", "invoice"}, {"x", "invoice", "inv-1"}, {"", "doc", ""}} {
		b := memberRaw{grants: bad}
		if err := b.unpack(); err == nil {
			t.Errorf("unpack(%q) succeeded", bad)
		}
	}
}
