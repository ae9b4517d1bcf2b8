package membership

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/jackc/pgx/v5/pgtype"
)

// memberRow is a loadSQL row for a member holding roleIDs (each granting
// the codenames of perms[id]) with the record grants of grants (to the user
// when the grant's role is nil).
func memberRow(roleIDs []int64, perms map[int64][]string, grantRole []*int64, grantRes []string) *rawSet {
	r := &rawSet{at: time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC), status: ptr("active")}
	for _, id := range roleIDs {
		r.roleIDs = append(r.roleIDs, id)
		r.roleNames = append(r.roleNames, fmt.Sprint("role ", id))
		r.roleSystem = append(r.roleSystem, false)
		r.roleUntil = append(r.roleUntil, pgtype.Timestamptz{})
		for _, c := range perms[id] {
			r.permRole = append(r.permRole, id)
			r.permCode = append(r.permCode, c)
		}
	}
	for i, res := range grantRes {
		r.grantID = append(r.grantID, int64(100+i))
		r.grantRole = append(r.grantRole, grantRole[i])
		r.grantType = append(r.grantType, "doc")
		r.grantRes = append(r.grantRes, res)
	}
	return r
}

// TestSetsShareEqualParts checks the hash-consing of permset_compact.go:
// members with equal parts share one copy, and a part that differs (a
// grant to the user alone) is not shared.
func TestSetsShareEqualParts(t *testing.T) {
	t.Parallel()
	perms := map[int64][]string{1: {"share.view_a", "share.edit_a"}, 2: {"share.view_b"}}
	viaRole := []*int64{ptr[int64](1)}
	a := build("o", "alice", memberRow([]int64{1, 2}, perms, viaRole, []string{"r1"}))
	b := build("o", "bob", memberRow([]int64{1, 2}, perms, viaRole, []string{"r1"}))
	c := build("o", "carol", memberRow([]int64{1, 2}, perms, []*int64{ptr[int64](1), nil}, []string{"r1", "carol-own"}))
	d := build("o", "dave", memberRow([]int64{2}, perms, nil, nil))

	if a.perms != b.perms || a.perms != c.perms {
		t.Error("members with the same roles do not share their permissions")
	}
	if a.perms == d.perms {
		t.Error("members with different permissions share them")
	}
	if !slices.Equal(a.roles, b.roles) {
		t.Error("members with the same roles do not share them")
	}
	if a.access.roles != b.access.roles || a.access.roles != c.access.roles {
		t.Error("the data access of equal roles is not shared")
	}
	if c.access.own == (access{}) || a.access.own != (access{}) {
		t.Error("a grant to the user alone is not the set's own")
	}
	// Shared or not, every answer is the set's own.
	for _, s := range []*PermissionSet{a, b, c} {
		if !s.Has("share.edit_a") || s.Has("share.nope") || !s.CanAccess("doc", "r1") {
			t.Errorf("%s: wrong answers", s.User())
		}
	}
	if !c.CanAccess("doc", "carol-own") || a.CanAccess("doc", "carol-own") {
		t.Error("a grant to carol alone leaks or is lost")
	}
	if d.Has("share.edit_a") || !d.Has("share.view_b") || d.CanAccess("doc", "r1") {
		t.Error("dave's answers are wrong")
	}
	if ex := c.ExplainAccess("doc", "carol-own"); !ex.Allowed || ex.GrantID != 101 || ex.RoleName != "" {
		t.Errorf("ExplainAccess of a grant to the user = %+v", ex)
	}
	if ex := a.Explain("share.view_b"); ex.RoleID != 2 {
		t.Errorf("Explain = %+v, want role 2", ex)
	}
}

// TestDecodedCodenamesStayOutOfTheCatalog checks that a set decoded from
// JSON (untrusted) never grows the process-wide catalog, and still answers
// for codenames the catalog does not know.
func TestDecodedCodenamesStayOutOfTheCatalog(t *testing.T) {
	t.Parallel()
	known := build("o", "u", memberRow([]int64{1}, map[int64][]string{1: {"decoded.known"}}, nil, nil))
	if !known.Has("decoded.known") {
		t.Fatal("built set lacks its codename")
	}
	doc := `{"org":"o","user":"u","status":"active","active":true,"window":{"from":null,"until":null},
		"roles":[],"permissions":["decoded.zz_unknown","decoded.known","decoded.aa_unknown"],"data_access":{},
		"valid_until":null,"computed_at":"2030-01-01T00:00:00Z"}`
	var s PermissionSet
	if err := json.Unmarshal([]byte(doc), &s); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"decoded.zz_unknown", "decoded.aa_unknown"} {
		if _, ok := codes.lookup(c); ok {
			t.Errorf("decoding added %q to the catalog", c)
		}
		if !s.Has(c) || !s.Explain(c).Allowed {
			t.Errorf("decoded set does not grant %q", c)
		}
	}
	if !s.Has("decoded.known") || s.Has("decoded.other") || s.Has("decoded") {
		t.Error("decoded set answers wrong")
	}
	want := []string{"decoded.aa_unknown", "decoded.known", "decoded.zz_unknown"}
	if got := s.Permissions(); !slices.Equal(got, want) {
		t.Errorf("Permissions = %v, want %v", got, want)
	}
}

