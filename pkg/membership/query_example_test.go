package membership_test

import (
	"context"
	"fmt"
	"time"

	"github.com/orgperm/orgperm/pkg/membership"
)

// A setup script and the screens of an admin console: an idempotent
// catalog and role, then the members page, the org switcher and "who can
// edit invoices". The reads are not cached: each is one statement.
func ExampleStore_WhoHas() {
	pool, cleanup := exampleDB()
	defer cleanup()
	ctx := context.Background()
	s := membership.NewStore(pool)

	// Setup, safe to run on every deploy.
	for range 2 {
		if _, err := s.EnsurePermissions(ctx,
			membership.Permission{Codename: "billing.view_invoice", Description: "View invoices"},
			membership.Permission{Codename: "billing.edit_invoice", Description: "Edit invoices"}); err != nil {
			panic(err)
		}
		_, changed, err := s.EnsureRole(ctx, "acme", "accountant", []string{"billing.view_invoice", "billing.edit_invoice"})
		if err != nil {
			panic(err)
		}
		fmt.Println("role changed:", changed)
	}
	accountant, err := s.RoleByName(ctx, "acme", "accountant")
	if err != nil {
		panic(err)
	}
	until := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, u := range []string{"alice", "bob", "carol"} {
		status := membership.StatusActive
		if u == "bob" {
			status = membership.StatusInvited
		}
		if err := s.AddMember(ctx, "acme", u, membership.MemberOptions{Status: status}); err != nil {
			panic(err)
		}
		if u != "carol" {
			if err := s.AssignRole(ctx, "acme", u, accountant.ID, &until); err != nil {
				panic(err)
			}
		}
	}

	// The members page, two at a time.
	at := time.Date(2030, 6, 1, 0, 0, 0, 0, time.UTC)
	q := membership.MemberQuery{ListOptions: membership.ListOptions{At: at, Limit: 2}}
	for {
		page, err := s.ListMembers(ctx, "acme", q)
		if err != nil {
			panic(err)
		}
		for _, m := range page.Items {
			fmt.Println("member:", m.User, m.Status, "active:", m.Active, "roles:", len(m.Roles))
		}
		if page.Next == "" {
			break
		}
		q.Cursor = page.Next
	}

	// The org switcher.
	orgs, wide, err := s.UserOrgs(ctx, "alice", membership.ListOptions{At: at})
	if err != nil {
		panic(err)
	}
	fmt.Println("alice's orgs:", len(orgs.Items), orgs.Items[0].Org, "active anywhere:", wide.Active)

	// Who holds a codename, and through which role.
	who, err := s.WhoHas(ctx, "acme", "billing.edit_invoice", membership.ListOptions{At: at})
	if err != nil {
		panic(err)
	}
	for _, h := range who.Items {
		fmt.Println("can edit:", h.User, "via", h.RoleName)
	}
	// After the role assignments end, nobody.
	who, err = s.WhoHas(ctx, "acme", "billing.edit_invoice", membership.ListOptions{At: until})
	if err != nil {
		panic(err)
	}
	fmt.Println("in 2031:", len(who.Items))
	// Output:
	// role changed: true
	// role changed: false
	// member: alice active active: true roles: 1
	// member: bob invited active: false roles: 0
	// member: carol active active: true roles: 0
	// alice's orgs: 1 acme active anywhere: true
	// can edit: alice via accountant
	// in 2031: 0
}
