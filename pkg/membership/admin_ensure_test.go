package membership

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// notifications listens on the invalidation channel of pool's database.
type notifications struct {
	conn *pgx.Conn
	pool *pgxpool.Pool
	seq  int
}

func listen(t *testing.T, pool *pgxpool.Pool) *notifications {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.ConnectConfig(ctx, pool.Config().ConnConfig.Copy())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	if _, err := conn.Exec(ctx, "LISTEN orgperm_invalidate"); err != nil {
		t.Fatal(err)
	}
	return &notifications{conn: conn, pool: pool}
}

// take returns the payloads sent since the last take: it sends a sentinel
// notification and collects everything before it (notifications arrive in
// commit order), so it waits for no timer.
func (n *notifications) take(t *testing.T) []string {
	t.Helper()
	n.seq++
	sentinel := "sentinel-" + strings.Repeat("x", n.seq)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := n.pool.Exec(ctx, "SELECT pg_notify('orgperm_invalidate', $1)", sentinel); err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		msg, err := n.conn.WaitForNotification(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if msg.Payload == sentinel {
			return got
		}
		got = append(got, msg.Payload)
	}
}

func TestEnsurePermissions(t *testing.T) {
	t.Parallel()
	e := setupAdmin(t)
	ctx := context.Background()
	notes := listen(t, e.plain)

	n, err := e.store.EnsurePermissions(ctx, Permission{"billing.view_invoice", "View"}, Permission{"billing.edit_invoice", ""},
		Permission{"billing.view_invoice", "View"})
	if err != nil || n != 2 {
		t.Fatalf("first run: %d, %v; want 2 added", n, err)
	}
	n, err = e.store.EnsurePermissions(ctx, Permission{"billing.view_invoice", "View"}, Permission{"billing.edit_invoice", ""})
	if err != nil || n != 0 {
		t.Fatalf("second run: %d, %v; want 0", n, err)
	}
	n, err = e.store.EnsurePermissions(ctx, Permission{"billing.view_invoice", "View invoices"})
	if err != nil || n != 1 {
		t.Fatalf("new description: %d, %v; want 1", n, err)
	}
	var desc string
	must(t, e.plain.QueryRow(ctx, `SELECT description FROM orgperm.permissions WHERE codename = 'billing.view_invoice'`).Scan(&desc))
	if desc != "View invoices" {
		t.Errorf("description = %q", desc)
	}
	// A description is in no permission set: no notification, no OnWrite.
	if got := notes.take(t); len(got) != 0 {
		t.Errorf("notifications: %v, want none", got)
	}
	e.expectScopes(t, "ensure permissions")

	before := snapshot(t, e.plain)
	for _, bad := range [][]Permission{
		{{"billing.new_one", "a"}, {"billing.new_one", "b"}},
		{{"billing.ok_one", ""}, {"Billing.bad", ""}},
	} {
		calls := e.tracer.n.Load()
		if _, err := e.store.EnsurePermissions(ctx, bad...); err == nil {
			t.Errorf("EnsurePermissions(%v): no error", bad)
		}
		if e.tracer.n.Load() != calls {
			t.Errorf("EnsurePermissions(%v): SQL ran on bad input", bad)
		}
	}
	if _, err := e.store.EnsurePermissions(ctx, Permission{"billing.new_one", "a"}, Permission{"billing.new_one", "b"}); !errorsIs(err, ErrDuplicateCodename) {
		t.Errorf("duplicate: %v, want ErrDuplicateCodename", err)
	}
	if snapshot(t, e.plain) != before {
		t.Error("a refused EnsurePermissions wrote something")
	}
}