// TestHasDoesNotAllocate checks Has, CanAccess and the catalog lookup on
// sets built from the database and decoded from JSON.
func TestHasDoesNotAllocate(t *testing.T) {
	s := goldenSet()
	allocs := testing.AllocsPerRun(100, func() {
		if !s.Has("billing.view_invoice") || s.Has("nope.nope") || !s.CanAccess("invoice", "inv-2") || s.CanAccess("invoice", "x") {
			t.Fatal("wrong answer")
		}
	})
	if allocs != 0 {
		t.Errorf("Has and CanAccess allocate %v times, want 0", allocs)
	}
}

// TestMemoComparesContents checks that the catalog's lookup memo, keyed by
// the address of the caller's string, answers by content: a string whose
// bytes change under it (an unsafe conversion of a reused buffer) gets the
// ID of what it says now.
func TestMemoComparesContents(t *testing.T) {
	t.Parallel()
	s := build("o", "u", memberRow([]int64{1}, map[int64][]string{1: {"memo.aaa"}}, nil, nil))
	_ = build("o", "v", memberRow([]int64{1}, map[int64][]string{1: {"memo.bbb"}}, nil, nil)) // in the catalog, not in s
	buf := []byte("memo.aaa")
	name := unsafe.String(&buf[0], len(buf))
	for range 3 {
		if !s.Has(name) {
			t.Fatal("Has(memo.aaa) = false")
		}
	}
	copy(buf, "memo.bbb")
	if s.Has(name) {
		t.Fatal("Has answered for the string's old contents: the memo compares addresses")
	}
}

// TestCacheEntryAnswersAsTheSet checks that HasPermission's bit test on
// the cache entry (cached.has, which does not load the set) answers as the
// set's Has for sets built from the database, decoded from JSON (codenames
// outside the catalog), inactive (which hold no permissions), empty and
// absent.
func TestCacheEntryAnswersAsTheSet(t *testing.T) {
	t.Parallel()
	perms := map[int64][]string{1: {"entry.view", "entry.edit"}, 2: {"entry.other"}}
	suspended := memberRow([]int64{1}, perms, nil, nil)
	suspended.status = ptr("suspended")
	var decoded PermissionSet
	doc := `{"org":"o","user":"u","status":"active","active":true,"window":{"from":null,"until":null},
		"roles":[],"permissions":["entry.view","entry.zz_unknown"],"data_access":{},
		"valid_until":null,"computed_at":"2030-01-01T00:00:00Z"}`
	if err := json.Unmarshal([]byte(doc), &decoded); err != nil {
		t.Fatal(err)
	}
	sets := map[string]*PermissionSet{
		"two roles": build("o", "a", memberRow([]int64{1, 2}, perms, nil, nil)),
		"one role":  build("o", "b", memberRow([]int64{2}, perms, nil, nil)),
		"no roles":  build("o", "c", memberRow(nil, perms, nil, nil)),
		"suspended": build("o", "d", suspended),
		"decoded":   &decoded,
	}
	codenames := []string{"entry.view", "entry.edit", "entry.other", "entry.zz_unknown", "entry.nope", ""}
	for name, s := range sets {
		v, _ := setEntry(s)
		for _, c := range codenames {
			if got, want := v.has(c), s.Has(c); got != want {
				t.Errorf("%s: the cache entry answers %q %v, the set %v", name, c, got, want)
			}
		}
	}
	if !sets["two roles"].Has("entry.edit") || sets["suspended"].Has("entry.view") || !sets["decoded"].Has("entry.zz_unknown") {
		t.Error("the sets themselves answer wrong: the comparison above proves nothing")
	}
	for _, c := range codenames {
		if (cached{}).has(c) {
			t.Errorf("an empty entry grants %q", c)
		}
	}
}
