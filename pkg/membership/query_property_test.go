package membership

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/orgperm/orgperm/pkg/pgtest"
)

// TestQueryProperty checks the read API against the check API: on the
// property test's random datasets (see generate), at each of its instants,
// every list equals the brute-force answer of Store.Load for every
// (org, user), read page by page with a small page size so that the cursors
// are exercised. The seed is logged; ORGPERM_SEED replays a failure.
func TestQueryProperty(t *testing.T) {
	t.Parallel()
	seed := propSeed(t)
	t.Logf("seed %d (ORGPERM_SEED=%d to replay)", seed, seed)
	for i := range propDatasets {
		t.Run(fmt.Sprintf("dataset%d", i), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(seed, uint64(i)))
			d := generate(t, pgtest.NewPool(t), rng)
			q := &queryCheck{t: t, d: d}
			q.run()
			t.Logf("%d comparisons, %d differences", q.compared, q.diffs)
		})
	}
}

type queryCheck struct {
	t        *testing.T
	d        *propData
	compared int
	diffs    int
}

func (q *queryCheck) differ(format string, args ...any) {
	q.t.Helper()
	q.diffs++
	q.t.Errorf(format, args...)
}

// pages reads every page of a list, pageSize items at a time.
func pages[T any](t *testing.T, fetch func(cursor string) (Page[T], error)) []T {
	t.Helper()
	var all []T
	cursor := ""
	for range 1000 {
		p, err := fetch(cursor)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, p.Items...)
		if p.Next == "" {
			return all
		}
		cursor = p.Next
	}
	t.Fatal("pages: more than 1000 pages")
	return nil
}

const propPage = 3

