package membership

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orgperm/orgperm/pkg/pgtest"
)

// The property test builds random orgs, users, roles, memberships,
// assignments and grants, and checks, at random instants (many of them on a
// boundary or a microsecond before one), that every answer of the check API
// agrees with plain SQL reference queries written independently of the
// Store's own, and that nothing is ever granted across orgs.
//
// The seed is logged; set ORGPERM_SEED to replay a failure.

const (
	propOrgs      = 4
	propUsers     = 8
	propCodenames = 10
	propInstants  = 10
)

// propDatasets is how many random datasets each property test checks: 3,
// or 1 with -short (set by TestMain).
var propDatasets = 3

var propTypes = []string{"invoice", "project", "other"}

func propSeed(t *testing.T) uint64 {
	if s := os.Getenv("ORGPERM_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("ORGPERM_SEED: %v", err)
		}
		return n
	}
	return uint64(time.Now().UnixNano())
}

func TestProperty(t *testing.T) {
	t.Parallel()
	seed := propSeed(t)
	t.Logf("seed %d (ORGPERM_SEED=%d to replay)", seed, seed)
	for i := range propDatasets {
		t.Run(fmt.Sprintf("dataset%d", i), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(seed, uint64(i)))
			pool := pgtest.NewPool(t)
			d := generate(t, pool, rng)
			d.check(t, rng)
		})
	}
}

type propData struct {
	pool      *pgxpool.Pool
	store     *Store
	orgs      []string
	users     []string
	codenames []string
	roleOrg   map[int64]string // "" for a system role
	grantOrg  map[int64]string
	instants  []time.Time
}

func generate(t *testing.T, pool *pgxpool.Pool, rng *rand.Rand) *propData {
	t.Helper()
	ctx := context.Background()
	d := &propData{pool: pool, store: NewStore(pool), roleOrg: map[int64]string{}, grantOrg: map[int64]string{}}
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := pool.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("generate: %v\n%s %v", err, sql, args)
		}
	}
	for i := range propOrgs {
		d.orgs = append(d.orgs, fmt.Sprintf("org-%d", i))
	}
	for i := range propUsers {
		d.users = append(d.users, fmt.Sprintf("user-%d", i))
	}
	for i := range propCodenames {
		c := fmt.Sprintf("app%d.perm_%d", i%3, i)
		d.codenames = append(d.codenames, c)
		exec(`INSERT INTO orgperm.permissions (codename) VALUES ($1)`, c)
	}
	// A random instant on a minute within ±10h of t0.
	instant := func() time.Time { return t0.Add(time.Duration(rng.IntN(1201)-600) * time.Minute) }
	boundaries := map[time.Time]bool{}
	maybeTime := func(p float64) *time.Time {
		if rng.Float64() >= p {
			return nil
		}
		x := instant()
		boundaries[x] = true
		return &x
	}

	// Roles: 3 system roles and 3 per org, each with a random subset of
	// the catalog.
	var rolesOf = map[string][]int64{}
	addRole := func(org string, n int) {
		var orgArg any
		if org != "" {
			orgArg = org
		}
		var id int64
		if err := pool.QueryRow(ctx, `INSERT INTO orgperm.roles (org_id, name) VALUES ($1, $2) RETURNING id`,
			orgArg, fmt.Sprintf("role %s %d", org, n)).Scan(&id); err != nil {
			t.Fatal(err)
		}
		d.roleOrg[id] = org
		rolesOf[org] = append(rolesOf[org], id)
		for _, c := range d.codenames {
			if rng.Float64() < 0.3 {
				exec(`INSERT INTO orgperm.role_permissions (role_id, codename) VALUES ($1, $2)`, id, c)
			}
		}
	}
	for n := range 3 {
		addRole("", n)
		for _, o := range d.orgs {
			addRole(o, n)
		}
	}

	statuses := []string{"active", "active", "active", "active", "invited", "suspended", "revoked"}
	for _, o := range d.orgs {
		for _, u := range d.users {
			if rng.Float64() < 0.25 {
				continue
			}
			from, until := maybeTime(0.4), maybeTime(0.4)
			if from != nil && until != nil && !until.After(*from) {
				from, until = until, from
				if from.Equal(*until) {
					x := from.Add(time.Hour)
					until = &x
					boundaries[x] = true
				}
			}
			exec(`INSERT INTO orgperm.memberships (org_id, user_id, status, valid_from, valid_until) VALUES ($1, $2, $3, $4, $5)`,
				o, u, statuses[rng.IntN(len(statuses))], from, until)
			for _, r := range slices.Concat(rolesOf[""], rolesOf[o]) {
				if rng.Float64() < 0.35 {
					exec(`INSERT INTO orgperm.membership_roles (org_id, user_id, role_id, valid_until) VALUES ($1, $2, $3, $4)`,
						o, u, r, maybeTime(0.5))
				}
			}
		}
	}

	// Data grants, to users (members or not) and to roles usable in the org.
	for range 60 {
		o := d.orgs[rng.IntN(len(d.orgs))]
		var user, role, res any
		if rng.IntN(2) == 0 {
			user = d.users[rng.IntN(len(d.users))]
		} else {
			cands := slices.Concat(rolesOf[""], rolesOf[o])
			role = cands[rng.IntN(len(cands))]
		}
		if rng.Float64() > 0.15 {
			res = fmt.Sprintf("r%d", rng.IntN(5))
		}
		typ := propTypes[rng.IntN(len(propTypes)-1)] // "other" gets no grant
		var id int64
		err := pool.QueryRow(ctx, `INSERT INTO orgperm.data_access (org_id, user_id, role_id, resource_type, resource_id)
			VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING id`, o, user, role, typ, res).Scan(&id)
		if err == nil {
			d.grantOrg[id] = o
		}
	}

	// Instants: boundaries, a microsecond before them, and random ones.
	var bs []time.Time
	for b := range boundaries {
		bs = append(bs, b)
	}
	slices.SortFunc(bs, func(a, b time.Time) int { return a.Compare(b) })
	for range propInstants {
		switch {
		case len(bs) > 0 && rng.IntN(3) == 0:
			d.instants = append(d.instants, bs[rng.IntN(len(bs))])
		case len(bs) > 0 && rng.IntN(2) == 0:
			d.instants = append(d.instants, bs[rng.IntN(len(bs))].Add(-time.Microsecond))
		default:
			d.instants = append(d.instants, instant().Add(time.Duration(rng.IntN(60_000_000))*time.Microsecond))
		}
	}
	return d
}

