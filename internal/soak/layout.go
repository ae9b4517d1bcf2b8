package soak

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/orgperm/orgperm/pkg/membership"
)

// rolesPerOrg is the number of roles each organization has. Assignment sets
// are the non-empty subsets of them, so it is small.
const rolesPerOrg = 3

// permBits is the number of bits of a role's permission version that its
// permission set encodes, one codename per bit.
const permBits = 32

// docType is the resource type of the user data grants.
const docType = "soak_doc"

// epoch is version 0 of every version carried by a timestamp: version v is
// epoch + v microseconds (PostgreSQL keeps microseconds exactly). It is far
// enough ahead that no membership window or role assignment ever ends
// during a soak.
var epoch = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)

func versionTime(v int64) time.Time { return epoch.Add(time.Duration(v) * time.Microsecond) }

func timeVersion(t time.Time) (int64, bool) {
	d := t.Sub(epoch)
	if d < 0 || d%time.Microsecond != 0 {
		return 0, false
	}
	return int64(d / time.Microsecond), true
}

// memberStatus is the membership status of membership version v: every
// seventh version suspends the member (so that reads see inactive sets and
// user-wide answers flip), the others are active.
func memberStatus(v int64) membership.Status {
	if v%7 == 3 {
		return membership.StatusSuspended
	}
	return membership.StatusActive
}

// assignedRoles is the set of role indexes held at assignment version v, as
// a bit mask: never empty, and different from one version to the next.
func assignedRoles(v int64) uint8 { return uint8(v%7) + 1 }

// rolePermissions is the permission set of role index r at permission
// version v: one codename per set bit of v.
func rolePermissions(r int, v int64) []string {
	var codes []string
	for b := range permBits {
		if v&(1<<b) != 0 {
			codes = append(codes, permCodename(r, b))
		}
	}
	return codes
}

func permCodename(r, bit int) string { return fmt.Sprintf("soak.r%d_b%d", r, bit) }

func roleName(r int, v int64) string { return fmt.Sprintf("r%d-v%d", r, v) }

func grantID(v int64) string { return "v" + strconv.FormatInt(v, 10) }

// layout names the data of a soak and numbers its components. A component
// is a piece of data written by exactly one writer, each write bumping its
// version:
//
//   - per (org, user) key: the membership row (version in valid_until,
//     status from memberStatus), the role assignment set (the set from
//     assignedRoles, every assignment's valid_until carrying the version)
//     and the user's data grants (one resource_id of docType, "v<version>");
//   - per role of an org: its name ("r<index>-v<version>") and its
//     permission set (bits of the version, see rolePermissions).
//
// Every component version is recoverable from a permission set that shows
// it (see decode); an inactive set shows only its membership.
type layout struct {
	orgs, users int
	// roleIDs[org*rolesPerOrg+r] is the orgperm.roles.id of role r of org;
	// roleByID is its inverse. Both are written once, by seed.
	roleIDs  []int64
	roleByID map[int64]int
}

func newLayout(orgs, users int) *layout {
	return &layout{orgs: orgs, users: users, roleIDs: make([]int64, orgs*rolesPerOrg), roleByID: map[int64]int{}}
}

func (l *layout) orgID(o int) string     { return "soak-o" + strconv.Itoa(o) }
func (l *layout) userID(o, u int) string { return fmt.Sprintf("soak-o%d-u%d", o, u) }
func (l *layout) keys() int              { return l.orgs * l.users }
func (l *layout) key(o, u int) int       { return o*l.users + u }

// components returns the number of components.
func (l *layout) components() int { return 3*l.keys() + 2*l.orgs*rolesPerOrg }

func (l *layout) memComp(k int) int    { return 3 * k }
func (l *layout) assignComp(k int) int { return 3*k + 1 }
func (l *layout) grantComp(k int) int  { return 3*k + 2 }
func (l *layout) nameComp(o, r int) int {
	return 3*l.keys() + 2*(o*rolesPerOrg+r)
}
func (l *layout) permComp(o, r int) int { return l.nameComp(o, r) + 1 }

