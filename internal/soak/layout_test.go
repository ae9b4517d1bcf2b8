package soak

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/orgperm/orgperm/pkg/membership"
)

// testLayout has two orgs of two users; the roles of org o are 10*o+r+1.
func testLayout() *layout {
	l := newLayout(2, 2)
	for i := range l.roleIDs {
		id := int64(10*(i/rolesPerOrg) + i%rolesPerOrg + 1)
		l.roleIDs[i] = id
		l.roleByID[id] = i
	}
	return l
}

// state is what a fabricated permission set of key (0, 1) shows.
type state struct {
	mem, assign, grant int64
	names, perms       [rolesPerOrg]int64
	status             membership.Status // "" means memberStatus(mem)
	untils             map[int]int64     // assignment versions per role index, overriding assign
	roles              uint8             // 0 means assignedRoles(assign)
	extraPerm          string
}

// fabricate builds the permission set a read of key (0, 1) at st would
// return, through the set's documented JSON form.
func fabricate(t *testing.T, l *layout, st state) *membership.PermissionSet {
	t.Helper()
	status := st.status
	if status == "" {
		status = memberStatus(st.mem)
	}
	active := status == membership.StatusActive
	at := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	j := map[string]any{
		"org": l.orgID(0), "user": l.userID(0, 1), "status": status, "active": active,
		"window":      map[string]any{"from": nil, "until": versionTime(st.mem)},
		"roles":       []any{},
		"permissions": []string{},
		"data_access": map[string]any{},
		"valid_until": nil,
		"computed_at": at,
	}
	if active {
		mask := st.roles
		if mask == 0 {
			mask = assignedRoles(st.assign)
		}
		var roles []any
		var perms []string
		for r := range rolesPerOrg {
			if mask&(1<<r) == 0 {
				continue
			}
			until := st.assign
			if v, ok := st.untils[r]; ok {
				until = v
			}
			roles = append(roles, map[string]any{"id": l.roleIDs[r], "name": roleName(r, st.names[r]), "system": false, "valid_until": versionTime(until)})
			perms = append(perms, rolePermissions(r, st.perms[r])...)
		}
		if st.extraPerm != "" {
			perms = append(perms, st.extraPerm)
		}
		j["roles"], j["permissions"] = roles, perms
		j["data_access"] = map[string]any{docType: map[string]any{"all": false, "ids": []string{grantID(st.grant)}}}
	}
	b, err := json.Marshal(j)
	if err != nil {
		t.Fatal(err)
	}
	s := new(membership.PermissionSet)
	if err := json.Unmarshal(b, s); err != nil {
		t.Fatalf("fabricated set: %v\n%s", err, b)
	}
	return s
}

// base is an active state of key (0, 1) holding roles 0 and 2.
var base = state{mem: 9, assign: 4, grant: 12, names: [rolesPerOrg]int64{3, 7, 8}, perms: [rolesPerOrg]int64{5, 6, 0}}

// lowOf returns watermark versions equal to what st shows, for key (0, 1).
func lowOf(l *layout, st state) []int64 {
	low := make([]int64, l.components())
	k := l.key(0, 1)
	low[l.memComp(k)], low[l.assignComp(k)], low[l.grantComp(k)] = st.mem, st.assign, st.grant
	for r := range rolesPerOrg {
		low[l.nameComp(0, r)], low[l.permComp(0, r)] = st.names[r], st.perms[r]
	}
	return low
}

func noLimit(int) int64 { return 1 << 62 }

