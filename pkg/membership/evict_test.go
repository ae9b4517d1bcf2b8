package membership

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/orgperm/orgperm/pkg/listener"
	"github.com/orgperm/orgperm/pkg/localcache"
)

// TestEvictionPolicy is the eviction policy's table, with no database: for
// every source and every scope, which of a few cached keys an invalidation
// removes. Keys: two orgs, two users, and the users' user-wide answers
// (org ""). The same function serves notifications, the instance's own
// writes and explicit evictions, so this table is the whole policy.
func TestEvictionPolicy(t *testing.T) {
	t.Parallel()
	keys := []localcache.Key{
		{Org: "o1", User: "u1"}, {Org: "o1", User: "u2"}, {Org: "o2", User: "u1"},
		{User: "u1"}, {User: "u2"},
	}
	name := func(k localcache.Key) string {
		if k.Org == "" {
			return "*/" + k.User
		}
		return k.Org + "/" + k.User
	}
	many := make([]string, collapseScopes+1)
	for i := range many {
		many[i] = fmt.Sprintf("other%d", i)
	}
	member := func(src, o, u string) listener.Invalidation { return memberInv(src, o, u) }
	org := func(src, o string) listener.Invalidation { return orgInv(src, o) }
	user := func(src, u string) listener.Invalidation {
		return listener.Invalidation{Source: src, Users: []string{u}}
	}
	all := func(src string) listener.Invalidation { return listener.Invalidation{Source: src, All: true} }

	// Sources that can change a membership, hence a user-wide answer, and
	// those that cannot.
	userWide := []string{"memberships", "permissions", "evict", "ddl", listener.SourceMalformed, "", "future_table"}
	setsOnly := []string{"roles", "role_permissions", "membership_roles", "data_access"}

	type row struct {
		inv     listener.Invalidation
		evicted []string
	}
	var table []row
	for _, src := range userWide {
		table = append(table,
			row{member(src, "o1", "u1"), []string{"o1/u1", "*/u1"}},
			row{org(src, "o1"), []string{"o1/u1", "o1/u2", "*/u1", "*/u2"}},
			row{user(src, "u1"), []string{"o1/u1", "o2/u1", "*/u1"}},
			row{all(src), []string{"o1/u1", "o1/u2", "o2/u1", "*/u1", "*/u2"}},
			row{listener.Invalidation{Source: src, Orgs: many}, []string{"o1/u1", "o1/u2", "o2/u1", "*/u1", "*/u2"}},
		)
	}
	for _, src := range setsOnly {
		table = append(table,
			row{member(src, "o1", "u1"), []string{"o1/u1"}},
			row{org(src, "o1"), []string{"o1/u1", "o1/u2"}},
			row{user(src, "u1"), []string{"o1/u1", "o2/u1", "*/u1"}}, // a user scope is every key of the user
			row{all(src), []string{"o1/u1", "o1/u2", "o2/u1", "*/u1", "*/u2"}},
			row{listener.Invalidation{Source: src, Users: many}, []string{"o1/u1", "o1/u2", "o2/u1", "*/u1", "*/u2"}},
		)
	}
	for _, tt := range table {
		c, err := localcache.New[cached](localcache.Config{})
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if _, err := c.Do(context.Background(), k, func(context.Context) (cached, time.Duration, error) { return cached{}, 0, nil }); err != nil {
				t.Fatal(err)
			}
		}
		evict(c, tt.inv)
		var gone []string
		for _, k := range keys {
			if _, ok := c.Get(k); !ok {
				gone = append(gone, name(k))
			}
		}
		if !slices.Equal(gone, tt.evicted) {
			t.Errorf("source %q, %s: evicted %v; want %v", tt.inv.Source, describe(tt.inv), gone, tt.evicted)
		}
	}
}

func describe(inv listener.Invalidation) string {
	switch {
	case inv.All:
		return "all"
	case len(inv.Orgs) > 1 || len(inv.Users) > 1:
		return fmt.Sprintf("%d orgs, %d users", len(inv.Orgs), len(inv.Users))
	}
	return strings.TrimSpace(fmt.Sprint(inv.Orgs, inv.Members, inv.Users))
}