// compName describes component c, for reports.
func (l *layout) compName(c int) string {
	if c < 3*l.keys() {
		k := c / 3
		o, u := k/l.users, k%l.users
		return fmt.Sprintf("%s of %s/%s", [...]string{"membership", "role assignments", "data grants"}[c%3], l.orgID(o), l.userID(o, u))
	}
	i := (c - 3*l.keys()) / 2
	o, r := i/rolesPerOrg, i%rolesPerOrg
	return fmt.Sprintf("role r%d %s of %s", r, [...]string{"name", "permissions"}[(c-3*l.keys())%2], l.orgID(o))
}

// seen is a component version recovered from a read.
type seen struct {
	comp    int
	version int64
}

// decode recovers the component versions a permission set of key (o, u)
// reflects. The set comes from one SQL statement, so it is one consistent
// snapshot of the database: anything that does not decode to a state some
// sequence of the writers' commits produced (a torn set, a role of another
// org, a version of the assignment set that disagrees with the roles held)
// is an error, counted as inconsistent rather than stale.
func (l *layout) decode(o, u int, s *membership.PermissionSet) ([]seen, error) {
	if s == nil {
		return nil, fmt.Errorf("nil set")
	}
	if s.Org() != l.orgID(o) || s.User() != l.userID(o, u) {
		return nil, fmt.Errorf("set of %s/%s read for %s/%s", s.Org(), s.User(), l.orgID(o), l.userID(o, u))
	}
	k := l.key(o, u)
	from, until := s.Window()
	mv, ok := timeVersion(until)
	if !ok || !from.IsZero() {
		return nil, fmt.Errorf("window [%v, %v) encodes no membership version", from, until)
	}
	if got, want := s.Status(), memberStatus(mv); got != want {
		return nil, fmt.Errorf("status %q at membership version %d, want %q", got, mv, want)
	}
	if s.Active() != (s.Status() == membership.StatusActive) {
		return nil, fmt.Errorf("active = %v with status %q and a window in 2100", s.Active(), s.Status())
	}
	out := []seen{{l.memComp(k), mv}}
	if !s.Active() {
		return out, nil // an inactive set shows nothing else
	}

	// Roles: their names, and the assignment version every assignment's
	// valid_until carries.
	roles := s.Roles()
	if len(roles) == 0 {
		return nil, fmt.Errorf("an active set holds no role; every assignment set is non-empty")
	}
	var (
		held uint8
		av   int64 = -1
	)
	for _, r := range roles {
		i, ok := l.roleByID[r.ID]
		if !ok || i/rolesPerOrg != o {
			return nil, fmt.Errorf("role %d (%q) is not a role of %s", r.ID, r.Name, l.orgID(o))
		}
		idx := i % rolesPerOrg
		prefix := fmt.Sprintf("r%d-v", idx)
		nv, err := strconv.ParseInt(strings.TrimPrefix(r.Name, prefix), 10, 64)
		if !strings.HasPrefix(r.Name, prefix) || err != nil || nv < 0 {
			return nil, fmt.Errorf("role %d is named %q, want %s<version>", r.ID, r.Name, prefix)
		}
		v, ok := timeVersion(r.ValidUntil)
		if !ok || (av >= 0 && v != av) {
			return nil, fmt.Errorf("assignment of role %d ends %v: no single assignment version", r.ID, r.ValidUntil)
		}
		av = v
		held |= 1 << idx
		out = append(out, seen{l.nameComp(o, idx), nv})
	}
	if want := assignedRoles(av); held != want {
		return nil, fmt.Errorf("roles %03b held at assignment version %d, want %03b", held, av, want)
	}
	out = append(out, seen{l.assignComp(k), av})

	// Permissions: the bits of each held role's permission version.
	var pv [rolesPerOrg]int64
	for _, c := range s.Permissions() {
		var r, b int
		if n, err := fmt.Sscanf(c, "soak.r%d_b%d", &r, &b); n != 2 || err != nil || r < 0 || r >= rolesPerOrg || b < 0 || b >= permBits || c != permCodename(r, b) {
			return nil, fmt.Errorf("unexpected permission %q", c)
		}
		if held&(1<<r) == 0 {
			return nil, fmt.Errorf("permission %q of role r%d, which is not held", c, r)
		}
		pv[r] |= 1 << b
	}
	for r := range rolesPerOrg {
		if held&(1<<r) != 0 {
			out = append(out, seen{l.permComp(o, r), pv[r]})
		}
	}

	// Data grants: exactly one ID, "v<version>".
	if types := s.ResourceTypes(); !slices.Equal(types, []string{docType}) {
		return nil, fmt.Errorf("resource types %v, want [%s]", types, docType)
	}
	all, ids := s.AccessibleIDs(docType)
	if all || len(ids) != 1 || !strings.HasPrefix(ids[0], "v") {
		return nil, fmt.Errorf("data access all=%v ids=%v, want one v<version>", all, ids)
	}
	gv, err := strconv.ParseInt(ids[0][1:], 10, 64)
	if err != nil || gv < 0 || ids[0] != grantID(gv) {
		return nil, fmt.Errorf("data access id %q encodes no version", ids[0])
	}
	out = append(out, seen{l.grantComp(k), gv})
	return out, nil
}

