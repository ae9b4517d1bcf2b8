package membership

import (
	"context"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DB is what the Store needs of a database handle. *pgxpool.Pool satisfies
// it, and so do *pgx.Conn and pgx.Tx (whose Begin opens a savepoint).
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
	Begin(ctx context.Context) (pgx.Tx, error)
}

var (
	_ DB = (*pgxpool.Pool)(nil)
	_ DB = (*pgx.Conn)(nil)
	_ DB = (pgx.Tx)(nil)
)

// Scope names the permission sets a write may have changed, for a cache to
// evict: everything (All), every set of one organization (Org), or the set
// of one member (Org and User). UserActive values are keyed by user; a
// member scope reaches that user, and an Org or All scope reaches every
// user.
type Scope struct {
	// All reports a change that can reach every set: a system role, the
	// permission catalog.
	All bool
	// Org is the organization of an org-wide or a member scope.
	Org string
	// User is the user of a member scope; empty for an org-wide scope.
	User string
}

// Key names the permission set of User in Org.
type Key struct {
	Org  string
	User string
}

// UserActive answers the first seed's user_has_active_membership(user).
type UserActive struct {
	// Active reports that the user holds at least one membership, in any
	// organization, that is active and inside its window.
	Active bool
	// ValidUntil is the next instant after the evaluation instant at which
	// a status-active membership of the user starts or ends its window: the
	// answer cannot change before it with no write. Zero when there is
	// none.
	ValidUntil time.Time
}

// Store reads permission sets from the orgperm schema, one database round
// trip per read, and writes it (see admin.go), one transaction per write.
// It holds no state of its own besides the handle and the hook, and is safe
// for concurrent use.
type Store struct {
	db DB

	// OnWrite, when not nil, is called after each successful write commits,
	// with the narrowest scope the write changed, so that a cache in this
	// process can evict at once and the writer reads its own writes. It
	// runs on the writer's goroutine and must not block. A write that
	// changed nothing any set holds (a new role, a catalog upsert, revoking
	// a grant that is not there) does not call it. Set it before the Store
	// is used. Defaults to nil (no hook).
	OnWrite func(Scope)
}

// NewStore returns a Store over db, usually a *pgxpool.Pool.
func NewStore(db DB) *Store {
	if db == nil {
		panic("membership: NewStore with a nil DB")
	}
	return &Store{db: db}
}

func (s *Store) notify(sc Scope) {
	if s.OnWrite != nil {
		s.OnWrite(sc)
	}
}

// loadSQL reads everything a permission set is built from, in one
// statement (one snapshot): the membership; the roles assigned to the
// member, expired or not, restricted to system roles and roles of the org;
// their permissions; and the data grants of the org to the user or to one
// of those roles. Roles and grants are read only for a status-active
// membership. Times are compared in Go, at the caller's instant, and the
// lists are sorted in Go (faster than in the database: see
// BenchmarkLoadHeavy), so nothing depends on the database's collation.
const loadSQL = `
WITH m AS (
    SELECT status, valid_from, valid_until
    FROM orgperm.memberships
    WHERE org_id = $1 AND user_id = $2
), held AS (
    SELECT r.id, r.name::text AS name, r.org_id IS NULL AS system, mr.valid_until
    FROM orgperm.membership_roles mr
    JOIN orgperm.roles r ON r.id = mr.role_id
    WHERE mr.org_id = $1 AND mr.user_id = $2
      AND (r.org_id IS NULL OR r.org_id = $1)
      AND EXISTS (SELECT FROM m WHERE m.status = 'active')
), grants AS (
    SELECT d.id, NULL::bigint AS role_id, d.resource_type, d.resource_id
    FROM orgperm.data_access d
    WHERE d.org_id = $1 AND d.user_id = $2
      AND EXISTS (SELECT FROM m WHERE m.status = 'active')
    UNION ALL
    SELECT d.id, d.role_id, d.resource_type, d.resource_id
    FROM orgperm.data_access d
    JOIN held h ON h.id = d.role_id
    WHERE d.org_id = $1
)
SELECT
    (SELECT m.status::text FROM m),
    (SELECT m.valid_from FROM m),
    (SELECT m.valid_until FROM m),
    (SELECT array_agg(h.id ORDER BY h.id) FROM held h),
    (SELECT array_agg(h.name ORDER BY h.id) FROM held h),
    (SELECT array_agg(h.system ORDER BY h.id) FROM held h),
    (SELECT array_agg(h.valid_until ORDER BY h.id) FROM held h),
    p.role_ids, p.codenames,
    g.ids, g.role_ids, g.types, g.resource_ids
FROM (
    SELECT array_agg(x.role_id) AS role_ids, array_agg(x.codename) AS codenames
    FROM (
        SELECT rp.role_id, rp.codename::text AS codename
        FROM orgperm.role_permissions rp
        JOIN held h ON h.id = rp.role_id
    ) x
) p, (
    SELECT array_agg(x.id) AS ids, array_agg(x.role_id) AS role_ids,
           array_agg(x.resource_type) AS types, array_agg(x.resource_id) AS resource_ids
    FROM (
        SELECT g.id, g.role_id, g.resource_type::text AS resource_type, g.resource_id::text AS resource_id
        FROM grants g
    ) x
) g`

