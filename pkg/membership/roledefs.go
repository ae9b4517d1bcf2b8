package membership

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/orgperm/orgperm/pkg/localcache"
)

// Member fills composed with cached role definitions (issue #12, item 3;
// DECISIONS 52).
//
// A Client's fill reads only the member's own rows (memberSQL: the
// membership by its primary key, the roles it holds with their expiry, the
// grants to the user) and takes what the held roles grant from the
// definitions of the org's roles, read with the first fill in the org
// (memberDefsSQL: memberSQL and roleDefsSQL in one statement) and kept in a
// second local cache evicted by the notifications that evict the org's
// permission sets. The two rows are put together into the rawSet loadSQL
// would have returned, and build makes the set from it, so a composed set is
// the set Load returns, by construction (the property test compares them).

// roleDefsSQL reads the definitions of every role usable in org $1: its own
// roles and the system roles, their permissions, and the data grants of
// org $1 to them. Like loadSQL, one row of arrays, in one snapshot.
const roleDefsSQL = `
SELECT h.ids, h.names, h.system,
    p.role_ids, p.codenames,
    g.ids, g.role_ids, g.types, g.resource_ids
FROM (
    SELECT array_agg(r.id) AS ids, array_agg(r.name::text) AS names, array_agg(r.org_id IS NULL) AS system
    FROM ONLY orgperm.roles r
    WHERE r.org_id = $1 OR r.org_id IS NULL
) h
LEFT JOIN LATERAL (
    SELECT array_agg(rp.role_id) AS role_ids, array_agg(rp.codename::text) AS codenames
    FROM ONLY orgperm.role_permissions rp
    WHERE rp.role_id = ANY (h.ids)
) p ON true
LEFT JOIN LATERAL (
    SELECT array_agg(d.id) AS ids, array_agg(d.role_id) AS role_ids,
           array_agg(d.resource_type::text) AS types, array_agg(coalesce(d.resource_id::text, '')) AS resource_ids
    FROM ONLY orgperm.data_access d
    WHERE d.role_id = ANY (h.ids) AND d.org_id = $1
) g ON true`

// memberSQL reads the member's own rows: loadSQL without the role tables.
// The membership by its primary key; the IDs of the roles it holds (any
// org's: the composition keeps only those its org's definitions know, and
// falls back to loadSQL for any other) with their expiry; the grants of the
// org to the user, as one two-dimensional text array of (id, type,
// resource) triples, "" for every record of the type (one array built by a
// sublink costs the server less than an aggregate of three: about 12% of
// the statement, docs/BENCHMARKS.md). Roles and grants are read only for a
// status-active membership. Its parameters meet only primary-key and
// index-range conditions, so its generic plan is as good as any custom one
// (see BenchmarkFill).
const memberSQL = `
SELECT coalesce($3::timestamptz, statement_timestamp()),
    m.status::text, m.valid_from, m.valid_until,
    h.ids, h.until,
    CASE WHEN m.status = 'active' THEN ARRAY(
        SELECT ARRAY[d.id::text, d.resource_type::text, coalesce(d.resource_id::text, '')]
        FROM ONLY orgperm.data_access d
        WHERE d.org_id = $1 AND d.user_id = $2
    ) END
FROM (SELECT) one
LEFT JOIN ONLY orgperm.memberships m ON m.org_id = $1 AND m.user_id = $2
LEFT JOIN LATERAL (
    SELECT array_agg(mr.role_id) AS ids, array_agg(mr.valid_until) AS until
    FROM ONLY orgperm.membership_roles mr
    WHERE mr.org_id = m.org_id AND mr.user_id = m.user_id AND m.status = 'active'
) h ON true`

// roleDef is one role's definition as an org sees it.
type roleDef struct {
	name   string
	system bool
	// ids are the role's codenames that have a catalog ID (almost all:
	// see maxCatalog), extra the others.
	ids    []uint32
	extra  []string
	grants []roleGrant // the org's grants to the role
}

