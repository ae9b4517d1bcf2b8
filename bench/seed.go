package main

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
)

// The seeded data set. Every member holds the three roles of their org,
// whose permissions add up to 20 codenames: the "typical" permission set
// the memory row is about.
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

// roles are the roles of every org and their codenames (20 distinct).
var roles = map[string][]string{
	"viewer": {"billing.view_invoice", "billing.view_payment", "crm.view_contact", "crm.view_company",
		"projects.view_project", "projects.view_task", "reports.view_report", "files.view_file"},
	"editor": {"crm.view_contact", "crm.change_contact", "crm.add_contact", "projects.view_project",
		"projects.add_task", "projects.change_task", "projects.delete_task", "files.add_file", "files.change_file"},
	"accountant": {"billing.view_invoice", "billing.add_invoice", "billing.change_invoice", "billing.delete_invoice",
		"billing.view_payment", "billing.add_payment", "reports.view_report", "reports.export_report", "crm.view_company"},
}

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
// orgs of memKeys, bulkOrg and invalOrg, each with the three roles, every
// member active and holding all three.
func seed(ctx context.Context, pool *pgxpool.Pool) error {
	orgs, users := memKeys()
	for u := range bulkUsers {
		orgs, users = append(orgs, bulkOrg), append(users, fmt.Sprintf("bulk-%04d", u))
	}
	for u := range invalUsers {
		orgs, users = append(orgs, invalOrg), append(users, fmt.Sprintf("inval-%03d", u))
	}
	var roleNames, roleCodes []string
	for name, codes := range roles {
		for _, c := range codes {
			roleNames, roleCodes = append(roleNames, name), append(roleCodes, c)
		}
	}
	steps := []struct {
		what string
		sql  string
		args []any
	}{
		{"permissions", `INSERT INTO orgperm.permissions (codename)
			SELECT DISTINCT c FROM unnest($1::text[]) c
			UNION SELECT 'admin.delete_org' ON CONFLICT DO NOTHING`, []any{roleCodes}},
		{"memberships", `INSERT INTO orgperm.memberships (org_id, user_id)
			SELECT * FROM unnest($1::text[], $2::text[])`, []any{orgs, users}},
		{"roles", `INSERT INTO orgperm.roles (org_id, name)
			SELECT o, n FROM (SELECT DISTINCT org_id FROM orgperm.memberships) m(o),
			                 (SELECT DISTINCT n FROM unnest($1::text[]) n) r(n)`, []any{roleNames}},
		{"role permissions", `INSERT INTO orgperm.role_permissions (role_id, codename)
			SELECT r.id, x.c FROM orgperm.roles r
			JOIN unnest($1::text[], $2::text[]) x(n, c) ON x.n = r.name`, []any{roleNames, roleCodes}},
		{"role assignments", `INSERT INTO orgperm.membership_roles (org_id, user_id, role_id)
			SELECT m.org_id, m.user_id, r.id FROM orgperm.memberships m
			JOIN orgperm.roles r ON r.org_id = m.org_id`, nil},
		{"analyze", `ANALYZE`, nil},
	}
	for _, s := range steps {
		if _, err := pool.Exec(ctx, s.sql, s.args...); err != nil {
			return fmt.Errorf("seed %s: %w", s.what, err)
		}
	}
	return nil
}