func TestDecodeRecoversEveryVersion(t *testing.T) {
	t.Parallel()
	l := testLayout()
	saw, err := l.decode(0, 1, fabricate(t, l, base))
	if err != nil {
		t.Fatal(err)
	}
	k := l.key(0, 1)
	want := []seen{
		{l.memComp(k), 9}, {l.nameComp(0, 0), 3}, {l.nameComp(0, 2), 8}, {l.assignComp(k), 4},
		{l.permComp(0, 0), 5}, {l.permComp(0, 2), 0}, {l.grantComp(k), 12},
	}
	if !slices.Equal(saw, want) {
		t.Fatalf("decode = %v, want %v", saw, want)
	}

	// An inactive set shows its membership only.
	st := base
	st.mem = 10 // suspended
	saw, err = l.decode(0, 1, fabricate(t, l, st))
	if err != nil || !slices.Equal(saw, []seen{{l.memComp(k), 10}}) {
		t.Fatalf("decode of a suspended member = %v, %v", saw, err)
	}
}

// TestJudgeCountsOlderVersionsAsStale proves the checker can fail: a read
// showing any component one version below the watermark is stale.
func TestJudgeCountsOlderVersionsAsStale(t *testing.T) {
	t.Parallel()
	l := testLayout()
	saw, err := l.decode(0, 1, fabricate(t, l, base))
	if err != nil {
		t.Fatal(err)
	}
	if stale, err := l.judge(saw, lowOf(l, base), noLimit); err != nil || stale != nil {
		t.Fatalf("a read at the watermark: stale %v, %v; want neither", stale, err)
	}
	for _, s := range saw {
		low := lowOf(l, base)
		low[s.comp]++ // the watermark is one write ahead on this component
		stale, err := l.judge(saw, low, noLimit)
		if err != nil || len(stale) != 1 || !strings.Contains(stale[0], l.compName(s.comp)) {
			t.Errorf("watermark ahead on %s: stale %v, %v; want it stale", l.compName(s.comp), stale, err)
		}
	}
	// A component an inactive set does not show is never judged.
	st := base
	st.mem = 10
	saw, _ = l.decode(0, 1, fabricate(t, l, st))
	low := lowOf(l, st)
	low[l.grantComp(l.key(0, 1))] += 100
	if stale, err := l.judge(saw, low, noLimit); err != nil || stale != nil {
		t.Errorf("inactive set judged on what it does not show: %v, %v", stale, err)
	}
	// A version above the highest begun was never written.
	if _, err := l.judge(saw, lowOf(l, st), func(int) int64 { return 9 }); err == nil {
		t.Error("a version from the future was not reported")
	}
}

func TestDecodeRejectsInconsistentSets(t *testing.T) {
	t.Parallel()
	l := testLayout()
	cases := map[string]func(*state){
		"status not that of the version":  func(st *state) { st.status = membership.StatusSuspended },
		"roles not those of the version":  func(st *state) { st.roles = 0b011 },
		"assignments of two versions":     func(st *state) { st.untils = map[int]int64{2: 5} },
		"permission of a role not held":   func(st *state) { st.extraPerm = permCodename(1, 0) },
		"permission outside the encoding": func(st *state) { st.extraPerm = "soak.other" },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			st := base
			mutate(&st)
			if saw, err := l.decode(0, 1, fabricate(t, l, st)); err == nil {
				t.Fatalf("decode = %v, want an error", saw)
			}
		})
	}
}

func TestJudgeUserActive(t *testing.T) {
	t.Parallel()
	l := testLayout()
	k := l.key(0, 1)
	cases := []struct {
		lo, hi int64
		active bool
		stale  bool
	}{
		{9, 9, true, false},
		{9, 9, false, true},  // version 9 is active
		{10, 10, true, true}, // version 10 is suspended
		{10, 10, false, false},
		{9, 10, false, false}, // a write to 10 was racing with the read
		{11, 16, false, true}, // no suspended version from 11 to 16
		{11, 17, false, false},
	}
	for _, c := range cases {
		low := make([]int64, l.components())
		low[l.memComp(k)] = c.lo
		got := l.judgeUserActive(k, c.active, low, func(int) int64 { return c.hi })
		if (got != "") != c.stale {
			t.Errorf("[%d, %d] answer %v: stale %q, want stale %v", c.lo, c.hi, c.active, got, c.stale)
		}
	}
}