// The reference queries: plain SQL, written from the model's definition,
// evaluated in the database at $3.
const (
	refActiveMembership = `m.status = 'active' AND (m.valid_from IS NULL OR m.valid_from <= $3) AND (m.valid_until IS NULL OR m.valid_until > $3)`

	refActiveSQL = `SELECT EXISTS (SELECT FROM orgperm.memberships m WHERE m.org_id = $1 AND m.user_id = $2 AND ` + refActiveMembership + `)`

	refPermsSQL = `
SELECT rp.codename FROM orgperm.memberships m
JOIN orgperm.membership_roles mr ON mr.org_id = m.org_id AND mr.user_id = m.user_id
JOIN orgperm.roles r ON r.id = mr.role_id
JOIN orgperm.role_permissions rp ON rp.role_id = r.id
WHERE m.org_id = $1 AND m.user_id = $2 AND ` + refActiveMembership + `
  AND (mr.valid_until IS NULL OR mr.valid_until > $3)
  AND (r.org_id IS NULL OR r.org_id = m.org_id)
GROUP BY rp.codename`

	refAccessSQL = `
SELECT DISTINCT d.resource_type, d.resource_id FROM orgperm.data_access d
JOIN orgperm.memberships m ON m.org_id = d.org_id
WHERE m.org_id = $1 AND m.user_id = $2 AND ` + refActiveMembership + `
  AND (d.user_id = m.user_id OR EXISTS (
      SELECT FROM orgperm.membership_roles mr JOIN orgperm.roles r ON r.id = mr.role_id
      WHERE mr.org_id = m.org_id AND mr.user_id = m.user_id AND mr.role_id = d.role_id
        AND (mr.valid_until IS NULL OR mr.valid_until > $3)
        AND (r.org_id IS NULL OR r.org_id = m.org_id)))`

	refValidUntilSQL = `
SELECT min(t) FROM (
    SELECT m.valid_from AS t FROM orgperm.memberships m WHERE m.org_id = $1 AND m.user_id = $2
    UNION ALL
    SELECT m.valid_until FROM orgperm.memberships m WHERE m.org_id = $1 AND m.user_id = $2
    UNION ALL
    SELECT mr.valid_until FROM orgperm.membership_roles mr
    JOIN orgperm.memberships m ON m.org_id = mr.org_id AND m.user_id = mr.user_id
    JOIN orgperm.roles r ON r.id = mr.role_id
    WHERE m.org_id = $1 AND m.user_id = $2 AND ` + refActiveMembership + `
      AND (r.org_id IS NULL OR r.org_id = m.org_id)
) b WHERE t > $3`

	// refUserActiveSQL takes $2 as a dummy so that $3 is the instant.
	refUserActiveSQL = `
SELECT EXISTS (SELECT FROM orgperm.memberships m WHERE m.user_id = $1 AND $2::text IS NULL AND ` + refActiveMembership + `),
       (SELECT min(t) FROM (
            SELECT m.valid_from AS t FROM orgperm.memberships m WHERE m.user_id = $1 AND m.status = 'active'
            UNION ALL
            SELECT m.valid_until FROM orgperm.memberships m WHERE m.user_id = $1 AND m.status = 'active'
        ) b WHERE t > $3)`
)

