package membership

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// The read API: the model as admin screens and scripts ask for it (members
// of an org, a user's organizations, an org's roles, who holds a codename,
// who can access a record, the data grants). Each read is one SQL statement
// (one snapshot), org-scoped, and reads only the orgperm tables themselves
// (FROM ONLY: rows of a child table that INHERITs one are not part of the
// model). These reads are NOT cached: every call asks the database. The
// answers are evaluated at an instant like the checks are (ListOptions.At;
// the zero time means the database's statement_timestamp()), and each list
// is exactly the set that Store.Load of every member at that instant would
// give (the property test proves it).

// Errors of the read API.
var (
	// ErrInvalidCursor reports a pagination cursor that is not one this
	// package made for the same kind of list.
	ErrInvalidCursor = errors.New("membership: invalid cursor")

	// ErrInvalidLimit reports a page size below 0 or above MaxLimit.
	ErrInvalidLimit = errors.New("membership: invalid limit")
)

// Page sizes of the read API.
const (
	// DefaultLimit is the page size of a list when ListOptions.Limit is 0.
	DefaultLimit = 100
	// MaxLimit is the largest page size a list accepts.
	MaxLimit = 1000
)

// ListOptions are the options every read of the model takes.
type ListOptions struct {
	// At is the instant the answer is evaluated at, as for Store.Load.
	// Defaults to the database's time (statement_timestamp()), not the
	// host's clock.
	At time.Time
	// Limit is the page size, 1 to MaxLimit. Defaults to DefaultLimit.
	Limit int
	// Cursor continues a list after the page that returned it as
	// Page.Next. Defaults to "" (the first page). A cursor is opaque; one
	// that this package did not make for the same list is an error
	// (ErrInvalidCursor).
	Cursor string
}

// Page is one page of a list.
type Page[T any] struct {
	// Items are the page's entries, in the list's order.
	Items []T
	// Next is the cursor of the next page (ListOptions.Cursor), "" on the
	// last page.
	Next string
	// At is the instant the page was evaluated at: ListOptions.At, or the
	// database's time when that was zero. Pass it as ListOptions.At to read
	// the following pages at the same instant. It is ListOptions.At for an
	// empty page, and zero for the lists that have no time (roles,
	// grants).
	At time.Time
}

// Member is one membership of an organization, as ListMembers returns it.
type Member struct {
	// User is the member's user ID.
	User string
	// Status is the membership's status.
	Status Status
	// ValidFrom and ValidUntil are the membership's window [from, until);
	// the zero time is an open bound ('-infinity' and 'infinity' included).
	ValidFrom, ValidUntil time.Time
	// Active reports that the membership is active and inside its window
	// at Page.At, as PermissionSet.Active.
	Active bool
	// Roles are the roles held at Page.At, sorted by ID, as
	// PermissionSet.Roles: none when the membership is not Active.
	Roles []Role
}

// MemberQuery selects the members ListMembers returns.
type MemberQuery struct {
	ListOptions
	// Status keeps only the memberships with this status. Defaults to
	// StatusNone (every status).
	Status Status
	// RoleID keeps only the members who hold this role at the instant
	// (an Active membership and an assignment that has not ended).
	// Defaults to 0 (no filter).
	RoleID int64
}

// UserOrg is one membership of a user, as UserOrgs returns it: an entry of
// an org switcher.
type UserOrg struct {
	// Org is the organization's ID.
	Org string
	// Status is the membership's status.
	Status Status
	// ValidFrom and ValidUntil are the membership's window; the zero time
	// is an open bound.
	ValidFrom, ValidUntil time.Time
	// Active reports that the membership is active and inside its window
	// at Page.At, as PermissionSet.Active.
	Active bool
}

// RoleInfo is a role with its permissions, as ListRoles and RoleByName
// return it.
type RoleInfo struct {
	// ID is the role's orgperm.roles.id.
	ID int64
	// Org is the role's organization, "" for a system role.
	Org string
	// Name is the role's name, unique in its organization (or among system
	// roles).
	Name string
	// Description is the role's description.
	Description string
	// Codenames are the role's permissions, sorted.
	Codenames []string
}

// System reports a system role (offered in every organization).
func (r RoleInfo) System() bool { return r.Org == "" }

