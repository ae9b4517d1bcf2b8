package membership

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
)

// The idempotent admin writes, for setup scripts and migrations of an
// app's own catalog: running one twice leaves the model as running it once
// did, and the second run writes nothing (no statement, so no trigger and
// no notification). Like the other writes, each validates its input before
// any SQL, runs in one transaction and reports its invalidation to the Store's write hook once committed
// when it changed a permission set (see Store).

// ErrDuplicateCodename reports a codename given twice to EnsurePermissions
// with different descriptions.
var ErrDuplicateCodename = errors.New("membership: codename given twice with different descriptions")

// Permission is an entry of the permission catalog.
type Permission struct {
	// Codename is the permission's codename, app_label.action_model.
	Codename string
	// Description says what the permission allows, for people.
	Description string
}

// EnsurePermissions makes the catalog hold perms: a codename it lacks is
// added, one whose description differs gets perms' description, and
// nothing else is touched (a codename missing from perms stays). It
// returns how many entries it added or changed: 0 on a second run. One
// statement. A catalog entry alone is in no permission set, so it does not
// report an invalidation.
func (s *Store) EnsurePermissions(ctx context.Context, perms ...Permission) (int64, error) {
	desc := make(map[string]string, len(perms))
	var codes, descs []string
	for _, p := range perms {
		if err := checkCodenames([]string{p.Codename}); err != nil {
			return 0, err
		}
		if d, seen := desc[p.Codename]; seen {
			if d != p.Description {
				return 0, invalid("codename", p.Codename, ErrDuplicateCodename)
			}
			continue
		}
		desc[p.Codename] = p.Description
		codes, descs = append(codes, p.Codename), append(descs, p.Description)
	}
	if len(codes) == 0 {
		return 0, nil
	}
	var n int64
	err := s.inTx(ctx, "ensure permissions", func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			INSERT INTO orgperm.permissions (codename, description)
			SELECT c, d FROM unnest($1::text[], $2::text[]) AS u (c, d)
			ON CONFLICT (codename) DO UPDATE SET description = EXCLUDED.description
			WHERE permissions.description IS DISTINCT FROM EXCLUDED.description`, codes, descs)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// EnsureRole makes org ("" for a system role) hold a role named name with
// exactly the permissions codenames (which must be in the catalog:
// ErrUnknownPermission): it creates the role if there is none of that name,
// else adds the codenames it lacks and removes the ones not in codenames.
// It returns the role's ID and whether anything changed (false on a second
// run). One transaction: the role's row is locked while its permissions
// are compared, so concurrent EnsureRole calls of one role apply one after
// the other; at most one DELETE and one INSERT statement, each notifying as
// the triggers do (none when there is nothing to change). Scope of an
// existing role's change: the role's org, or All for a system role; a new
// role has no holders: no invalidation is reported.
func (s *Store) EnsureRole(ctx context.Context, org, name string, codenames []string) (int64, bool, error) {
	if org != "" {
		if err := checkID("org", org); err != nil {
			return 0, false, err
		}
	}
	if err := checkRoleName(name); err != nil {
		return 0, false, err
	}
	if err := checkCodenames(codenames); err != nil {
		return 0, false, err
	}
	want := slices.Compact(slices.Sorted(slices.Values(codenames)))
	var (
		id               int64
		created, changed bool
	)
	err := s.inTx(ctx, "ensure role", func(tx pgx.Tx) error {
		const existing = `
			SELECT r.id, false FROM ONLY orgperm.roles r
			WHERE r.name = $2::text AND (r.org_id = $1::text OR ($1::text IS NULL AND r.org_id IS NULL))`
		err := tx.QueryRow(ctx, `
			WITH ins AS (
			    INSERT INTO orgperm.roles (org_id, name) VALUES ($1::text, $2::text)
			    ON CONFLICT DO NOTHING
			    RETURNING id
			)
			SELECT id, true FROM ins
			UNION ALL`+existing+`
			LIMIT 1`, nullString(org), name).Scan(&id, &created)
		if errors.Is(err, pgx.ErrNoRows) {
			// Created by a concurrent transaction after this statement's
			// snapshot: read it with a new one.
			err = tx.QueryRow(ctx, existing, nullString(org), name).Scan(&id, &created)
		}
		if err != nil {
			return err
		}
		var have []string
		if !created {
			// Lock the role, then read its permissions in a new statement:
			// its snapshot is taken after the lock is granted, so it sees
			// what a concurrent EnsureRole committed.
			if _, err := tx.Exec(ctx, `SELECT FROM ONLY orgperm.roles WHERE id = $1 FOR UPDATE`, id); err != nil {
				return err
			}
			if err := tx.QueryRow(ctx, `
				SELECT ARRAY(SELECT rp.codename::text FROM ONLY orgperm.role_permissions rp WHERE rp.role_id = $1)`,
				id).Scan(&have); err != nil {
				return err
			}
		}
		var extra, missing []string
		for _, c := range have {
			if _, found := slices.BinarySearch(want, c); !found {
				extra = append(extra, c)
			}
		}
		for _, c := range want {
			if !slices.Contains(have, c) {
				missing = append(missing, c)
			}
		}
		if len(extra) > 0 {
			if _, err := tx.Exec(ctx, `DELETE FROM orgperm.role_permissions WHERE role_id = $1 AND codename = ANY ($2::text[])`,
				id, extra); err != nil {
				return err
			}
		}
		if len(missing) > 0 {
			if _, err := tx.Exec(ctx, `INSERT INTO orgperm.role_permissions (role_id, codename) SELECT $1, unnest($2::text[])`,
				id, missing); err != nil {
				return err
			}
		}
		changed = created || len(extra) > 0 || len(missing) > 0
		return nil
	})
	if err != nil {
		return 0, false, err
	}
	if changed && !created {
		s.notify(roleInv("role_permissions", nullString(org)))
	}
	return id, changed, nil
}

// RenameRoleByName renames the role of org ("" for a system role) named
// from to to, idempotently: when there is no role named from but there is
// one named to, it was renamed already and nothing is written. It returns
// the role's ID; ErrUnknownRole when neither name exists, ErrRoleExists
// when both do. One statement when there is something to rename. Scope: the
// role's org, or All for a system role. (Store.RenameRole renames by ID.)
func (s *Store) RenameRoleByName(ctx context.Context, org, from, to string) (int64, error) {
	if org != "" {
		if err := checkID("org", org); err != nil {
			return 0, err
		}
	}
	if err := checkRoleName(from); err != nil {
		return 0, err
	}
	if err := checkRoleName(to); err != nil {
		return 0, err
	}
	var (
		id      int64
		renamed bool
	)
	const inOrg = `(r.org_id = $1::text OR ($1::text IS NULL AND r.org_id IS NULL))`
	err := s.inTx(ctx, "rename role", func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `
			WITH upd AS (
			    UPDATE orgperm.roles r SET name = $3::text
			    WHERE `+inOrg+` AND r.name = $2::text AND $2::text <> $3::text
			    RETURNING r.id
			)
			SELECT id, true FROM upd
			UNION ALL
			SELECT r.id, false FROM ONLY orgperm.roles r WHERE `+inOrg+` AND r.name = $3::text
			LIMIT 1`, nullString(org), from, to).Scan(&id, &renamed)
		if errors.Is(err, pgx.ErrNoRows) {
			err = fmt.Errorf("%w: %q in org %q", ErrUnknownRole, from, org)
		}
		return err
	})
	if err != nil {
		return 0, err
	}
	if renamed {
		s.notify(roleInv("roles", nullString(org)))
	}
	return id, nil
}