func (q *queryCheck) run() {
	t, d := q.t, q.d
	ctx := context.Background()
	orgs := append(slices.Clone(d.orgs), "org-none")
	var roleIDs []int64
	for id := range d.roleOrg {
		roleIDs = append(roleIDs, id)
	}
	slices.Sort(roleIDs)
	types := propTypes
	resources := []string{"r0", "r1", "r2", "r3", "r4", "zz"}

	for _, at := range d.instants {
		opts := ListOptions{At: at, Limit: propPage}
		sets := map[Key]*PermissionSet{}
		for _, o := range orgs {
			for _, u := range d.users {
				s, err := d.store.Load(ctx, o, u, at)
				if err != nil {
					t.Fatal(err)
				}
				sets[Key{o, u}] = s
			}
		}
		where := "at " + at.Format(time.RFC3339Nano)

		for _, o := range orgs {
			// Members, every status.
			members := pages(t, func(c string) (Page[Member], error) {
				return d.store.ListMembers(ctx, o, MemberQuery{ListOptions: withCursor(opts, c)})
			})
			byUser := map[string]Member{}
			for _, m := range members {
				byUser[m.User] = m
			}
			if len(byUser) != len(members) {
				q.differ("%s: ListMembers(%s) lists a user twice: %v", where, o, members)
			}
			for _, u := range d.users {
				s := sets[Key{o, u}]
				m, listed := byUser[u]
				q.compared++
				if listed != (s.Status() != StatusNone) {
					q.differ("%s: ListMembers(%s): %s listed %v, status %q", where, o, u, listed, s.Status())
					continue
				}
				if !listed {
					continue
				}
				from, until := s.Window()
				if m.Status != s.Status() || m.Active != s.Active() || !m.ValidFrom.Equal(from) || !m.ValidUntil.Equal(until) ||
					!slices.Equal(m.Roles, s.Roles()) {
					q.differ("%s: ListMembers(%s) %s = %+v; Load: %s %v [%v %v) %+v", where, o, u, m,
						s.Status(), s.Active(), from, until, s.Roles())
				}
			}
			if len(members) > 0 && !slices.IsSortedFunc(members, func(a, b Member) int { return compareStrings(a.User, b.User) }) {
				q.differ("%s: ListMembers(%s) not sorted by user", where, o)
			}

			// Members by status.
			for _, st := range []Status{StatusActive, StatusInvited, StatusSuspended, StatusRevoked} {
				got := userSet(pages(t, func(c string) (Page[Member], error) {
					return d.store.ListMembers(ctx, o, MemberQuery{ListOptions: withCursor(opts, c), Status: st})
				}), func(m Member) string { return m.User })
				want := q.brute(sets, o, func(s *PermissionSet) bool { return s.Status() == st })
				q.same(where, fmt.Sprintf("ListMembers(%s, status %s)", o, st), got, want)
			}
			// Members by held role (roles of every org, so some never match).
			for _, id := range roleIDs {
				got := userSet(pages(t, func(c string) (Page[Member], error) {
					return d.store.ListMembers(ctx, o, MemberQuery{ListOptions: withCursor(opts, c), RoleID: id})
				}), func(m Member) string { return m.User })
				want := q.brute(sets, o, func(s *PermissionSet) bool {
					return slices.ContainsFunc(s.Roles(), func(r Role) bool { return r.ID == id })
				})
				q.same(where, fmt.Sprintf("ListMembers(%s, role %d)", o, id), got, want)
			}

			// Who holds a codename.
			for _, c := range append(slices.Clone(d.codenames), "app0.nope") {
				hs := pages(t, func(cur string) (Page[Holder], error) { return d.store.WhoHas(ctx, o, c, withCursor(opts, cur)) })
				got := userSet(hs, func(h Holder) string { return h.User })
				want := q.brute(sets, o, func(s *PermissionSet) bool { return s.Has(c) })
				q.same(where, fmt.Sprintf("WhoHas(%s, %s)", o, c), got, want)
				for _, h := range hs {
					e := sets[Key{o, h.User}].Explain(c)
					if h.RoleID != e.RoleID || h.RoleName != e.RoleName || h.GrantID != 0 {
						q.differ("%s: WhoHas(%s, %s) %+v; Explain %+v", where, o, c, h, e)
					}
				}
			}

			// Who can access a record.
			for _, typ := range types {
				for _, res := range resources {
					hs := pages(t, func(cur string) (Page[Holder], error) {
						return d.store.WhoCanAccess(ctx, o, typ, res, withCursor(opts, cur))
					})
					got := userSet(hs, func(h Holder) string { return h.User })
					want := q.brute(sets, o, func(s *PermissionSet) bool { return s.CanAccess(typ, res) })
					q.same(where, fmt.Sprintf("WhoCanAccess(%s, %s, %s)", o, typ, res), got, want)
					for _, h := range hs {
						e := sets[Key{o, h.User}].ExplainAccess(typ, res)
						if h.GrantID != e.GrantID || h.RoleID != e.RoleID || h.RoleName != e.RoleName {
							q.differ("%s: WhoCanAccess(%s, %s, %s) %+v; ExplainAccess %+v", where, o, typ, res, h, e)
						}
					}
				}
			}
		}

		// A user's organizations and the user-wide answer.
		for _, u := range append(slices.Clone(d.users), "user-none") {
			var ua UserActive
			uos := pages(t, func(c string) (Page[UserOrg], error) {
				p, a, err := d.store.UserOrgs(ctx, u, withCursor(opts, c))
				ua = a
				return p, err
			})
			byOrg := map[string]UserOrg{}
			for _, uo := range uos {
				byOrg[uo.Org] = uo
			}
			anyActive := false
			for _, o := range orgs {
				s, ok := sets[Key{o, u}]
				if !ok {
					s = nil // user-none: no membership anywhere
				}
				uo, listed := byOrg[o]
				q.compared++
				if listed != (s.Status() != StatusNone) || (listed && (uo.Status != s.Status() || uo.Active != s.Active())) {
					q.differ("%s: UserOrgs(%s) %s: listed %v %+v; Load %s %v", where, u, o, listed, uo, s.Status(), s.Active())
				}
				anyActive = anyActive || s.Active()
			}
			wide, err := d.store.LoadUserActive(ctx, u, at)
			if err != nil {
				t.Fatal(err)
			}
			q.compared++
			if ua != wide || ua.Active != anyActive {
				q.differ("%s: UserOrgs(%s) user-wide %+v; LoadUserActive %+v, any active org %v", where, u, ua, wide, anyActive)
			}
		}
	}
	q.checkRolesAndGrants()
}