// roleGrant is a data grant to a role.
type roleGrant struct {
	id  int64
	typ string
	res string // "": every record of typ
}

// orgRoles is what the role cache holds for one org: the definition of
// every role usable in it, as of one snapshot (immutable once read), and
// the role parts of the sets composed from it so far, by held roles: a
// part depends only on the definitions and on which roles are held, so it
// is exact for every set composed from the same definitions.
type orgRoles struct {
	roles map[int64]*roleDef

	mu   sync.Mutex
	memo map[string]roleParts // guarded by mu; at most maxParts
}

// memberDefsSQL is memberSQL and roleDefsSQL in one statement (one
// snapshot): the first fill in an org, or one whose member holds a role
// the cached definitions do not know.
const memberDefsSQL = `SELECT * FROM (` + memberSQL + `) ms, (` + roleDefsSQL + `) rd`

// rawDefs is one row of roleDefsSQL.
type rawDefs struct {
	ids                []int64
	names              []string
	system             []bool
	permRole           []int64
	permCode           []string
	grantID, grantRole []int64
	grantType          []string
	grantRes           []string
}

func (r *rawDefs) targets() []any {
	return []any{&r.ids, &r.names, &r.system, &r.permRole, &r.permCode, &r.grantID, &r.grantRole, &r.grantType, &r.grantRes}
}

// scanRoleDefs reads one row of roleDefsSQL.
func scanRoleDefs(row pgx.Row) (*orgRoles, error) {
	var r rawDefs
	if err := row.Scan(r.targets()...); err != nil {
		return nil, err
	}
	return r.defs(), nil
}

// defs makes the role definitions of r.
func (r *rawDefs) defs() *orgRoles {
	ids, names, system := r.ids, r.names, r.system
	permRole, permCode := r.permRole, r.permCode
	grantID, grantRole, grantType, grantRes := r.grantID, r.grantRole, r.grantType, r.grantRes
	codes.intern(permCode)
	d := &orgRoles{roles: make(map[int64]*roleDef, len(ids))}
	for i, id := range ids {
		d.roles[id] = &roleDef{name: names[i], system: system[i]}
	}
	for i, code := range permCode {
		if r := d.roles[permRole[i]]; r != nil {
			if id, ok := codes.lookup(code); ok {
				r.ids = append(r.ids, id)
			} else {
				r.extra = append(r.extra, code)
			}
		}
	}
	for i, gid := range grantID {
		if r := d.roles[grantRole[i]]; r != nil {
			r.grants = append(r.grants, roleGrant{id: gid, typ: grantType[i], res: grantRes[i]})
		}
	}
	return d
}

// memberRaw is one row of memberSQL.
type memberRaw struct {
	at          time.Time
	status      *string
	from, until pgtype.Timestamptz

	roleIDs   []int64
	roleUntil []pgtype.Timestamptz

	// grants is the row's (id, type, resource) triples, flat; unpack
	// splits them into grantID, grantType and grantRes.
	grants    []string
	grantID   []int64
	grantType []string
	grantRes  []string
}

func (m *memberRaw) targets() []any {
	return []any{&m.at, &m.status, &m.from, &m.until, &m.roleIDs, flat(&m.roleUntil), flat(&m.grants)}
}

func (m *memberRaw) scan(row pgx.Row) error {
	if err := row.Scan(m.targets()...); err != nil {
		return err
	}
	return m.unpack()
}

// unpack splits grants into grantID, grantType and grantRes. A row that is
// not whole triples of a decimal ID and two strings is an error: the fill
// fails (closed) rather than guess.
func (m *memberRaw) unpack() error {
	if len(m.grants)%3 != 0 {
		return fmt.Errorf("grants: %d fields, not (id, type, resource) triples", len(m.grants))
	}
	n := len(m.grants) / 3
	m.grantID, m.grantType, m.grantRes = make([]int64, n), make([]string, n), make([]string, n)
	for i := range n {
		id, err := strconv.ParseInt(m.grants[3*i], 10, 64)
		if err != nil {
			return fmt.Errorf("grants: ID %q: %w", m.grants[3*i], err)
		}
		m.grantID[i], m.grantType[i], m.grantRes[i] = id, m.grants[3*i+1], m.grants[3*i+2]
	}
	return nil
}