// Holder is a user who holds a permission or can access a record, as
// WhoHas and WhoCanAccess return it, with what allowed it: the same role
// (and grant) as PermissionSet.Explain (and ExplainAccess) name.
type Holder struct {
	// User is the user's ID.
	User string
	// RoleID and RoleName name the role that allows it: for a permission,
	// the held role with the lowest ID that grants it; for data access,
	// the role the grant was made to (0 and "" for a grant to the user).
	RoleID   int64
	RoleName string
	// GrantID is the orgperm.data_access.id of the grant that allows a
	// data access (a grant of that record before a grant of the whole
	// type, then the lowest ID); 0 for WhoHas.
	GrantID int64
}

// Grant is a data-access grant, as ListGrants returns it.
type Grant struct {
	// ID is the grant's orgperm.data_access.id.
	ID int64
	// Org is the grant's organization.
	Org string
	// Subject is who the grant is made to: a user or a role.
	Subject Subject
	// ResourceType is the type of resource the grant covers.
	ResourceType string
	// ResourceID is the one record the grant covers, "" for every record
	// of the type.
	ResourceID string
}

// GrantQuery selects the grants ListGrants returns; its filters combine.
type GrantQuery struct {
	ListOptions
	// User keeps only the grants made to this user (not those to the
	// user's roles). Defaults to "" (no filter).
	User string
	// RoleID keeps only the grants made to this role. Defaults to 0 (no
	// filter).
	RoleID int64
	// ResourceType keeps only the grants on this type of resource.
	// Defaults to "" (no filter).
	ResourceType string
	// ResourceID, with ResourceType, keeps only the grants that cover
	// this record: grants of the record itself and of every record of the
	// type. Defaults to "" (no filter).
	ResourceID string
}

// cursor kinds: a cursor of one list is refused by another.
const (
	curMembers = "members"
	curOrgs    = "orgs"
	curRoles   = "roles"
	curWho     = "who"
	curAccess  = "access"
	curGrants  = "grants"
	curAudit   = "audit"
)

type cursorJSON struct {
	K string   `json:"k"`
	V []string `json:"v"`
}

