package membership

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orgperm/orgperm/pkg/listener"
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
	// At is the instant the answer was evaluated at: the database's clock,
	// unless the caller gave one.
	At time.Time
}

// nullTime is at for a query parameter, NULL (the database's clock) when
// zero.
func nullTime(at time.Time) any {
	if at.IsZero() {
		return nil
	}
	return at
}

// Bounds that stand for PostgreSQL's 'infinity' and '-infinity' where the
// model must compare with them (a window that never starts, or ended
// before all time): PostgreSQL's own extreme timestamps, so that every
// comparison agrees with the database's ordering.
var (
	farFuture = time.Date(294276, 12, 31, 23, 59, 59, 999999000, time.UTC)
	farPast   = time.Date(-4713, 11, 24, 0, 0, 0, 0, time.UTC)
)

// windowStart is a window's start: zero (open) for NULL and '-infinity',
// farFuture for 'infinity' (it never starts).
func windowStart(t pgtype.Timestamptz) time.Time {
	switch {
	case !t.Valid || t.InfinityModifier == pgtype.NegativeInfinity:
		return time.Time{}
	case t.InfinityModifier == pgtype.Infinity:
		return farFuture
	}
	return t.Time.UTC()
}

// windowEnd is a window's end: zero (open) for NULL and 'infinity',
// farPast for '-infinity' (it ended before all time).
func windowEnd(t pgtype.Timestamptz) time.Time {
	switch {
	case !t.Valid || t.InfinityModifier == pgtype.Infinity:
		return time.Time{}
	case t.InfinityModifier == pgtype.NegativeInfinity:
		return farPast
	}
	return t.Time.UTC()
}

// Store reads permission sets from the orgperm schema, one database round
// trip per read, and writes it (see admin.go), one transaction per write.
// It holds no state of its own besides the handle, and is safe for
// concurrent use.
//
// A Store made with NewStore evicts no cache: the database's triggers tell
// every listening instance once the write commits. A Client's Store
// ([Client.Store], [Client.WriteTx]) also evicts the Client's own cache at
// once, so that the writer reads its own writes.
type Store struct {
	db DB

	// onWrite, when not nil, is called after each successful write, with
	// the invalidation the database's triggers send for it: the Client's
	// read-your-writes on this instance. It runs on the writer's goroutine.
	onWrite func(listener.Invalidation)
}

// NewStore returns a Store over db, usually a *pgxpool.Pool.
func NewStore(db DB) *Store {
	if db == nil {
		panic("membership: NewStore with a nil DB")
	}
	return &Store{db: db}
}

// notify reports a committed write's invalidation to the hook, if any.
func (s *Store) notify(inv listener.Invalidation) {
	if s.onWrite != nil {
		s.onWrite(inv)
	}
}

// memberInv is the invalidation a write of source to (org, user) sends.
func memberInv(source, org, user string) listener.Invalidation {
	return listener.Invalidation{Source: source, Members: []listener.Member{{Org: org, User: user}}}
}

// orgInv is the invalidation a write of source to every member of org sends.
func orgInv(source, org string) listener.Invalidation {
	return listener.Invalidation{Source: source, Orgs: []string{org}}
}

// loadSQL reads everything a permission set is built from, in one
// statement (one snapshot): the membership; the roles assigned to the
// member, expired or not, restricted to system roles and roles of the org;
// their permissions; and the data grants of the org to the user or to one
// of those roles. Roles and grants are read only for a status-active
// membership. The first column is the evaluation instant: $3, or the
// database's own clock when $3 is NULL (one clock for every instance,
// whatever its host's clock says). Times are compared in Go, at that
// instant, and the lists are sorted in Go (faster than in the database: see
// BenchmarkLoadHeavy; an aggregate's ORDER BY costs a sort per column), so
// nothing depends on the database's collation or on the order rows come in.
// Rows of tables that inherit from orgperm's are not part of the model
// (FROM ONLY): writes to them notify nothing.
//
// Its shape keeps the fill near one index probe (issue #12, BenchmarkFill):
// the parameters meet only the membership's primary key, which matches
// one row whatever their values, and every other table is reached through
// LATERAL subqueries on that row's columns and the held roles' IDs, each
// one aggregate over an index scan. So no plan is better for one member
// than for another: PostgreSQL settles on the generic plan after its first
// five executions and plans no more (a statement whose parameters reach a
// skewed column is planned again on every call), and the row carries
// arrays, not one row per permission or grant.
const loadSQL = `
SELECT coalesce($3::timestamptz, statement_timestamp()),
    m.status::text, m.valid_from, m.valid_until,
    h.ids, h.names, h.system, h.until,
    p.role_ids, p.codenames,
    g.ids, g.role_ids, g.types, g.resource_ids
FROM (SELECT) one
LEFT JOIN ONLY orgperm.memberships m ON m.org_id = $1 AND m.user_id = $2
LEFT JOIN LATERAL (
    SELECT array_agg(r.id) AS ids, array_agg(r.name::text) AS names,
           array_agg(r.org_id IS NULL) AS system, array_agg(mr.valid_until) AS until
    FROM ONLY orgperm.membership_roles mr
    JOIN ONLY orgperm.roles r ON r.id = mr.role_id
    WHERE mr.org_id = m.org_id AND mr.user_id = m.user_id AND m.status = 'active'
      AND (r.org_id IS NULL OR r.org_id = m.org_id)
) h ON true
LEFT JOIN LATERAL (
    SELECT array_agg(rp.role_id) AS role_ids, array_agg(rp.codename::text) AS codenames
    FROM ONLY orgperm.role_permissions rp
    WHERE rp.role_id = ANY (h.ids)
) p ON true
LEFT JOIN LATERAL (
    SELECT array_agg(x.id) AS ids, array_agg(x.role_id) AS role_ids,
           array_agg(x.resource_type) AS types, array_agg(x.resource_id) AS resource_ids
    FROM (
        SELECT d.id, NULL::bigint AS role_id, d.resource_type::text AS resource_type, coalesce(d.resource_id::text, '') AS resource_id
        FROM ONLY orgperm.data_access d
        WHERE d.org_id = m.org_id AND d.user_id = m.user_id AND m.status = 'active'
        UNION ALL
        SELECT d.id, d.role_id, d.resource_type::text, coalesce(d.resource_id::text, '')
        FROM ONLY orgperm.data_access d
        WHERE d.role_id = ANY (h.ids) AND d.org_id = m.org_id
    ) x
) g ON true`