func (d *propData) check(t *testing.T, rng *rand.Rand) {
	ctx := context.Background()
	var keys []Key
	for _, o := range append(slices.Clone(d.orgs), "org-none") {
		for _, u := range d.users {
			keys = append(keys, Key{o, u})
		}
	}
	resourceIDs := []string{"r0", "r1", "r2", "r3", "r4", "zz"}
	checks := 0
	// The role definitions of each org, as a Client caches them: a set
	// composed from them and the member's own rows must be Load's.
	defs := map[string]*orgRoles{}
	for _, k := range keys {
		if defs[k.Org] == nil {
			od, err := d.store.loadRoleDefs(ctx, k.Org)
			if err != nil {
				t.Fatal(err)
			}
			defs[k.Org] = od
		}
	}
	for _, at := range d.instants {
		many, err := d.store.LoadMany(ctx, keys, at)
		if err != nil {
			t.Fatal(err)
		}
		for ki, k := range keys {
			s, err := d.store.Load(ctx, k.Org, k.User, at)
			if err != nil {
				t.Fatal(err)
			}
			where := fmt.Sprintf("(%s, %s) at %s", k.Org, k.User, at.Format(time.RFC3339Nano))
			if a, b := mustJSON(t, s), mustJSON(t, many[ki]); a != b {
				t.Errorf("%s: LoadMany differs from Load:\n%s\n%s", where, b, a)
			}
			composed, ok, err := d.store.loadComposed(ctx, k.Org, k.User, at, defs[k.Org])
			switch {
			case err != nil:
				t.Fatal(err)
			case !ok:
				t.Errorf("%s: the org's role definitions miss a role the member holds", where)
			case mustJSON(t, composed) != mustJSON(t, s):
				t.Errorf("%s: the composed set differs from Load:\n%s\n%s", where, mustJSON(t, composed), mustJSON(t, s))
			}
			withDefs, _, err := d.store.loadWithRoleDefs(ctx, k.Org, k.User, at)
			if err != nil {
				t.Fatal(err)
			}
			if mustJSON(t, withDefs) != mustJSON(t, s) {
				t.Errorf("%s: the set composed with the definitions read with it differs from Load:\n%s\n%s", where, mustJSON(t, withDefs), mustJSON(t, s))
			}

			var refActive bool
			if err := d.pool.QueryRow(ctx, refActiveSQL, k.Org, k.User, at).Scan(&refActive); err != nil {
				t.Fatal(err)
			}
			if s.Active() != refActive {
				t.Errorf("%s: Active = %v, reference %v", where, s.Active(), refActive)
			}

			refPerms := queryStrings(t, d.pool, refPermsSQL, k.Org, k.User, at)
			for _, c := range append(slices.Clone(d.codenames), "app0.nope") {
				want := slices.Contains(refPerms, c)
				if s.Has(c) != want || s.Explain(c).Allowed != want {
					t.Errorf("%s: Has(%q) = %v, reference %v", where, c, s.Has(c), want)
				}
				checks++
				if want {
					if org := d.roleOrg[s.Explain(c).RoleID]; org != "" && org != k.Org {
						t.Errorf("%s: %q granted by role %d of org %q", where, c, s.Explain(c).RoleID, org)
					}
				}
			}
			slices.Sort(refPerms)
			if got := s.Permissions(); !slices.Equal(got, refPerms) && len(got)+len(refPerms) > 0 {
				t.Errorf("%s: Permissions = %v, reference %v", where, got, refPerms)
			}

			refAll, refIDs := map[string]bool{}, map[string][]string{}
			rows, err := d.pool.Query(ctx, refAccessSQL, k.Org, k.User, at)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var typ string
				var id *string
				if err := rows.Scan(&typ, &id); err != nil {
					t.Fatal(err)
				}
				if id == nil {
					refAll[typ] = true
				} else {
					refIDs[typ] = append(refIDs[typ], *id)
				}
			}
			if rows.Err() != nil {
				t.Fatal(rows.Err())
			}
			for _, typ := range propTypes {
				for _, id := range resourceIDs {
					want := refAll[typ] || slices.Contains(refIDs[typ], id)
					if s.CanAccess(typ, id) != want || s.ExplainAccess(typ, id).Allowed != want {
						t.Errorf("%s: CanAccess(%q, %q) = %v, reference %v", where, typ, id, s.CanAccess(typ, id), want)
					}
					checks++
					if want {
						if g := s.ExplainAccess(typ, id).GrantID; d.grantOrg[g] != k.Org {
							t.Errorf("%s: %s %s granted by grant %d of org %q", where, typ, id, g, d.grantOrg[g])
						}
					}
				}
				all, ids := s.AccessibleIDs(typ)
				wantIDs := refIDs[typ]
				slices.Sort(wantIDs)
				if refAll[typ] {
					wantIDs = nil
				}
				if all != refAll[typ] || !slices.Equal(ids, wantIDs) {
					t.Errorf("%s: AccessibleIDs(%q) = %v %v, reference %v %v", where, typ, all, ids, refAll[typ], wantIDs)
				}
			}

			var refVU *time.Time
			if err := d.pool.QueryRow(ctx, refValidUntilSQL, k.Org, k.User, at).Scan(&refVU); err != nil {
				t.Fatal(err)
			}
			if (refVU == nil) != s.ValidUntil().IsZero() || (refVU != nil && !refVU.Equal(s.ValidUntil())) {
				t.Errorf("%s: ValidUntil = %v, reference %v", where, s.ValidUntil(), refVU)
			}
			// Nothing changes before ValidUntil.
			if vu := s.ValidUntil(); !vu.IsZero() && rng.IntN(3) == 0 {
				later, err := d.store.Load(ctx, k.Org, k.User, vu.Add(-time.Microsecond))
				if err != nil {
					t.Fatal(err)
				}
				if a, b := contentJSON(t, s), contentJSON(t, later); a != b {
					t.Errorf("%s: the set changed before ValidUntil %v:\n%s\n%s", where, vu, a, b)
				}
			}
		}
		for _, u := range append(slices.Clone(d.users), "user-none") {
			ua, err := d.store.LoadUserActive(ctx, u, at)
			if err != nil {
				t.Fatal(err)
			}
			var refActive bool
			var refNext *time.Time
			if err := d.pool.QueryRow(ctx, refUserActiveSQL, u, nil, at).Scan(&refActive, &refNext); err != nil {
				t.Fatal(err)
			}
			if ua.Active != refActive || (refNext == nil) != ua.ValidUntil.IsZero() ||
				(refNext != nil && !refNext.Equal(ua.ValidUntil)) {
				t.Errorf("LoadUserActive(%s) at %v = %+v, reference %v %v", u, at, ua, refActive, refNext)
			}
			checks++
		}
	}
	t.Logf("%d checks at %d instants", checks, len(d.instants))
}

func queryStrings(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), sql, args...)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	return out
}

func mustJSON(t testing.TB, s *PermissionSet) string {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// contentJSON is the JSON of s without computed_at.
func contentJSON(t testing.TB, s *PermissionSet) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(mustJSON(t, s)), &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "computed_at")
	b, _ := json.Marshal(m)
	return string(b)
}
