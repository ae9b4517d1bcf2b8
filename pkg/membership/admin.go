package membership

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/orgperm/orgperm/pkg/listener"
)

// The admin writes. Each validates its input before any SQL (nothing is
// written on bad input), runs in one transaction, maps a constraint
// violation to its sentinel (see errors.go) and, once committed, calls
// the Store's write hook (a Client's read-your-writes) with the invalidation
// the triggers send for it. The database's triggers
// tell every other instance.

// MemberOptions are the optional fields of AddMember.
type MemberOptions struct {
	// Status of the membership. Defaults to StatusActive.
	Status Status
	// ValidFrom is the start of the membership's window (inclusive). Nil
	// (the default) is an open start.
	ValidFrom *time.Time
	// ValidUntil is the end of the membership's window (exclusive); it must
	// be after ValidFrom. Nil (the default) is an open end.
	ValidUntil *time.Time
}

// Subject is who a data-access grant is made to: exactly one of a user (of
// the grant's organization) or a role (a system role or one of the grant's
// organization). Build one with UserSubject or RoleSubject.
type Subject struct {
	// User is the user ID of a grant to a user.
	User string
	// RoleID is the role of a grant to a role.
	RoleID int64
}

// UserSubject returns the Subject for a grant to user.
func UserSubject(user string) Subject { return Subject{User: user} }

// RoleSubject returns the Subject for a grant to the holders of a role.
func RoleSubject(roleID int64) Subject { return Subject{RoleID: roleID} }

// sentinels are this package's own errors, returned as they are by inTx.
var sentinels = []error{
	ErrInvalidID, ErrInvalidCodename, ErrInvalidResourceType, ErrInvalidStatus,
	ErrInvalidWindow, ErrInvalidRoleName, ErrInvalidSubject, ErrUnknownRole,
	ErrUnknownPermission, ErrUnknownGrant, ErrRoleOrgMismatch, ErrNotMember, ErrRoleExists,
}

// inTx runs fn in one transaction and maps its error: a database error to
// its sentinel when it is a known constraint, else wrapped with op; this
// package's own errors unchanged.
func (s *Store) inTx(ctx context.Context, op string, fn func(pgx.Tx) error) error {
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		if err := setActor(ctx, tx); err != nil { // the audit trail's actor (audit.go)
			return err
		}
		return fn(tx)
	})
	if err == nil {
		return nil
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		for _, sentinel := range sentinels {
			if errors.Is(err, sentinel) {
				return err
			}
		}
	}
	return dbError(op, err)
}

// micro truncates t to PostgreSQL's precision (microseconds), so that what
// is validated is what is stored.
func micro(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.Truncate(time.Microsecond)
	return &u
}

func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func nullInt(i int64) *int64 {
	if i == 0 {
		return nil
	}
	return &i
}

// roleInv is the invalidation a write of source to a role of org (nil: a
// system role, offered in every org) sends.
func roleInv(source string, org *string) listener.Invalidation {
	if org == nil {
		return listener.Invalidation{Source: source, All: true}
	}
	return orgInv(source, *org)
}

// AddMember adds user to org, or updates the existing membership, with the
// status (default active) and window of opts. Scope: the member.
func (s *Store) AddMember(ctx context.Context, org, user string, opts MemberOptions) error {
	if err := checkMember(org, user); err != nil {
		return err
	}
	status := opts.Status
	if status == StatusNone {
		status = StatusActive
	}
	if !status.Valid() {
		return invalid("status", string(status), ErrInvalidStatus)
	}
	from, until := micro(opts.ValidFrom), micro(opts.ValidUntil)
	if err := checkWindow(from, until); err != nil {
		return err
	}
	err := s.inTx(ctx, "add member", func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `
			INSERT INTO orgperm.memberships (org_id, user_id, status, valid_from, valid_until)
			VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (org_id, user_id) DO UPDATE
			SET status = EXCLUDED.status, valid_from = EXCLUDED.valid_from,
			    valid_until = EXCLUDED.valid_until, updated_at = now()`,
			org, user, string(status), from, until)
		return err
	})
	if err != nil {
		return err
	}
	s.notify(memberInv("memberships", org, user))
	return nil
}

// SuspendMember sets the status of user's membership in org to suspended
// (ErrNotMember if there is none). Scope: the member.
func (s *Store) SuspendMember(ctx context.Context, org, user string) error {
	return s.setStatus(ctx, "suspend member", org, user, StatusSuspended)
}

