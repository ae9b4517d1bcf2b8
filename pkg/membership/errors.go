package membership

import (
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// Sentinel errors. Every error that the Store returns for bad input or for a
// broken rule of the model matches one of them with errors.Is, whether Go
// validation caught it before any SQL ran or a database constraint caught it
// (a race, or a rule only the database can check). Any other error (a lost
// connection, a cancelled context) is returned wrapped as it came: callers
// must treat it as "no permission" (fail closed).
var (
	// ErrInvalidID reports an organization or user ID (or a resource ID)
	// that is empty, longer than 128 bytes, not valid UTF-8 or that holds a
	// control character. It mirrors the orgperm.ext_id domain.
	ErrInvalidID = errors.New("membership: invalid ID")

	// ErrInvalidCodename reports a permission codename that is not of the
	// form app_label.action_model (^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$) or
	// that is longer than 100 bytes.
	ErrInvalidCodename = errors.New("membership: invalid permission codename")

	// ErrInvalidResourceType reports a data-access resource type that does
	// not match ^[a-z][a-z0-9_.]*$ or is longer than 100 bytes.
	ErrInvalidResourceType = errors.New("membership: invalid resource type")

	// ErrInvalidStatus reports a membership status other than active,
	// invited, suspended or revoked.
	ErrInvalidStatus = errors.New("membership: invalid status")

	// ErrInvalidWindow reports a membership window whose end is not after
	// its start.
	ErrInvalidWindow = errors.New("membership: invalid window: valid_until must be after valid_from")

	// ErrInvalidRoleName reports a role name that is empty, longer than 100
	// bytes, not valid UTF-8 or that holds a control character.
	ErrInvalidRoleName = errors.New("membership: invalid role name")

	// ErrInvalidSubject reports a data-access subject that names neither or
	// both of a user and a role.
	ErrInvalidSubject = errors.New("membership: invalid subject: give exactly one of a user or a role")

	// ErrUnknownRole reports a role ID that does not exist.
	ErrUnknownRole = errors.New("membership: unknown role")

	// ErrUnknownPermission reports a codename that is not in the permission
	// catalog (see Store.EnsurePermission).
	ErrUnknownPermission = errors.New("membership: unknown permission")

	// ErrUnknownGrant reports a data-access grant ID that does not exist in
	// the given organization.
	ErrUnknownGrant = errors.New("membership: unknown data-access grant")

	// ErrRoleOrgMismatch reports a role of one organization used in another:
	// assigned to a member of another org, or given a data grant there.
	ErrRoleOrgMismatch = errors.New("membership: role belongs to another organization")

	// ErrNotMember reports a write about a membership that does not exist.
	ErrNotMember = errors.New("membership: not a member")

	// ErrRoleExists reports a role name already taken in its organization
	// (or among system roles).
	ErrRoleExists = errors.New("membership: role already exists")
)

// ValidationError reports an input rejected before any SQL ran. It names
// the field and its (quoted, possibly shortened) value, and unwraps to one of
// the sentinels above, so errors.Is(err, ErrInvalidID) works.
type ValidationError struct {
	// Field is the name of the rejected argument ("org", "user",
	// "codename", ...).
	Field string
	// Value is the rejected value, shortened to at most 64 bytes.
	Value string
	// Err is the sentinel that says what is wrong.
	Err error
}

// Error implements error.
func (e *ValidationError) Error() string {
	return fmt.Sprintf("%v: %s %q", e.Err, e.Field, e.Value)
}

// Unwrap returns the sentinel.
func (e *ValidationError) Unwrap() error { return e.Err }

func invalid(field, value string, err error) error {
	return &ValidationError{Field: field, Value: truncate(value, 64), Err: err}
}

// constraintErrors maps the names of the schema's constraints (and of the
// guard triggers' pseudo-constraints) to sentinels.
var constraintErrors = map[string]error{
	"ext_id_valid":                         ErrInvalidID,
	"permissions_codename_format":          ErrInvalidCodename,
	"data_access_resource_type_format":     ErrInvalidResourceType,
	"memberships_status_valid":             ErrInvalidStatus,
	"memberships_window_valid":             ErrInvalidWindow,
	"roles_name_valid":                     ErrInvalidRoleName,
	"data_access_one_subject":              ErrInvalidSubject,
	"role_org_mismatch":                    ErrRoleOrgMismatch,
	"roles_org_name_key":                   ErrRoleExists,
	"roles_system_name_key":                ErrRoleExists,
	"role_permissions_role_id_fkey":        ErrUnknownRole,
	"membership_roles_role_id_fkey":        ErrUnknownRole,
	"data_access_role_id_fkey":             ErrUnknownRole,
	"role_permissions_codename_fkey":       ErrUnknownPermission,
	"membership_roles_org_id_user_id_fkey": ErrNotMember,
}

// dbError wraps an error from the database for op. A violation of a known
// constraint also matches its sentinel; anything else is wrapped as is.
func dbError(op string, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		if sentinel, ok := constraintErrors[pgErr.ConstraintName]; ok {
			return fmt.Errorf("%w (%s: %w)", sentinel, op, err)
		}
	}
	return fmt.Errorf("membership: %s: %w", op, err)
}

// truncate shortens s to n bytes (whole UTF-8 characters) and marks the cut,
// for echoing untrusted input in an error.
func truncate(s string, n int) string {
	if len(s) > n {
		return strings.ToValidUTF8(s[:n], "") + "..."
	}
	return s
}