// rawSet is one row of loadSQL.
type rawSet struct {
	status      *string
	from, until *time.Time

	roleIDs    []int64
	roleNames  []string
	roleSystem []bool
	roleUntil  []*time.Time

	permRole []int64
	permCode []string

	grantID   []int64
	grantRole []*int64
	grantType []string
	grantRes  []*string
}

func (r *rawSet) scan(row pgx.Row) error {
	return row.Scan(&r.status, &r.from, &r.until,
		&r.roleIDs, &r.roleNames, &r.roleSystem, &r.roleUntil,
		&r.permRole, &r.permCode,
		&r.grantID, &r.grantRole, &r.grantType, &r.grantRes)
}

// Load returns the permission set of user in org, evaluated at the instant
// at (a zero at means time.Now()). It makes exactly one database round trip
// (one statement, one snapshot), whatever the size of the set, and none when
// org or user is not a valid ID (ErrInvalidID).
//
// A user without a membership gets an inactive set (Status StatusNone), not
// an error. A database error is returned wrapped, with a nil set: callers
// must deny (fail closed).
func (s *Store) Load(ctx context.Context, org, user string, at time.Time) (*PermissionSet, error) {
	if err := checkMember(org, user); err != nil {
		return nil, err
	}
	if at.IsZero() {
		at = time.Now()
	}
	var raw rawSet
	if err := raw.scan(s.db.QueryRow(ctx, loadSQL, org, user)); err != nil {
		return nil, dbError("load", err)
	}
	return build(org, user, at, &raw), nil
}

// LoadMany returns the permission sets of keys, in the order of keys,
// evaluated at the instant at (zero means time.Now()), in one database round
// trip (one pgx batch). Every key is validated before anything is sent. An
// empty keys makes no round trip.
func (s *Store) LoadMany(ctx context.Context, keys []Key, at time.Time) ([]*PermissionSet, error) {
	for _, k := range keys {
		if err := checkMember(k.Org, k.User); err != nil {
			return nil, err
		}
	}
	if len(keys) == 0 {
		return nil, nil
	}
	if at.IsZero() {
		at = time.Now()
	}
	b := &pgx.Batch{}
	for _, k := range keys {
		b.Queue(loadSQL, k.Org, k.User)
	}
	br := s.db.SendBatch(ctx, b)
	sets := make([]*PermissionSet, len(keys))
	for i, k := range keys {
		var raw rawSet
		if err := raw.scan(br.QueryRow()); err != nil {
			_ = br.Close()
			return nil, dbError("load many", err)
		}
		sets[i] = build(k.Org, k.User, at, &raw)
	}
	if err := br.Close(); err != nil {
		return nil, dbError("load many", err)
	}
	return sets, nil
}

// userActiveSQL answers user_has_active_membership at $2 and finds the next
// window boundary of the user's status-active memberships. pgx sends $2
// truncated to microseconds; since stored times are whole microseconds, the
// comparisons give the same answers as at full precision.
const userActiveSQL = `
SELECT
    coalesce(bool_or((valid_from IS NULL OR valid_from <= $2) AND (valid_until IS NULL OR valid_until > $2)), false),
    min(least(CASE WHEN valid_from > $2 THEN valid_from END, CASE WHEN valid_until > $2 THEN valid_until END))
FROM orgperm.memberships
WHERE user_id = $1 AND status = 'active'`