// RevokeMember sets the status of user's membership in org to revoked
// (ErrNotMember if there is none). The membership, its roles and its
// grants stay, and grant nothing. Scope: the member.
func (s *Store) RevokeMember(ctx context.Context, org, user string) error {
	return s.setStatus(ctx, "revoke member", org, user, StatusRevoked)
}

func (s *Store) setStatus(ctx context.Context, op, org, user string, status Status) error {
	if err := checkMember(org, user); err != nil {
		return err
	}
	return s.updateMembership(ctx, op, org, user, `status = $3`, string(status))
}

// updateMembership sets the columns of set (parameters from $3, args) and
// updated_at on the membership of user in org, in one transaction:
// ErrNotMember if there is none; an invalidation of the member if there
// is. The caller has validated its arguments.
func (s *Store) updateMembership(ctx context.Context, op, org, user, set string, args ...any) error {
	err := s.inTx(ctx, op, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE orgperm.memberships SET `+set+`, updated_at = now()
			WHERE org_id = $1 AND user_id = $2`, append([]any{org, user}, args...)...)
		if err == nil && tag.RowsAffected() == 0 {
			err = fmt.Errorf("%w: user %q in org %q", ErrNotMember, user, org)
		}
		return err
	})
	if err != nil {
		return err
	}
	s.notify(memberInv("memberships", org, user))
	return nil
}

// SetMembershipWindow sets the window [from, until) of user's membership in
// org (ErrNotMember if there is none); a nil bound is open. Scope: the
// member.
func (s *Store) SetMembershipWindow(ctx context.Context, org, user string, from, until *time.Time) error {
	if err := checkMember(org, user); err != nil {
		return err
	}
	from, until = micro(from), micro(until)
	if err := checkWindow(from, until); err != nil {
		return err
	}
	return s.updateMembership(ctx, "set membership window", org, user, `valid_from = $3, valid_until = $4`, from, until)
}

// EnsurePermission adds codename to the permission catalog, or updates its
// description. A catalog entry alone is in no permission set (a new codename
// is in no role yet, a description is not part of a set), so it does not
// invalidate anything.
func (s *Store) EnsurePermission(ctx context.Context, codename, description string) error {
	if err := checkCodenames([]string{codename}); err != nil {
		return err
	}
	return s.inTx(ctx, "ensure permission", func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `
			INSERT INTO orgperm.permissions (codename, description) VALUES ($1, $2)
			ON CONFLICT (codename) DO UPDATE SET description = EXCLUDED.description
			WHERE permissions.description IS DISTINCT FROM EXCLUDED.description`,
			codename, description)
		return err
	})
}

// CreateRole creates a role named name in org ("" for a system role,
// offered in every organization) with the permissions codenames, which must
// be in the catalog (ErrUnknownPermission), and returns its ID. The name
// must be free in its organization (ErrRoleExists). A new role has no
// holders, so it invalidates nothing.
func (s *Store) CreateRole(ctx context.Context, org, name string, codenames ...string) (int64, error) {
	if org != "" {
		if err := checkID("org", org); err != nil {
			return 0, err
		}
	}
	if err := checkRoleName(name); err != nil {
		return 0, err
	}
	if err := checkCodenames(codenames); err != nil {
		return 0, err
	}
	codes := slices.Compact(slices.Sorted(slices.Values(codenames)))
	var id int64
	err := s.inTx(ctx, "create role", func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `
			WITH r AS (
			    INSERT INTO orgperm.roles (org_id, name) VALUES ($1, $2) RETURNING id
			), p AS (
			    INSERT INTO orgperm.role_permissions (role_id, codename)
			    SELECT r.id, c FROM r, unnest($3::text[]) AS c
			)
			SELECT id FROM r`, nullString(org), name, codes).Scan(&id)
	})
	if err != nil {
		return 0, err
	}
	return id, nil
}

// RenameRole renames a role (ErrUnknownRole, ErrRoleExists). Scope: the
// role's org, or All for a system role.
func (s *Store) RenameRole(ctx context.Context, roleID int64, name string) error {
	if err := checkRoleName(name); err != nil {
		return err
	}
	var org *string
	err := s.inTx(ctx, "rename role", func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `
			UPDATE orgperm.roles SET name = $2 WHERE id = $1 RETURNING org_id::text`,
			roleID, name).Scan(&org)
		if errors.Is(err, pgx.ErrNoRows) {
			err = fmt.Errorf("%w: %d", ErrUnknownRole, roleID)
		}
		return err
	})
	if err != nil {
		return err
	}
	s.notify(roleInv("roles", org))
	return nil
}

// DeleteRole deletes a role (ErrUnknownRole), with its permissions, its
// assignments and its data grants. Scope: the role's org, or All for a
// system role.
func (s *Store) DeleteRole(ctx context.Context, roleID int64) error {
	var org *string
	err := s.inTx(ctx, "delete role", func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `DELETE FROM orgperm.roles WHERE id = $1 RETURNING org_id::text`,
			roleID).Scan(&org)
		if errors.Is(err, pgx.ErrNoRows) {
			err = fmt.Errorf("%w: %d", ErrUnknownRole, roleID)
		}
		return err
	})
	if err != nil {
		return err
	}
	s.notify(roleInv("roles", org))
	return nil
}

// GrantPermissions adds codenames (which must be in the catalog:
// ErrUnknownPermission) to a role (ErrUnknownRole); codenames it already
// has are skipped. Scope: the role's org, or All for a system role; no invalidation
// when nothing was added.
func (s *Store) GrantPermissions(ctx context.Context, roleID int64, codenames ...string) error {
	return s.changePermissions(ctx, "grant permissions", `
		WITH r AS (SELECT id, org_id::text AS org_id FROM orgperm.roles WHERE id = $1),
		c AS (
		    INSERT INTO orgperm.role_permissions (role_id, codename)
		    SELECT r.id, c FROM r, unnest($2::text[]) AS c
		    ON CONFLICT DO NOTHING
		    RETURNING 1
		)
		SELECT r.org_id, (SELECT count(*) FROM c) FROM r`, roleID, codenames)
}

// RevokePermissions removes codenames from a role (ErrUnknownRole);
// codenames it does not have are skipped. Scope: the role's org, or All for
// a system role; no call when nothing was removed.
func (s *Store) RevokePermissions(ctx context.Context, roleID int64, codenames ...string) error {
	return s.changePermissions(ctx, "revoke permissions", `
		WITH r AS (SELECT id, org_id::text AS org_id FROM orgperm.roles WHERE id = $1),
		c AS (
		    DELETE FROM orgperm.role_permissions rp USING r
		    WHERE rp.role_id = r.id AND rp.codename = ANY ($2::text[])
		    RETURNING 1
		)
		SELECT r.org_id, (SELECT count(*) FROM c) FROM r`, roleID, codenames)
}

func (s *Store) changePermissions(ctx context.Context, op, sql string, roleID int64, codenames []string) error {
	if err := checkCodenames(codenames); err != nil {
		return err
	}
	codes := slices.Compact(slices.Sorted(slices.Values(codenames)))
	var (
		org     *string
		changed int64
	)
	err := s.inTx(ctx, op, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, sql, roleID, codes).Scan(&org, &changed)
		if errors.Is(err, pgx.ErrNoRows) {
			err = fmt.Errorf("%w: %d", ErrUnknownRole, roleID)
		}
		return err
	})
	if err != nil {
		return err
	}
	if changed > 0 {
		s.notify(roleInv("role_permissions", org))
	}
	return nil
}

// AssignRole gives user, a member of org (ErrNotMember), the role roleID
// (ErrUnknownRole), until the instant until (exclusive; nil: no end). The
// role must be a system role or one of org (ErrRoleOrgMismatch). Assigning
// a role the member holds sets its end. Scope: the member.
func (s *Store) AssignRole(ctx context.Context, org, user string, roleID int64, until *time.Time) error {
	if err := checkMember(org, user); err != nil {
		return err
	}
	until = micro(until)
	err := s.inTx(ctx, "assign role", func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `
			INSERT INTO orgperm.membership_roles (org_id, user_id, role_id, valid_until)
			VALUES ($1, $2, $3, $4)
			ON CONFLICT (org_id, user_id, role_id) DO UPDATE SET valid_until = EXCLUDED.valid_until`,
			org, user, roleID, until)
		return err
	})
	if err != nil {
		return err
	}
	s.notify(memberInv("membership_roles", org, user))
	return nil
}

// UnassignRole takes the role roleID from user in org. Taking a role the
// member does not hold does nothing (and invalidates nothing). Scope: the
// member.
func (s *Store) UnassignRole(ctx context.Context, org, user string, roleID int64) error {
	if err := checkMember(org, user); err != nil {
		return err
	}
	var n int64
	err := s.inTx(ctx, "unassign role", func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			DELETE FROM orgperm.membership_roles WHERE org_id = $1 AND user_id = $2 AND role_id = $3`,
			org, user, roleID)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return err
	}
	if n > 0 {
		s.notify(memberInv("membership_roles", org, user))
	}
	return nil
}