// encodeCursor makes the opaque cursor that continues a list of kind after
// the key parts.
func encodeCursor(kind string, key ...string) string {
	b, _ := json.Marshal(cursorJSON{K: kind, V: key})
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeCursor returns the key parts of a cursor of kind with n parts; nil
// for the empty cursor.
func decodeCursor(kind, cur string, n int) ([]string, error) {
	if cur == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(cur)
	var c cursorJSON
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err != nil || c.K != kind || len(c.V) != n {
		return nil, invalid("cursor", cur, ErrInvalidCursor)
	}
	return c.V, nil
}

// cursorID decodes a cursor whose key is one positive integer.
func cursorID(kind, cur string) (*int64, error) {
	v, err := decodeCursor(kind, cur, 1)
	if v == nil || err != nil {
		return nil, err
	}
	id, perr := strconv.ParseInt(v[0], 10, 64)
	if perr != nil || id <= 0 {
		return nil, invalid("cursor", cur, ErrInvalidCursor)
	}
	return &id, nil
}

// cursorText decodes a cursor whose key is one ID.
func cursorText(kind, cur string) (*string, error) {
	v, err := decodeCursor(kind, cur, 1)
	if v == nil || err != nil {
		return nil, err
	}
	if !ValidID(v[0]) {
		return nil, invalid("cursor", cur, ErrInvalidCursor)
	}
	return &v[0], nil
}

// limit returns the page size of o, and the number of rows to fetch (one
// more, to know whether there is a next page).
func (o ListOptions) limit() (int, error) {
	switch {
	case o.Limit == 0:
		return DefaultLimit, nil
	case o.Limit < 0 || o.Limit > MaxLimit:
		return 0, invalid("limit", strconv.Itoa(o.Limit), ErrInvalidLimit)
	}
	return o.Limit, nil
}

// atArg is the instant argument of a read: nil (the database's time) for
// the zero time.
func (o ListOptions) atArg() *time.Time {
	if o.At.IsZero() {
		return nil
	}
	return &o.At
}

// bound converts a window bound or an assignment end to the package's form:
// UTC, and the zero time for NULL and for the infinities, which are open
// bounds ('-infinity' as a start, 'infinity' as an end).
func bound(t pgtype.Timestamptz) time.Time {
	if !t.Valid || t.InfinityModifier != pgtype.Finite {
		return time.Time{}
	}
	return t.Time.UTC()
}

// withAt returns sql with every @at replaced by the instant of the read:
// parameter p, or the statement's time when it is NULL. An expression, not
// a CTE joined to every row: a join would cost a loop per member scanned.
func withAt(sql, p string) string {
	return strings.ReplaceAll(sql, "@at", "coalesce("+p+"::timestamptz, statement_timestamp())")
}

// activeAt is the SQL condition that membership m is active at @at: the
// same rule as PermissionSet.Active, with PostgreSQL's ordering of the
// infinities.
const activeAt = `(m.status = 'active' AND (m.valid_from IS NULL OR m.valid_from <= @at) AND (m.valid_until IS NULL OR m.valid_until > @at))`

// heldAt is the SQL condition that assignment mr of role r is held by
// membership m at @at (to be combined with activeAt).
const heldAt = `mr.org_id = m.org_id AND mr.user_id = m.user_id AND (r.org_id IS NULL OR r.org_id = m.org_id) AND (mr.valid_until IS NULL OR mr.valid_until > @at)`

// listMembersSQL: $1 org, $2 at, $3 status filter, $4 role filter, $5 the
// cursor's user, $6 rows.
var listMembersSQL = withAt(`
SELECT m.user_id::text, m.status::text, m.valid_from, m.valid_until, a.active, @at,
       h.ids, h.names, h.systems, h.untils
FROM ONLY orgperm.memberships m
CROSS JOIN LATERAL (SELECT `+activeAt+` AS active) a
LEFT JOIN LATERAL (
    SELECT array_agg(r.id ORDER BY r.id) AS ids, array_agg(r.name::text ORDER BY r.id) AS names,
           array_agg(r.org_id IS NULL ORDER BY r.id) AS systems, array_agg(mr.valid_until ORDER BY r.id) AS untils
    FROM ONLY orgperm.membership_roles mr JOIN ONLY orgperm.roles r ON r.id = mr.role_id
    WHERE a.active AND `+heldAt+`
) h ON true
WHERE m.org_id = $1 AND m.user_id > coalesce($5::text, '')
  AND ($3::text IS NULL OR m.status = $3::text)
  AND ($4::bigint IS NULL OR (a.active AND EXISTS (
      SELECT FROM ONLY orgperm.membership_roles mr JOIN ONLY orgperm.roles r ON r.id = mr.role_id
      WHERE mr.role_id = $4::bigint AND `+heldAt+`)))
ORDER BY m.user_id
LIMIT $6`, "$2")

// ListMembers returns the members of org (every membership, whatever its
// status), sorted by user ID, one page at a time: each with its status and
// window, whether it is active at the instant and the roles it holds then.
// q filters by status and by held role. One statement; not cached.
func (s *Store) ListMembers(ctx context.Context, org string, q MemberQuery) (Page[Member], error) {
	var p Page[Member]
	if err := checkID("org", org); err != nil {
		return p, err
	}
	if q.Status != StatusNone && !q.Status.Valid() {
		return p, invalid("status", string(q.Status), ErrInvalidStatus)
	}
	n, err := q.limit()
	if err != nil {
		return p, err
	}
	after, err := cursorText(curMembers, q.Cursor)
	if err != nil {
		return p, err
	}
	rows, err := s.db.Query(ctx, listMembersSQL, org, q.atArg(),
		nullString(string(q.Status)), nullInt(q.RoleID), after, n+1)
	if err != nil {
		return p, dbError("list members", err)
	}
	for rows.Next() {
		var (
			m           Member
			status      string
			from, until pgtype.Timestamptz
			ids         []int64
			names       []string
			systems     []bool
			untils      []pgtype.Timestamptz
		)
		if err := rows.Scan(&m.User, &status, &from, &until, &m.Active, &p.At,
			&ids, &names, &systems, &untils); err != nil {
			rows.Close()
			return Page[Member]{}, dbError("list members", err)
		}
		m.Status, m.ValidFrom, m.ValidUntil = Status(status), bound(from), bound(until)
		for i, id := range ids {
			m.Roles = append(m.Roles, Role{ID: id, Name: names[i], System: systems[i], ValidUntil: bound(untils[i])})
		}
		p.Items = append(p.Items, m)
	}
	if err := rows.Err(); err != nil {
		return Page[Member]{}, dbError("list members", err)
	}
	p.At = p.At.UTC()
	if len(p.Items) > n {
		p.Items = p.Items[:n]
		p.Next = encodeCursor(curMembers, p.Items[n-1].User)
	}
	if p.At.IsZero() {
		p.At = q.At
	}
	return p, nil
}

// userOrgsSQL: $1 user, $2 at, $3 the cursor's org, $4 rows. The first
// row carries the user-wide answer over every membership of the user (all
// pages); a user with no membership in the page gets one row with a NULL
// org.
var userOrgsSQL = withAt(`
WITH c AS (SELECT @at AS at),
mine AS (
    SELECT m.org_id::text AS org_id, m.status::text AS status, m.valid_from, m.valid_until, `+activeAt+` AS active
    FROM ONLY orgperm.memberships m
    WHERE m.user_id = $1
), wide AS (
    SELECT coalesce(bool_or(mine.active), false) AS active,
           min(least(CASE WHEN mine.valid_from > c.at AND isfinite(mine.valid_from) THEN mine.valid_from END,
                     CASE WHEN mine.valid_until > c.at AND isfinite(mine.valid_until) THEN mine.valid_until END))
               FILTER (WHERE mine.status = 'active') AS next
    FROM c, mine
    GROUP BY c.at
), page AS (
    SELECT * FROM mine WHERE mine.org_id > coalesce($3::text, '') ORDER BY mine.org_id LIMIT $4
)
SELECT c.at, coalesce(wide.active, false), wide.next, page.org_id, page.status, page.valid_from, page.valid_until, page.active
FROM c LEFT JOIN wide ON true LEFT JOIN page ON true
ORDER BY page.org_id`, "$2")

// UserOrgs returns the organizations in which user holds a membership,
// sorted by org ID, one page at a time, each with whether the membership is
// active at the instant (an org switcher), and the user-wide answer at the
// same instant, over all the user's memberships: the same as
// Store.LoadUserActive (Active is true exactly when some membership is
// Active). One statement; not cached.
func (s *Store) UserOrgs(ctx context.Context, user string, o ListOptions) (Page[UserOrg], UserActive, error) {
	var (
		p  Page[UserOrg]
		ua UserActive
	)
	if err := checkID("user", user); err != nil {
		return p, ua, err
	}
	n, err := o.limit()
	if err != nil {
		return p, ua, err
	}
	after, err := cursorText(curOrgs, o.Cursor)
	if err != nil {
		return p, ua, err
	}
	rows, err := s.db.Query(ctx, userOrgsSQL, user, o.atArg(), after, n+1)
	if err != nil {
		return p, ua, dbError("user orgs", err)
	}
	for rows.Next() {
		var (
			next        pgtype.Timestamptz
			org, status *string
			from, until pgtype.Timestamptz
			active      *bool
		)
		if err := rows.Scan(&p.At, &ua.Active, &next, &org, &status, &from, &until, &active); err != nil {
			rows.Close()
			return Page[UserOrg]{}, UserActive{}, dbError("user orgs", err)
		}
		ua.ValidUntil = bound(next)
		if org != nil {
			p.Items = append(p.Items, UserOrg{Org: *org, Status: Status(*status),
				ValidFrom: bound(from), ValidUntil: bound(until), Active: *active})
		}
	}
	if err := rows.Err(); err != nil {
		return Page[UserOrg]{}, UserActive{}, dbError("user orgs", err)
	}
	p.At = p.At.UTC()
	ua.At = p.At
	if len(p.Items) > n {
		p.Items = p.Items[:n]
		p.Next = encodeCursor(curOrgs, p.Items[n-1].Org)
	}
	return p, ua, nil
}

// rolesSQL: $1 org (NULL: system roles only), $2 name (NULL: every role),
// $3 the cursor's role ID, $4 rows.
const rolesSQL = `
SELECT r.id, r.org_id::text, r.name::text, r.description,
       ARRAY(SELECT rp.codename::text FROM ONLY orgperm.role_permissions rp WHERE rp.role_id = r.id)
FROM ONLY orgperm.roles r
WHERE (r.org_id IS NULL OR r.org_id = $1::text)
  AND ($2::text IS NULL OR r.name = $2::text)
  AND r.id > coalesce($3::bigint, 0)
ORDER BY r.id
LIMIT $4`

func (s *Store) queryRoles(ctx context.Context, op string, org, name *string, after *int64, rows int) ([]RoleInfo, error) {
	rs, err := s.db.Query(ctx, rolesSQL, org, name, after, rows)
	if err != nil {
		return nil, dbError(op, err)
	}
	var out []RoleInfo
	for rs.Next() {
		var (
			r   RoleInfo
			org *string
		)
		if err := rs.Scan(&r.ID, &org, &r.Name, &r.Description, &r.Codenames); err != nil {
			rs.Close()
			return nil, dbError(op, err)
		}
		if org != nil {
			r.Org = *org
		}
		slices.Sort(r.Codenames)
		out = append(out, r)
	}
	if err := rs.Err(); err != nil {
		return nil, dbError(op, err)
	}
	return out, nil
}

// ListRoles returns the roles offered in org, its own and the system roles,
// with their permissions, sorted by ID, one page at a time. An org of ""
// lists the system roles only. Roles have no time: o.At is not used. One
// statement; not cached.
func (s *Store) ListRoles(ctx context.Context, org string, o ListOptions) (Page[RoleInfo], error) {
	var p Page[RoleInfo]
	if org != "" {
		if err := checkID("org", org); err != nil {
			return p, err
		}
	}
	n, err := o.limit()
	if err != nil {
		return p, err
	}
	after, err := cursorID(curRoles, o.Cursor)
	if err != nil {
		return p, err
	}
	p.Items, err = s.queryRoles(ctx, "list roles", nullString(org), nil, after, n+1)
	if err != nil {
		return Page[RoleInfo]{}, err
	}
	if len(p.Items) > n {
		p.Items = p.Items[:n]
		p.Next = encodeCursor(curRoles, strconv.FormatInt(p.Items[n-1].ID, 10))
	}
	return p, nil
}

// RoleByName returns the role named name offered in org: the org's own
// role of that name, else the system role of that name (an org's role
// shadows a system role of the same name); ErrUnknownRole when there is
// neither. An org of "" looks among system roles only. One statement; not
// cached.
func (s *Store) RoleByName(ctx context.Context, org, name string) (RoleInfo, error) {
	if org != "" {
		if err := checkID("org", org); err != nil {
			return RoleInfo{}, err
		}
	}
	if err := checkRoleName(name); err != nil {
		return RoleInfo{}, err
	}
	// At most two rows: the org's role and the system role.
	rs, err := s.queryRoles(ctx, "role by name", nullString(org), &name, nil, 2)
	if err != nil {
		return RoleInfo{}, err
	}
	for _, r := range rs {
		if r.Org != "" {
			return r, nil
		}
	}
	if len(rs) == 0 {
		return RoleInfo{}, fmt.Errorf("%w: %q in org %q", ErrUnknownRole, name, org)
	}
	return rs[0], nil
}

// whoHasSQL: $1 org, $2 codename, $3 at, $4 the cursor's user, $5 rows.
// The page is chosen first (members that hold the codename at the instant,
// by user ID), then the granting role of each: the held role with the
// lowest ID that grants it, as Explain names.
var whoHasSQL = withAt(`
WITH page AS (
    SELECT m.org_id, m.user_id
    FROM ONLY orgperm.memberships m
    WHERE m.org_id = $1 AND m.user_id > coalesce($4::text, '') AND `+activeAt+`
      AND EXISTS (
          SELECT FROM ONLY orgperm.membership_roles mr
          JOIN ONLY orgperm.roles r ON r.id = mr.role_id
          JOIN ONLY orgperm.role_permissions rp ON rp.role_id = r.id
          WHERE rp.codename = $2 AND `+heldAt+`)
    ORDER BY m.user_id
    LIMIT $5
)
SELECT m.user_id::text, g.id, g.name::text, @at
FROM page m
CROSS JOIN LATERAL (
    SELECT r.id, r.name
    FROM ONLY orgperm.membership_roles mr
    JOIN ONLY orgperm.roles r ON r.id = mr.role_id
    JOIN ONLY orgperm.role_permissions rp ON rp.role_id = r.id
    WHERE rp.codename = $2 AND `+heldAt+`
    ORDER BY r.id
    LIMIT 1
) g
ORDER BY m.user_id`, "$3")

// WhoHas returns who in org holds the permission codename at the instant,
// sorted by user ID, one page at a time: the active members (inside their
// window) who hold, through a role whose assignment has not ended, a role
// that grants it; each with the role Explain names. It is exactly the set
// of members whose PermissionSet.Has(codename) is true. One statement; not
// cached.
func (s *Store) WhoHas(ctx context.Context, org, codename string, o ListOptions) (Page[Holder], error) {
	var p Page[Holder]
	if err := checkID("org", org); err != nil {
		return p, err
	}
	if err := checkCodenames([]string{codename}); err != nil {
		return p, err
	}
	n, err := o.limit()
	if err != nil {
		return p, err
	}
	after, err := cursorText(curWho, o.Cursor)
	if err != nil {
		return p, err
	}
	return s.holders(ctx, "who has", curWho, n, o.At, whoHasSQL, org, codename, o.atArg(), after, n+1)
}

// whoCanAccessSQL: $1 org, $2 resource type, $3 resource ID, $4 at, $5 the
// cursor's user, $6 rows. A grant covers the record when it is of the
// record or of the whole type, in org, to the user or to a role the user
// holds at the instant; the one named is the one ExplainAccess names (a
// grant of the record before one of the type, then the lowest ID).
var whoCanAccessSQL = withAt(`
WITH covering AS (
    SELECT d.id, d.user_id, d.role_id, d.resource_id IS NULL AS whole
    FROM ONLY orgperm.data_access d
    WHERE d.org_id = $1 AND d.resource_type = $2 AND (d.resource_id = $3 OR d.resource_id IS NULL)
), page AS (
    SELECT m.org_id, m.user_id
    FROM ONLY orgperm.memberships m
    WHERE m.org_id = $1 AND m.user_id > coalesce($5::text, '') AND `+activeAt+`
      AND (EXISTS (SELECT FROM covering d WHERE d.user_id = m.user_id)
        OR EXISTS (SELECT FROM covering d
                   JOIN ONLY orgperm.membership_roles mr ON mr.role_id = d.role_id
                   JOIN ONLY orgperm.roles r ON r.id = mr.role_id
                   WHERE `+heldAt+`))
    ORDER BY m.user_id
    LIMIT $6
)
SELECT m.user_id::text, g.role_id, g.name, g.id, @at
FROM page m
CROSS JOIN LATERAL (
    SELECT d.id, d.role_id, r.name::text AS name, d.whole
    FROM covering d
    LEFT JOIN ONLY orgperm.membership_roles mr ON mr.role_id = d.role_id AND mr.org_id = m.org_id AND mr.user_id = m.user_id
    LEFT JOIN ONLY orgperm.roles r ON r.id = mr.role_id
    WHERE d.user_id = m.user_id
       OR (mr.role_id IS NOT NULL AND `+heldAt+`)
    ORDER BY d.whole, d.id
    LIMIT 1
) g
ORDER BY m.user_id`, "$4")

// WhoCanAccess returns who in org can access the record resourceID of
// resourceType at the instant, sorted by user ID, one page at a time: the
// active members covered by a grant of the record or of the whole type,
// made to them or to a role they hold; each with the grant (and role)
// ExplainAccess names. It is exactly the set of members whose
// PermissionSet.CanAccess(resourceType, resourceID) is true. One statement;
// not cached.
func (s *Store) WhoCanAccess(ctx context.Context, org, resourceType, resourceID string, o ListOptions) (Page[Holder], error) {
	var p Page[Holder]
	if err := checkID("org", org); err != nil {
		return p, err
	}
	if !ValidResourceType(resourceType) {
		return p, invalid("resource_type", resourceType, ErrInvalidResourceType)
	}
	if err := checkID("resource_id", resourceID); err != nil {
		return p, err
	}
	n, err := o.limit()
	if err != nil {
		return p, err
	}
	after, err := cursorText(curAccess, o.Cursor)
	if err != nil {
		return p, err
	}
	return s.holders(ctx, "who can access", curAccess, n, o.At, whoCanAccessSQL,
		org, resourceType, resourceID, o.atArg(), after, n+1)
}

// holders runs whoHasSQL or whoCanAccessSQL and makes the page.
func (s *Store) holders(ctx context.Context, op, kind string, n int, at time.Time, sql string, args ...any) (Page[Holder], error) {
	var p Page[Holder]
	rows, err := s.db.Query(ctx, sql, args...)
	if err != nil {
		return p, dbError(op, err)
	}
	for rows.Next() {
		var (
			h     Holder
			role  *int64
			name  *string
			grant *int64
			dest  = []any{&h.User, &role, &name, &p.At}
		)
		if kind == curAccess {
			dest = []any{&h.User, &role, &name, &grant, &p.At}
		}
		if err := rows.Scan(dest...); err != nil {
			rows.Close()
			return Page[Holder]{}, dbError(op, err)
		}
		if role != nil {
			h.RoleID = *role
		}
		if name != nil {
			h.RoleName = *name
		}
		if grant != nil {
			h.GrantID = *grant
		}
		p.Items = append(p.Items, h)
	}
	if err := rows.Err(); err != nil {
		return Page[Holder]{}, dbError(op, err)
	}
	p.At = p.At.UTC()
	if p.At.IsZero() {
		p.At = at
	}
	if len(p.Items) > n {
		p.Items = p.Items[:n]
		p.Next = encodeCursor(kind, p.Items[n-1].User)
	}
	return p, nil
}

// grantsSQL: $1 org, $2 user, $3 role, $4 resource type, $5 resource ID,
// $6 the cursor's grant ID, $7 rows.
const grantsSQL = `
SELECT d.id, d.user_id::text, d.role_id, d.resource_type::text, d.resource_id::text
FROM ONLY orgperm.data_access d
WHERE d.org_id = $1 AND d.id > coalesce($6::bigint, 0)
  AND ($2::text IS NULL OR d.user_id = $2::text)
  AND ($3::bigint IS NULL OR d.role_id = $3::bigint)
  AND ($4::text IS NULL OR d.resource_type = $4::text)
  AND ($5::text IS NULL OR d.resource_id = $5::text OR d.resource_id IS NULL)
ORDER BY d.id
LIMIT $7`

// ListGrants returns the data-access grants of org, sorted by ID, one page
// at a time, filtered by subject (q.User, q.RoleID) and by resource
// (q.ResourceType, q.ResourceID). Grants have no time: q.At is not used.
// One statement; not cached.
func (s *Store) ListGrants(ctx context.Context, org string, q GrantQuery) (Page[Grant], error) {
	var p Page[Grant]
	if err := checkID("org", org); err != nil {
		return p, err
	}
	if q.User != "" {
		if err := checkID("user", q.User); err != nil {
			return p, err
		}
	}
	if q.ResourceType != "" && !ValidResourceType(q.ResourceType) {
		return p, invalid("resource_type", q.ResourceType, ErrInvalidResourceType)
	}
	if q.ResourceID != "" {
		if q.ResourceType == "" {
			return p, invalid("resource_type", "", ErrInvalidResourceType)
		}
		if err := checkID("resource_id", q.ResourceID); err != nil {
			return p, err
		}
	}
	n, err := q.limit()
	if err != nil {
		return p, err
	}
	after, err := cursorID(curGrants, q.Cursor)
	if err != nil {
		return p, err
	}
	rows, err := s.db.Query(ctx, grantsSQL, org, nullString(q.User), nullInt(q.RoleID),
		nullString(q.ResourceType), nullString(q.ResourceID), after, n+1)
	if err != nil {
		return p, dbError("list grants", err)
	}
	for rows.Next() {
		var (
			g         Grant
			user, res *string
			role      *int64
		)
		if err := rows.Scan(&g.ID, &user, &role, &g.ResourceType, &res); err != nil {
			rows.Close()
			return Page[Grant]{}, dbError("list grants", err)
		}
		g.Org = org
		if user != nil {
			g.Subject.User = *user
		}
		if role != nil {
			g.Subject.RoleID = *role
		}
		if res != nil {
			g.ResourceID = *res
		}
		p.Items = append(p.Items, g)
	}
	if err := rows.Err(); err != nil {
		return Page[Grant]{}, dbError("list grants", err)
	}
	if len(p.Items) > n {
		p.Items = p.Items[:n]
		p.Next = encodeCursor(curGrants, strconv.FormatInt(p.Items[n-1].ID, 10))
	}
	return p, nil
}