// LoadUserActive answers the first seed's user_has_active_membership(user)
// at the instant at (zero means time.Now()), in one round trip: whether the
// user holds at least one membership, in any organization, that is active
// and inside its window, and until when that answer holds with no write.
func (s *Store) LoadUserActive(ctx context.Context, user string, at time.Time) (UserActive, error) {
	if err := checkID("user", user); err != nil {
		return UserActive{}, err
	}
	if at.IsZero() {
		at = time.Now()
	}
	var (
		ua   UserActive
		next *time.Time
	)
	if err := s.db.QueryRow(ctx, userActiveSQL, user, at).Scan(&ua.Active, &next); err != nil {
		return UserActive{}, dbError("load user active", err)
	}
	if next != nil {
		ua.ValidUntil = next.UTC()
	}
	return ua, nil
}

// build makes the permission set of (org, user) at `at` from one row of
// loadSQL.
func build(org, user string, at time.Time, r *rawSet) *PermissionSet {
	s := &PermissionSet{org: org, user: user, at: at}
	next := func(t time.Time) {
		if t.After(at) && (s.validUntil.IsZero() || t.Before(s.validUntil)) {
			s.validUntil = t
		}
	}
	if r.status == nil {
		return s
	}
	s.status = Status(*r.status)
	if r.from != nil {
		s.from = r.from.UTC()
		next(s.from)
	}
	if r.until != nil {
		s.until = r.until.UTC()
		next(s.until)
	}
	s.active = s.status == StatusActive &&
		(s.from.IsZero() || !at.Before(s.from)) &&
		(s.until.IsZero() || at.Before(s.until))
	if !s.active {
		// Nothing held matters until the membership is active: at its
		// valid_from (already in validUntil) the set is loaded again.
		return s
	}

	// Roles: held when the assignment has no end or ends after at.
	type roleRef struct {
		current bool
		i       int32
	}
	refs := make(map[int64]roleRef, len(r.roleIDs))
	for i, id := range r.roleIDs {
		role := Role{ID: id, Name: r.roleNames[i], System: r.roleSystem[i]}
		if u := r.roleUntil[i]; u != nil {
			role.ValidUntil = u.UTC()
		}
		if role.ValidUntil.IsZero() || role.ValidUntil.After(at) {
			refs[id] = roleRef{true, int32(len(s.roles))}
			s.roles = append(s.roles, role)
			if !role.ValidUntil.IsZero() {
				next(role.ValidUntil)
			}
		} else {
			refs[id] = roleRef{false, int32(len(s.expired))}
			s.expired = append(s.expired, role)
		}
	}

	// Permissions: for each codename, the held role with the lowest ID
	// (roles are by ID, so the lowest index).
	s.perms = make(map[string]int32, len(r.permCode))
	for i, code := range r.permCode {
		ref, ok := refs[r.permRole[i]]
		switch {
		case !ok:
		case ref.current:
			if cur, seen := s.perms[code]; !seen {
				s.perms[code] = ref.i
				s.codes = append(s.codes, code)
			} else if ref.i < cur {
				s.perms[code] = ref.i
			}
		default:
			if s.expiredPerms == nil {
				s.expiredPerms = make(map[string]int32)
			}
			if cur, seen := s.expiredPerms[code]; !seen || ref.i < cur {
				s.expiredPerms[code] = ref.i
			}
		}
	}
	slices.Sort(s.codes)

	// Data grants: for each record (or all of a type), the grant with the
	// lowest ID.
	for i, typ := range r.grantType {
		ref := grantRef{grant: r.grantID[i], role: -1}
		target := &s.access
		if rid := r.grantRole[i]; rid != nil {
			rr, ok := refs[*rid]
			if !ok {
				continue
			}
			ref.role = rr.i
			if !rr.current {
				target = &s.expiredAccess
			}
		}
		if *target == nil {
			*target = make(map[string]*typeAccess)
		}
		ta := (*target)[typ]
		if ta == nil {
			ta = &typeAccess{ids: make(map[string]grantRef)}
			(*target)[typ] = ta
		}
		res := r.grantRes[i]
		if res == nil {
			if !ta.all || ref.grant < ta.allRef.grant {
				ta.all, ta.allRef = true, ref
			}
			continue
		}
		if cur, seen := ta.ids[*res]; !seen {
			ta.ids[*res] = ref
			ta.sorted = append(ta.sorted, *res)
		} else if ref.grant < cur.grant {
			ta.ids[*res] = ref
		}
	}
	for _, ta := range s.access {
		slices.Sort(ta.sorted)
	}
	return s
}