// TestLocalAndNotifiedAgree runs every admin write through a Store whose
// write hook records the invalidation it evicts locally, while a LISTEN
// connection collects what the triggers send for the same write: each
// local invalidation must be one the database sends (same source, same
// scope), so that this instance and every other evict alike under the one
// policy above. A write whose local path evicts nothing changed nothing any
// set holds (the database may still notify, harmlessly).
func TestLocalAndNotifiedAgree(t *testing.T) {
	t.Parallel()
	e := setupAdmin(t)
	ctx := context.Background()
	conn, err := e.plain.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `LISTEN orgperm_invalidate`); err != nil {
		t.Fatal(err)
	}
	seq := 0
	// notified returns the invalidations the database sent since the last
	// call: it sends a sentinel and reads up to it.
	notified := func() []listener.Invalidation {
		t.Helper()
		seq++
		sentinel := fmt.Sprintf("sentinel-%d", seq)
		if _, err := e.plain.Exec(ctx, `SELECT pg_notify('orgperm_invalidate', $1)`,
			fmt.Sprintf(`{"v":1,"t":"test","users":[%q]}`, sentinel)); err != nil {
			t.Fatal(err)
		}
		var got []listener.Invalidation
		for {
			wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			n, err := conn.Conn().WaitForNotification(wctx)
			cancel()
			if err != nil {
				t.Fatalf("waiting for notifications: %v", err)
			}
			inv, err := listener.ParsePayload(n.Payload)
			if err != nil {
				t.Fatalf("payload %q: %v", n.Payload, err)
			}
			if inv.Source == "test" && slices.Equal(inv.Users, []string{sentinel}) {
				return got
			}
			got = append(got, inv)
		}
	}
	writes := 0
	check := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		e.rec.mu.Lock()
		local := e.rec.invs
		e.rec.invs, e.rec.scopes = nil, nil
		e.rec.mu.Unlock()
		sent := notified()
		for _, inv := range local {
			writes++
			if !slices.ContainsFunc(sent, func(s listener.Invalidation) bool { return sameInvalidation(s, inv) }) {
				t.Errorf("%s: local invalidation %+v; the database sent %+v", what, inv, sent)
			}
		}
	}
	hour := func(h int) *time.Time { x := time.Now().Add(time.Duration(h) * time.Hour); return &x }
	check("EnsurePermission", e.store.EnsurePermission(ctx, "billing.view_invoice", ""))
	check("EnsurePermission", e.store.EnsurePermission(ctx, "billing.edit_invoice", ""))
	viewer, err := e.store.CreateRole(ctx, "", "viewer", "billing.view_invoice")
	check("CreateRole system", err)
	acct, err := e.store.CreateRole(ctx, "acme", "acct", "billing.edit_invoice")
	check("CreateRole org", err)
	check("AddMember", e.store.AddMember(ctx, "acme", "alice", MemberOptions{}))
	check("AssignRole system", e.store.AssignRole(ctx, "acme", "alice", viewer, nil))
	check("AssignRole org", e.store.AssignRole(ctx, "acme", "alice", acct, hour(1)))
	check("GrantPermissions org", e.store.GrantPermissions(ctx, acct, "billing.view_invoice"))
	check("GrantPermissions system", e.store.GrantPermissions(ctx, viewer, "billing.edit_invoice"))
	check("RevokePermissions", e.store.RevokePermissions(ctx, acct, "billing.view_invoice"))
	check("RenameRole org", e.store.RenameRole(ctx, acct, "accountant"))
	check("RenameRole system", e.store.RenameRole(ctx, viewer, "reader"))
	g1, err := e.store.GrantDataAccess(ctx, "acme", UserSubject("alice"), "invoice", "inv-1")
	check("GrantDataAccess user", err)
	g2, err := e.store.GrantDataAccess(ctx, "acme", RoleSubject(acct), "customer", "")
	check("GrantDataAccess role", err)
	check("RevokeDataAccess user", e.store.RevokeDataAccess(ctx, "acme", g1))
	check("RevokeDataAccess role", e.store.RevokeDataAccess(ctx, "acme", g2))
	check("SetMembershipWindow", e.store.SetMembershipWindow(ctx, "acme", "alice", nil, hour(2)))
	check("SuspendMember", e.store.SuspendMember(ctx, "acme", "alice"))
	check("UnassignRole", e.store.UnassignRole(ctx, "acme", "alice", acct))
	check("RevokeMember", e.store.RevokeMember(ctx, "acme", "alice"))
	check("DeleteRole org", e.store.DeleteRole(ctx, acct))
	check("DeleteRole system", e.store.DeleteRole(ctx, viewer))
	if writes < 15 {
		t.Fatalf("only %d local invalidations compared", writes)
	}
}

// sameInvalidation reports whether a and b have the same source and scopes.
func sameInvalidation(a, b listener.Invalidation) bool {
	return a.Source == b.Source && a.All == b.All && slices.Equal(a.Orgs, b.Orgs) &&
		slices.Equal(a.Members, b.Members) && slices.Equal(a.Users, b.Users)
}