// compose makes the rawSet loadSQL would have returned for m's member from
// the role definitions d, without the permissions and grants of the held
// roles (buildWith takes them from d), and reports false when m holds a
// role d does not know: a role of another org (the guard trigger forbids
// it, but a replica session skips the guard), or one created after d was
// read (its INSERT sends no notification, since it has no holder yet).
// When d was read in m's own statement (same), such a role can only be of
// another org, and is left out, as loadSQL leaves it out.
func (d *orgRoles) compose(m *memberRaw, same bool) (*rawSet, bool) {
	r := &rawSet{at: m.at, status: m.status, from: m.from, until: m.until,
		grantID: m.grantID, grantType: m.grantType, grantRes: m.grantRes}
	ids, until := m.roleIDs, m.roleUntil
	if same {
		known := 0
		for _, id := range ids {
			if d.roles[id] != nil {
				known++
			}
		}
		if known < len(ids) {
			ids, until = make([]int64, 0, known), make([]pgtype.Timestamptz, 0, known)
			for i, id := range m.roleIDs {
				if d.roles[id] != nil {
					ids, until = append(ids, id), append(until, m.roleUntil[i])
				}
			}
		}
	}
	if len(ids) > 0 {
		r.roleIDs, r.roleUntil = ids, until
		r.roleNames = make([]string, len(ids))
		r.roleSystem = make([]bool, len(ids))
		for i, id := range ids {
			def := d.roles[id]
			if def == nil {
				return nil, false
			}
			r.roleNames[i], r.roleSystem[i] = def.name, def.system
		}
	}
	r.grantRole = make([]*int64, len(m.grantID)) // all to the user
	return r, true
}

// addRoleRows adds to r, a row made by compose, the permissions of its
// held roles and the org's grants to them, as loadSQL reads them.
func (d *orgRoles) addRoleRows(r *rawSet) {
	for i, id := range r.roleIDs {
		def := d.roles[id]
		if def == nil {
			continue
		}
		for _, c := range def.ids {
			r.permRole = append(r.permRole, id)
			r.permCode = append(r.permCode, codes.name(c))
		}
		for _, c := range def.extra {
			r.permRole = append(r.permRole, id)
			r.permCode = append(r.permCode, c)
		}
		role := &r.roleIDs[i]
		for _, g := range def.grants {
			r.grantID = append(r.grantID, g.id)
			r.grantRole = append(r.grantRole, role)
			r.grantType = append(r.grantType, g.typ)
			r.grantRes = append(r.grantRes, g.res)
		}
	}
}

// maxParts bounds the role parts kept per org: one per distinct
// combination of held roles (and which of them are current) that fills
// met. Past it, parts are made for each fill and not kept.
const maxParts = 256

// parts returns the role parts kept for the held roles key (see heldKey).
func (d *orgRoles) parts(key string) (roleParts, bool) {
	d.mu.Lock()
	p, ok := d.memo[key]
	d.mu.Unlock()
	return p, ok
}

// keepParts keeps p as the role parts of the held roles key.
func (d *orgRoles) keepParts(key string, p roleParts) {
	d.mu.Lock()
	if len(d.memo) < maxParts {
		if d.memo == nil {
			d.memo = make(map[string]roleParts)
		}
		d.memo[key] = p
	}
	d.mu.Unlock()
}