// rawSet is one row of loadSQL. Window bounds are scanned with their
// infinities (the schema accepts 'infinity' and '-infinity').
type rawSet struct {
	at          time.Time
	status      *string
	from, until pgtype.Timestamptz

	roleIDs    []int64
	roleNames  []string
	roleSystem []bool
	roleUntil  []pgtype.Timestamptz

	permRole []int64
	permCode []string

	grantID   []int64
	grantRole []*int64
	grantType []string
	grantRes  []string // "": every record of the type (an ext_id is never empty)
}

func (r *rawSet) scan(row pgx.Row) error {
	return row.Scan(&r.at, &r.status, &r.from, &r.until,
		&r.roleIDs, &r.roleNames, &r.roleSystem, flat(&r.roleUntil),
		&r.permRole, &r.permCode,
		&r.grantID, flat(&r.grantRole), &r.grantType, &r.grantRes)
}

// flat hands pgx a slice as a pgtype.FlatArray, which it fills without
// reflection: pgx decodes []int64, []string and a few other slices
// directly, but a slice of pointers or of pgtype values through reflect,
// planned anew for every row (a third of a fill's client time).
func flat[T any](s *[]T) *pgtype.FlatArray[T] { return (*pgtype.FlatArray[T])(s) }

// sortRoles puts the held roles in ID order, as build expects (the query
// does not sort them: see loadSQL).
func (r *rawSet) sortRoles() {
	if slices.IsSorted(r.roleIDs) {
		return
	}
	order := make([]int, len(r.roleIDs))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(r.roleIDs[a], r.roleIDs[b]) })
	ids, names := make([]int64, len(order)), make([]string, len(order))
	system, until := make([]bool, len(order)), make([]pgtype.Timestamptz, len(order))
	for i, j := range order {
		ids[i], names[i], system[i], until[i] = r.roleIDs[j], r.roleNames[j], r.roleSystem[j], r.roleUntil[j]
	}
	r.roleIDs, r.roleNames, r.roleSystem, r.roleUntil = ids, names, system, until
}

// Load returns the permission set of user in org, evaluated at the instant
// at (a zero at means the database's clock, in the same statement: see
// PermissionSet.ComputedAt). It makes exactly one database round trip
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
	var raw rawSet
	if err := raw.scan(s.db.QueryRow(ctx, loadSQL, org, user, nullTime(at))); err != nil {
		return nil, dbError("load", err)
	}
	return build(org, user, &raw), nil
}

// LoadMany returns the permission sets of keys, in the order of keys,
// evaluated at the instant at (zero means the database's clock), in one database round
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
	b := &pgx.Batch{}
	for _, k := range keys {
		b.Queue(loadSQL, k.Org, k.User, nullTime(at))
	}
	br := s.db.SendBatch(ctx, b)
	sets := make([]*PermissionSet, len(keys))
	for i, k := range keys {
		var raw rawSet
		if err := raw.scan(br.QueryRow()); err != nil {
			_ = br.Close()
			return nil, dbError("load many", err)
		}
		sets[i] = build(k.Org, k.User, &raw)
	}
	if err := br.Close(); err != nil {
		return nil, dbError("load many", err)
	}
	return sets, nil
}

// userActiveSQL answers user_has_active_membership at $2 (the database's
// clock when NULL) and finds the next finite window boundary of the user's
// status-active memberships. pgx sends $2 truncated to microseconds; since
// stored times are whole microseconds, the comparisons give the same
// answers as at full precision.
const userActiveSQL = `
SELECT t.at,
    coalesce(bool_or(m.user_id IS NOT NULL AND (m.valid_from IS NULL OR m.valid_from <= t.at) AND (m.valid_until IS NULL OR m.valid_until > t.at)), false),
    min(least(CASE WHEN m.valid_from > t.at AND isfinite(m.valid_from) THEN m.valid_from END,
              CASE WHEN m.valid_until > t.at AND isfinite(m.valid_until) THEN m.valid_until END))
FROM (SELECT coalesce($2::timestamptz, statement_timestamp()) AS at) t
LEFT JOIN ONLY orgperm.memberships m ON m.user_id = $1 AND m.status = 'active'
GROUP BY t.at`

// LoadUserActive answers the first seed's user_has_active_membership(user)
// at the instant at (zero means the database's clock), in one round trip:
// whether the user holds at least one membership, in any organization, that
// is active and inside its window, and until when that answer holds with no
// write.
func (s *Store) LoadUserActive(ctx context.Context, user string, at time.Time) (UserActive, error) {
	if err := checkID("user", user); err != nil {
		return UserActive{}, err
	}
	var (
		ua   UserActive
		next *time.Time
	)
	if err := s.db.QueryRow(ctx, userActiveSQL, user, nullTime(at)).Scan(&ua.At, &ua.Active, &next); err != nil {
		return UserActive{}, dbError("load user active", err)
	}
	ua.At = ua.At.UTC()
	if next != nil {
		ua.ValidUntil = next.UTC()
	}
	return ua, nil
}
