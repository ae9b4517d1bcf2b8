package membership_test

import (
	"encoding/json"
	"fmt"

	"github.com/orgperm/orgperm/pkg/membership"
)

// A permission set as an app hands it to a front end (what Store.Load
// returns, encoded with encoding/json), decoded and checked.
const aliceInAcme = `{
  "org": "acme", "user": "alice", "status": "active", "active": true,
  "window": {"from": null, "until": "2031-01-01T00:00:00Z"},
  "roles": [
    {"id": 1, "name": "viewer", "system": true, "valid_until": null},
    {"id": 7, "name": "accountant", "system": false, "valid_until": "2030-01-01T13:00:00Z"}
  ],
  "permissions": ["billing.edit_invoice", "billing.view_invoice"],
  "data_access": {
    "invoice": {"all": false, "ids": ["inv-2", "inv-1"]},
    "customer": {"all": true, "ids": []}
  },
  "valid_until": "2030-01-01T13:00:00Z",
  "computed_at": "2030-01-01T12:00:00Z"
}`

func ExamplePermissionSet() {
	var s membership.PermissionSet
	if err := json.Unmarshal([]byte(aliceInAcme), &s); err != nil {
		panic(err)
	}
	fmt.Println("active:", s.Active())
	fmt.Println("view invoices:", s.Has("billing.view_invoice"))
	fmt.Println("view or manage users:", s.HasAny("users.view_user", "users.manage_user"))
	fmt.Println("view and edit invoices:", s.HasAll("billing.view_invoice", "billing.edit_invoice"))
	fmt.Println("invoice inv-1:", s.CanAccess("invoice", "inv-1"), "inv-3:", s.CanAccess("invoice", "inv-3"))
	all, ids := s.AccessibleIDs("invoice")
	fmt.Println("invoices:", all, ids) // for WHERE id = ANY($1)
	all, _ = s.AccessibleIDs("customer")
	fmt.Println("customers: all =", all)
	fmt.Println("recompute at:", s.ValidUntil())
	// Output:
	// active: true
	// view invoices: true
	// view or manage users: false
	// view and edit invoices: true
	// invoice inv-1: true inv-3: false
	// invoices: false [inv-1 inv-2]
	// customers: all = true
	// recompute at: 2030-01-01 13:00:00 +0000 UTC
}

func ExamplePermissionSet_Explain() {
	var s membership.PermissionSet
	if err := json.Unmarshal([]byte(aliceInAcme), &s); err != nil {
		panic(err)
	}
	for _, c := range []string{"billing.view_invoice", "users.manage_user"} {
		d := s.Explain(c)
		fmt.Println(c, d.Allowed, d.Reason)
	}
	d := s.ExplainAccess("invoice", "inv-9")
	fmt.Println("invoice inv-9:", d.Allowed, d.Reason, "-", d.Message)
	// Output:
	// billing.view_invoice true granted
	// users.manage_user false not_granted
	// invoice inv-9: false not_granted - no grant covers invoice "inv-9"
}

// A suspended member: the set grants nothing, and says why.
func ExamplePermissionSet_suspended() {
	var s membership.PermissionSet
	err := json.Unmarshal([]byte(`{"org": "acme", "user": "bob", "status": "suspended", "active": false,
		"window": {"from": null, "until": null}, "roles": [], "permissions": [], "data_access": {},
		"valid_until": null, "computed_at": "2030-01-01T12:00:00Z"}`), &s)
	if err != nil {
		panic(err)
	}
	d := s.Explain("billing.view_invoice")
	fmt.Println(s.Active(), d.Allowed, d.Reason)
	fmt.Println(d.Message)
	// Output:
	// false false suspended
	// membership of user "bob" in organization "acme" is suspended
}

// The Store validates input with these before any SQL runs; apps can
// validate their own forms with them too.
func ExampleValidCodename() {
	for _, c := range []string{"billing.view_invoice", "Billing.view", "billing", "a.b_2"} {
		fmt.Println(c, membership.ValidCodename(c))
	}
	fmt.Println(membership.ValidID("550e8400-e29b-41d4-a716-446655440000"), membership.ValidID("a\nb"))
	// Output:
	// billing.view_invoice true
	// Billing.view false
	// billing false
	// a.b_2 true
	// true false
}