// judge compares what a read saw with its bounds. low is the watermark the
// reading instance had reached before the read began: a version below it
// is a stale read. high reports, for a component, the highest version any
// writer had begun by the time the read returned: a version above it was
// never written, which is inconsistent (a decoding bug or worse). It
// returns the stale components (nil if none) and an error if inconsistent.
func (l *layout) judge(saw []seen, low []int64, high func(comp int) int64) (stale []string, err error) {
	for _, s := range saw {
		if h := high(s.comp); s.version > h {
			return nil, fmt.Errorf("%s at version %d, but no writer has begun a version above %d", l.compName(s.comp), s.version, h)
		}
		if s.version < low[s.comp] {
			stale = append(stale, fmt.Sprintf("%s at version %d, below the watermark's %d", l.compName(s.comp), s.version, low[s.comp]))
		}
	}
	return stale, nil
}

// judgeUserActive checks a user-wide answer for the user of key k, who is
// a member of one org only: the answer must be the status of some
// membership version in [low, high], where low is the watermark's version
// and high the highest begun when the read returned. Otherwise the read
// missed the watermark's writes: it is stale.
func (l *layout) judgeUserActive(k int, active bool, low []int64, high func(comp int) int64) (stale string) {
	c := l.memComp(k)
	lo, hi := low[c], high(c)
	for v := lo; v <= hi && v < lo+7; v++ { // memberStatus has period 7
		if (memberStatus(v) == membership.StatusActive) == active {
			return ""
		}
	}
	return fmt.Sprintf("user-wide answer %v for %s matches no membership version in [%d, %d]", active, l.compName(c), lo, hi)
}

// grantsOf returns what a permission set grants: its codenames, and its
// data grants as "<type>:<id>"; nothing when it is inactive.
func grantsOf(s *membership.PermissionSet) map[string]bool {
	g := map[string]bool{}
	if s == nil || !s.Active() {
		return g
	}
	for _, c := range s.Permissions() {
		g[c] = true
	}
	for _, rt := range s.ResourceTypes() {
		all, ids := s.AccessibleIDs(rt)
		if all {
			g[rt+":*"] = true
		}
		for _, id := range ids {
			g[rt+":"+id] = true
		}
	}
	return g
}

// grantsAt returns what key (o, u) grants when each of its components is
// at version cur(component), in the form of grantsOf.
func (l *layout) grantsAt(o, u int, cur func(comp int) int64) map[string]bool {
	g := map[string]bool{}
	k := l.key(o, u)
	if memberStatus(cur(l.memComp(k))) != membership.StatusActive {
		return g
	}
	held := assignedRoles(cur(l.assignComp(k)))
	for r := range rolesPerOrg {
		if held&(1<<r) != 0 {
			for _, c := range rolePermissions(r, cur(l.permComp(o, r))) {
				g[c] = true
			}
		}
	}
	g[docType+":"+grantID(cur(l.grantComp(k)))] = true
	return g
}

// wrongly compares what a stale read granted (got) with what the data
// granted when the read began (want): allowed if it granted something the
// data no longer did, denied if it lacked something the data granted.
func wrongly(got, want map[string]bool) (allowed, denied bool) {
	for g := range got {
		if !want[g] {
			allowed = true
			break
		}
	}
	for g := range want {
		if !got[g] {
			denied = true
			break
		}
	}
	return allowed, denied
}