// loadRoleDefs reads the role definitions of org.
func (s *Store) loadRoleDefs(ctx context.Context, org string) (*orgRoles, error) {
	if err := checkID("org", org); err != nil {
		return nil, err
	}
	d, err := scanRoleDefs(s.db.QueryRow(ctx, roleDefsSQL, org))
	if err != nil {
		return nil, dbError("load role definitions", err)
	}
	return d, nil
}

// loadComposed returns the permission set of user in org, evaluated at the
// instant at (zero: the database's clock), from the member's own rows, read
// in one statement, and the role definitions d. It returns a nil set and
// false, with no error, when the member holds a role d does not know: the
// caller reads the set with Load instead.
func (s *Store) loadComposed(ctx context.Context, org, user string, at time.Time, d *orgRoles) (*PermissionSet, bool, error) {
	if err := checkMember(org, user); err != nil {
		return nil, false, err
	}
	var m memberRaw
	if err := m.scan(s.db.QueryRow(ctx, memberSQL, org, user, nullTime(at))); err != nil {
		return nil, false, dbError("load member", err)
	}
	raw, ok := d.compose(&m, false)
	if !ok {
		return nil, false, nil
	}
	return buildWith(org, user, raw, d), true, nil
}

// loadWithRoleDefs returns the permission set of user in org, evaluated at
// the instant at (zero: the database's clock), and the role definitions of
// org, both from one statement (memberDefsSQL, one snapshot): the set is
// composed from the member's rows and those definitions.
func (s *Store) loadWithRoleDefs(ctx context.Context, org, user string, at time.Time) (*PermissionSet, *orgRoles, error) {
	if err := checkMember(org, user); err != nil {
		return nil, nil, err
	}
	var (
		m  memberRaw
		rd rawDefs
	)
	if err := s.db.QueryRow(ctx, memberDefsSQL, org, user, nullTime(at)).Scan(append(m.targets(), rd.targets()...)...); err != nil {
		return nil, nil, dbError("load", err)
	}
	if err := m.unpack(); err != nil {
		return nil, nil, dbError("load", err)
	}
	d := rd.defs()
	raw, ok := d.compose(&m, true)
	if !ok { // cannot happen: every role is known or left out
		return nil, nil, dbError("load", errors.New("role definitions incomplete"))
	}
	return buildWith(org, user, raw, d), d, nil
}

// loadFill is how the Client fills its cache from the primary: a set
// composed from the member's own rows and the org's cached role
// definitions when the cache is trusted and holds them (one statement,
// memberSQL), else composed from the member's rows and the definitions
// read in the same statement (memberDefsSQL), which are kept for the next
// fill; Load while another fill of the org reads them. While the cache is
// not trusted (unsynced, or past its lease) it is Load, as every read that
// bypasses the cache: definitions are neither used nor read then.
func (c *Client) loadFill(ctx context.Context, k localcache.Key) (cached, time.Duration, error) {
	if k.Org == "" || c.roles == nil || !c.cache.Trusted() {
		return c.load(ctx, k)
	}
	rk := localcache.Key{Org: k.Org}
	if d, ok := c.roles.Get(rk); ok {
		s, ok, err := c.store.loadComposed(ctx, k.Org, k.User, time.Time{}, d)
		if err != nil {
			return cached{}, 0, err
		}
		if ok {
			v, left := setEntry(s)
			return v, left, nil
		}
		// A held role the definitions do not know (a second statement,
		// rare: see compose): read them again with the member.
	}
	if _, busy := c.roleLoads.LoadOrStore(k.Org, struct{}{}); busy {
		return c.load(ctx, k) // another fill is reading the definitions
	}
	defer c.roleLoads.Delete(k.Org)
	// Registered before the read: an eviction of the org from here on
	// keeps these definitions out (rule 1).
	t := c.roles.Begin(rk)
	defer t.Cancel()
	s, d, err := c.store.loadWithRoleDefs(ctx, k.Org, k.User, time.Time{})
	if err != nil {
		return cached{}, 0, err
	}
	t.Store(d, 0)
	v, left := setEntry(s)
	return v, left, nil
}