func TestEnsureRole(t *testing.T) {
	t.Parallel()
	e := setupAdmin(t)
	ctx := context.Background()
	_, err := e.store.EnsurePermissions(ctx, Permission{Codename: "app.a"}, Permission{Codename: "app.b"}, Permission{Codename: "app.c"})
	must(t, err)
	notes := listen(t, e.plain)
	codes := func(id int64) []string {
		return queryStrings(t, e.plain, `SELECT codename FROM orgperm.role_permissions WHERE role_id = $1 ORDER BY codename`, id)
	}

	id, changed, err := e.store.EnsureRole(ctx, "acme", "editor", []string{"app.b", "app.a", "app.a"})
	if err != nil || !changed {
		t.Fatalf("create: %d %v %v", id, changed, err)
	}
	if got := codes(id); strings.Join(got, ",") != "app.a,app.b" {
		t.Errorf("codenames %v", got)
	}
	// A new role has no holders: its role_permissions INSERT notifies its
	// org (the trigger's rule), OnWrite is not called.
	if got := notes.take(t); len(got) != 1 {
		t.Errorf("create: notifications %v, want one", got)
	}
	e.expectScopes(t, "create")

	// Second run: nothing written, nothing sent.
	again, changed, err := e.store.EnsureRole(ctx, "acme", "editor", []string{"app.a", "app.b"})
	if err != nil || changed || again != id {
		t.Fatalf("second run: %d %v %v; want %d unchanged", again, changed, err, id)
	}
	if got := notes.take(t); len(got) != 0 {
		t.Errorf("second run: notifications %v, want none", got)
	}
	e.expectScopes(t, "second run")

	// Exactly this set: one removed, one added. Two statements (DELETE,
	// INSERT), each notifying the org; PostgreSQL folds the identical
	// payloads of one transaction into one.
	_, changed, err = e.store.EnsureRole(ctx, "acme", "editor", []string{"app.b", "app.c"})
	if err != nil || !changed {
		t.Fatalf("change: %v %v", changed, err)
	}
	if got := codes(id); strings.Join(got, ",") != "app.b,app.c" {
		t.Errorf("codenames %v", got)
	}
	if got := notes.take(t); len(got) != 1 || got[0] != `{"v":1,"t":"role_permissions","orgs":["acme"]}` {
		t.Errorf("change: notifications %v, want one for org acme", got)
	}
	e.expectScopes(t, "change", Scope{Org: "acme"})

	// The same name as a system role is another role.
	sys, _, err := e.store.EnsureRole(ctx, "", "editor", nil)
	if err != nil || sys == id {
		t.Fatalf("system role: %d %v", sys, err)
	}
	if _, changed, err := e.store.EnsureRole(ctx, "", "editor", []string{"app.a"}); err != nil || !changed {
		t.Fatalf("system role change: %v %v", changed, err)
	}
	e.expectScopes(t, "system role", Scope{All: true})

	// Unknown codename: the typed error, nothing written (not even the role).
	before := snapshot(t, e.plain)
	if _, _, err := e.store.EnsureRole(ctx, "acme", "other", []string{"app.nope"}); !errorsIs(err, ErrUnknownPermission) {
		t.Errorf("unknown codename: %v", err)
	}
	if _, _, err := e.store.EnsureRole(ctx, "acme", "editor", []string{"app.a", "app.nope"}); !errorsIs(err, ErrUnknownPermission) {
		t.Errorf("unknown codename: %v", err)
	}
	if _, _, err := e.store.EnsureRole(ctx, "acme", "", nil); !errorsIs(err, ErrInvalidRoleName) {
		t.Errorf("empty name: %v", err)
	}
	if snapshot(t, e.plain) != before {
		t.Error("a refused EnsureRole wrote something")
	}
}

func TestRenameRoleByName(t *testing.T) {
	t.Parallel()
	e := setupAdmin(t)
	ctx := context.Background()
	id, _, err := e.store.EnsureRole(ctx, "acme", "old", nil)
	must(t, err)
	other, _, err := e.store.EnsureRole(ctx, "acme", "taken", nil)
	must(t, err)

	got, err := e.store.RenameRoleByName(ctx, "acme", "old", "new")
	if err != nil || got != id {
		t.Fatalf("rename: %d %v", got, err)
	}
	e.expectScopes(t, "rename", Scope{Org: "acme"})
	got, err = e.store.RenameRoleByName(ctx, "acme", "old", "new")
	if err != nil || got != id {
		t.Fatalf("second run: %d %v", got, err)
	}
	e.expectScopes(t, "second run")
	if r, err := e.store.RoleByName(ctx, "acme", "new"); err != nil || r.ID != id {
		t.Errorf("RoleByName(new) = %+v, %v", r, err)
	}
	if _, err := e.store.RenameRoleByName(ctx, "acme", "nope", "none"); !errorsIs(err, ErrUnknownRole) {
		t.Errorf("neither: %v", err)
	}
	if _, err := e.store.RenameRoleByName(ctx, "acme", "new", "taken"); !errorsIs(err, ErrRoleExists) {
		t.Errorf("both: %v", err)
	}
	if _, err := e.store.RenameRoleByName(ctx, "globex", "new", "x"); !errorsIs(err, ErrUnknownRole) {
		t.Errorf("other org: %v", err)
	}
	if r, err := e.store.RoleByName(ctx, "acme", "taken"); err != nil || r.ID != other {
		t.Errorf("taken = %+v, %v", r, err)
	}
}