// checkRolesAndGrants compares ListRoles, RoleByName and ListGrants with
// plain SQL over the tables (roles and grants have no time).
func (q *queryCheck) checkRolesAndGrants() {
	t, d := q.t, q.d
	ctx := context.Background()
	opts := ListOptions{Limit: propPage}
	for _, o := range append(slices.Clone(d.orgs), "org-none", "") {
		roles := pages(t, func(c string) (Page[RoleInfo], error) { return d.store.ListRoles(ctx, o, withCursor(opts, c)) })
		var got []int64
		for _, r := range roles {
			got = append(got, r.ID)
			want := queryStrings(t, d.pool, `SELECT codename FROM orgperm.role_permissions WHERE role_id = $1 ORDER BY codename COLLATE "C"`, r.ID)
			q.compared++
			if !slices.Equal(r.Codenames, want) && len(r.Codenames)+len(want) > 0 {
				q.differ("ListRoles(%s): role %d codenames %v, reference %v", o, r.ID, r.Codenames, want)
			}
			if r.Org != d.roleOrg[r.ID] {
				q.differ("ListRoles(%s): role %d org %q, reference %q", o, r.ID, r.Org, d.roleOrg[r.ID])
			}
			byName, err := d.store.RoleByName(ctx, o, r.Name)
			if err != nil || byName.ID != r.ID {
				q.differ("RoleByName(%s, %s) = %+v, %v; want role %d", o, r.Name, byName, err, r.ID)
			}
		}
		var want []int64
		for id, org := range d.roleOrg {
			if org == "" || org == o {
				want = append(want, id)
			}
		}
		slices.Sort(want)
		q.compared++
		if !slices.Equal(got, want) {
			q.differ("ListRoles(%s) = %v, reference %v", o, got, want)
		}
	}

	ids := func(gs []Grant) []string {
		var out []string
		for _, g := range gs {
			out = append(out, fmt.Sprint(g.ID))
		}
		return out
	}
	for _, o := range d.orgs {
		var queries []GrantQuery
		queries = append(queries, GrantQuery{})
		for _, u := range d.users[:3] {
			queries = append(queries, GrantQuery{User: u})
		}
		for id := range d.roleOrg {
			queries = append(queries, GrantQuery{RoleID: id})
		}
		for _, typ := range propTypes {
			queries = append(queries, GrantQuery{ResourceType: typ}, GrantQuery{ResourceType: typ, ResourceID: "r1"},
				GrantQuery{ResourceType: typ, ResourceID: "r2", User: d.users[0]})
		}
		for _, gq := range queries {
			got := ids(pages(t, func(c string) (Page[Grant], error) {
				gq.ListOptions = withCursor(opts, c)
				return d.store.ListGrants(ctx, o, gq)
			}))
			want := queryStrings(t, d.pool, `
				SELECT id::text FROM orgperm.data_access
				WHERE org_id = $1 AND ($2 = '' OR user_id = $2) AND ($3 = 0 OR role_id = $3)
				  AND ($4 = '' OR resource_type = $4) AND ($5 = '' OR resource_id = $5 OR resource_id IS NULL)
				ORDER BY data_access.id`, o, gq.User, gq.RoleID, gq.ResourceType, gq.ResourceID)
			q.compared++
			if !slices.Equal(got, want) {
				q.differ("ListGrants(%s, %+v) = %v, reference %v", o, gq, got, want)
			}
		}
	}
}

// brute returns the users of org whose set satisfies ok, sorted.
func (q *queryCheck) brute(sets map[Key]*PermissionSet, org string, ok func(*PermissionSet) bool) []string {
	var out []string
	for _, u := range q.d.users {
		if ok(sets[Key{org, u}]) {
			out = append(out, u)
		}
	}
	return out
}

func (q *queryCheck) same(where, what string, got, want []string) {
	q.t.Helper()
	q.compared++
	if !slices.Equal(got, want) {
		q.differ("%s: %s = %v, check API %v", where, what, got, want)
	}
}

func withCursor(o ListOptions, c string) ListOptions {
	o.Cursor = c
	return o
}

// userSet returns the keys of items, sorted (lists are sorted by the
// database's collation; the comparison does not depend on it).
func userSet[T any](items []T, key func(T) string) []string {
	out := make([]string, 0, len(items))
	for _, it := range items {
		out = append(out, key(it))
	}
	slices.Sort(out)
	if len(out) == 0 {
		return nil
	}
	return out
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