// GrantDataAccess grants subject, in org, access to the record resourceID of
// resourceType, or to every record of the type when resourceID is "". A
// grant to a role (ErrUnknownRole) applies to its holders in org only, and
// the role must be a system role or one of org (ErrRoleOrgMismatch). It
// returns the grant's ID; granting what is already granted returns the
// existing grant's ID and writes nothing. Scope: the member for a grant to
// a user, org for a grant to a role.
func (s *Store) GrantDataAccess(ctx context.Context, org string, subject Subject, resourceType, resourceID string) (int64, error) {
	if err := checkID("org", org); err != nil {
		return 0, err
	}
	if (subject.User == "") == (subject.RoleID == 0) {
		return 0, invalid("subject", fmt.Sprintf("%+v", subject), ErrInvalidSubject)
	}
	if subject.User != "" {
		if err := checkID("user", subject.User); err != nil {
			return 0, err
		}
	}
	if !ValidResourceType(resourceType) {
		return 0, invalid("resource_type", resourceType, ErrInvalidResourceType)
	}
	if resourceID != "" {
		if err := checkID("resource_id", resourceID); err != nil {
			return 0, err
		}
	}
	var (
		id       int64
		inserted bool
	)
	user, role, res := nullString(subject.User), nullInt(subject.RoleID), nullString(resourceID)
	err := s.inTx(ctx, "grant data access", func(tx pgx.Tx) error {
		const existing = `
			SELECT d.id, false FROM orgperm.data_access d
			WHERE d.org_id = $1 AND d.user_id IS NOT DISTINCT FROM $2::text
			  AND d.role_id IS NOT DISTINCT FROM $3::bigint AND d.resource_type = $4::text
			  AND d.resource_id IS NOT DISTINCT FROM $5::text`
		err := tx.QueryRow(ctx, `
			WITH ins AS (
			    INSERT INTO orgperm.data_access (org_id, user_id, role_id, resource_type, resource_id)
			    VALUES ($1, $2::text, $3::bigint, $4::text, $5::text)
			    ON CONFLICT DO NOTHING
			    RETURNING id
			)
			SELECT id, true FROM ins
			UNION ALL`+existing+`
			LIMIT 1`, org, user, role, resourceType, res).Scan(&id, &inserted)
		if errors.Is(err, pgx.ErrNoRows) {
			// A concurrent transaction inserted the same grant after
			// this statement's snapshot: read it with a new one.
			err = tx.QueryRow(ctx, existing, org, user, role, resourceType, res).Scan(&id, &inserted)
		}
		return err
	})
	if err != nil {
		return 0, err
	}
	if inserted {
		if subject.User != "" {
			s.notify(memberInv("data_access", org, subject.User))
		} else {
			s.notify(orgInv("data_access", org))
		}
	}
	return id, nil
}

// RevokeDataAccess deletes the data-access grant grantID of org
// (ErrUnknownGrant when org has no such grant). Scope: the member for a
// grant to a user, org for a grant to a role.
func (s *Store) RevokeDataAccess(ctx context.Context, org string, grantID int64) error {
	if err := checkID("org", org); err != nil {
		return err
	}
	var user *string
	err := s.inTx(ctx, "revoke data access", func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `
			DELETE FROM orgperm.data_access WHERE org_id = $1 AND id = $2 RETURNING user_id::text`,
			org, grantID).Scan(&user)
		if errors.Is(err, pgx.ErrNoRows) {
			err = fmt.Errorf("%w: %d in org %q", ErrUnknownGrant, grantID, org)
		}
		return err
	})
	if err != nil {
		return err
	}
	if user != nil {
		s.notify(memberInv("data_access", org, *user))
	} else {
		s.notify(orgInv("data_access", org))
	}
	return nil
}
