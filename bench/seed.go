package main

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
)

// The seeded data set: issue #12's typical member (see seed) in every org.
const (
	// codename is the permission every strategy is asked about.
	codename = "billing.view_invoice"

	// hotOrg and hotUser are the key of the hit and miss rows.
	hotOrg  = "org-000"
	hotUser = "user-000"

	// memOrgs × memUsers distinct (org, user) keys fill the caches for the
	// memory row.
	memOrgs  = 100
	memUsers = 100

	// bulkOrg has bulkUsers members, for the 1,000-row UPDATE statements.
	bulkOrg   = "org-bulk"
	bulkUsers = 1000

	// invalOrg has invalUsers members whose membership the invalidation
	// rows toggle, one write at a time.
	invalOrg   = "org-inval"
	invalUsers = 200
)

// memKeys returns the memOrgs × memUsers keys of the memory row; the first
// one is (hotOrg, hotUser).
func memKeys() (orgs, users []string) {
	for o := range memOrgs {
		for u := range memUsers {
			orgs = append(orgs, fmt.Sprintf("org-%03d", o))
			users = append(users, fmt.Sprintf("user-%03d", u))
		}
	}
	return orgs, users
}

// seed writes the data set with plain SQL, a few set-based statements: the
// orgs of memKeys, bulkOrg and invalOrg, every member active, holding one
// role of each of three pools, with the record grants of issue #12's
// typical member. The catalog has 151 codenames: billing.view_invoice and
// app<c%10>.perm_<c> for c in 1..150. Each org has 9 roles: a0-a3 grant
// billing.view_invoice and 16 codenames each, b0-b2 17 each and c0-c1 16
// each, all different, and member i holds a(i%4), b(i%3) and c(i%2): 3
// roles and 50 codenames. Data access: every a-role grants 4 records, every
// b- and c-role 3 (10 per member through roles), and every member alone
// holds 2 records of each of 5 types (10 more), so a typical set is 3
// roles, 50 codenames, 5 resource types and 20 records.
func seed(ctx context.Context, pool *pgxpool.Pool) error {
	orgs, users := memKeys()
	for u := range bulkUsers {
		orgs, users = append(orgs, bulkOrg), append(users, fmt.Sprintf("bulk-%04d", u))
	}
	for u := range invalUsers {
		orgs, users = append(orgs, invalOrg), append(users, fmt.Sprintf("inval-%03d", u))
	}
	steps := []struct {
		what string
		sql  string
		args []any
	}{
		{"permissions", `INSERT INTO orgperm.permissions (codename)
			SELECT 'app' || (c % 10) || '.perm_' || c FROM generate_series(1, 150) c
			UNION ALL SELECT $1 UNION ALL SELECT 'admin.delete_org'`, []any{codename}},
		{"memberships", `INSERT INTO orgperm.memberships (org_id, user_id)
			SELECT * FROM unnest($1::text[], $2::text[])`, []any{orgs, users}},
		{"roles", `INSERT INTO orgperm.roles (org_id, name)
			SELECT o, n FROM (SELECT DISTINCT org_id FROM orgperm.memberships) m(o),
			     unnest(array['a0','a1','a2','a3','b0','b1','b2','c0','c1']) n`, nil},
		// Role k grants codenames [start, start+len) of the generated ones.
		{"role permissions", `INSERT INTO orgperm.role_permissions (role_id, codename)
			SELECT r.id, 'app' || (c % 10) || '.perm_' || c
			FROM orgperm.roles r
			JOIN (VALUES ('a0', 1, 16), ('a1', 17, 16), ('a2', 33, 16), ('a3', 49, 16),
			             ('b0', 65, 17), ('b1', 82, 17), ('b2', 99, 17),
			             ('c0', 116, 16), ('c1', 132, 16)) AS v(name, start, len) ON v.name = r.name
			CROSS JOIN LATERAL generate_series(v.start, v.start + v.len - 1) c
			UNION ALL SELECT r.id, $1 FROM orgperm.roles r WHERE r.name LIKE 'a%'`, []any{codename}},
		{"role assignments", `INSERT INTO orgperm.membership_roles (org_id, user_id, role_id)
			SELECT m.org_id, m.user_id, r.id
			FROM (SELECT org_id, user_id, row_number() OVER (PARTITION BY org_id ORDER BY user_id) - 1 AS i
			      FROM orgperm.memberships) m
			JOIN orgperm.roles r ON r.org_id = m.org_id
			 AND r.name IN ('a' || (m.i % 4), 'b' || (m.i % 3), 'c' || (m.i % 2))`, nil},
		{"role data access", `INSERT INTO orgperm.data_access (org_id, role_id, resource_type, resource_id)
			SELECT r.org_id, r.id, 'type' || (j % 5), r.name || '-rec-' || j
			FROM orgperm.roles r
			CROSS JOIN LATERAL generate_series(0, CASE WHEN r.name LIKE 'a%' THEN 3 ELSE 2 END) j`, nil},
		{"member data access", `INSERT INTO orgperm.data_access (org_id, user_id, resource_type, resource_id)
			SELECT m.org_id, m.user_id, 'type' || (j % 5), m.user_id || '-rec-' || j
			FROM orgperm.memberships m CROSS JOIN generate_series(0, 9) j`, nil},
		{"analyze", `ANALYZE`, nil},
	}
	for _, s := range steps {
		if _, err := pool.Exec(ctx, s.sql, s.args...); err != nil {
			return fmt.Errorf("seed %s: %w", s.what, err)
		}
	}
	return nil
}
