package membership_test

import (
	"context"
	"fmt"

	"github.com/orgperm/orgperm/pkg/membership"
)

// Row-level security from the same grants: an app's invoices table
// protected by orgperm.protect_table, read by a role that holds
// orgperm_reader and no privilege on orgperm's own tables. Each transaction
// names its principal with SetPrincipal (in an HTTP handler,
// SetPrincipalFromContext), and PostgreSQL shows it exactly the invoices
// the Go API's CanAccess admits.
func ExampleSetPrincipal() {
	ctx := context.Background()
	pool, cleanup := exampleDB()
	defer cleanup()
	for _, sql := range []string{
		// The model: alice may read invoices inv-1 and inv-2 of acme.
		`INSERT INTO orgperm.memberships (org_id, user_id) VALUES ('acme', 'alice')`,
		`INSERT INTO orgperm.data_access (org_id, user_id, resource_type, resource_id)
		 VALUES ('acme', 'alice', 'invoice', 'inv-1'), ('acme', 'alice', 'invoice', 'inv-2')`,
		// The app's table and its role (usually: the role the app logs in as).
		`CREATE TABLE invoices (org_id text NOT NULL, id text NOT NULL, amount numeric NOT NULL, PRIMARY KEY (org_id, id))`,
		`INSERT INTO invoices VALUES ('acme', 'inv-1', 10), ('acme', 'inv-2', 20), ('acme', 'inv-3', 30), ('globex', 'inv-1', 40)`,
		`CREATE ROLE example_app NOLOGIN IN ROLE orgperm_reader`,
		`GRANT SELECT ON invoices TO example_app`,
		// One call writes the policy.
		`SELECT orgperm.protect_table('invoices', 'org_id', 'id', 'invoice')`,
	} {
		if _, err := pool.Exec(ctx, sql); err != nil {
			panic(err)
		}
	}
	defer pool.Exec(ctx, `DROP OWNED BY example_app; DROP ROLE example_app`) //nolint:errcheck

	read := func(org, user string) {
		tx, err := pool.Begin(ctx)
		if err != nil {
			panic(err)
		}
		defer tx.Rollback(ctx) //nolint:errcheck
		if _, err := tx.Exec(ctx, `SET LOCAL ROLE example_app`); err != nil {
			panic(err)
		}
		if user != "" {
			if err := membership.SetPrincipal(ctx, tx, org, user); err != nil {
				panic(err)
			}
		}
		var ids []string
		if err := tx.QueryRow(ctx, `SELECT array(SELECT org_id || '/' || id FROM invoices ORDER BY 1)`).Scan(&ids); err != nil {
			panic(err)
		}
		fmt.Printf("%q in %q sees %v\n", user, org, ids)
	}
	read("acme", "alice")
	read("globex", "alice")
	read("acme", "mallory")
	read("", "") // no principal: nothing
	// Output:
	// "alice" in "acme" sees [acme/inv-1 acme/inv-2]
	// "alice" in "globex" sees []
	// "mallory" in "acme" sees []
	// "" in "" sees []
}
