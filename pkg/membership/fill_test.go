package membership

import (
	"encoding/json"
	"testing"
)

// TestBuildRoleOrder: loadSQL does not sort the held roles (an aggregate's
// ORDER BY costs a sort per column); build sorts them, so a set is the same
// whatever order the rows came in, down to which role a shared codename or
// grant is credited to (the lowest ID).
func TestBuildRoleOrder(t *testing.T) {
	t.Parallel()
	perms := map[int64][]string{1: {"order.view", "order.edit"}, 2: {"order.view"}, 3: {"order.edit", "order.delete"}}
	grants := []*int64{ptr[int64](3), ptr[int64](1), nil}
	res := []string{"r1", "r1", "own"}
	want, err := json.Marshal(build("o", "u", memberRow([]int64{1, 2, 3}, perms, grants, res)))
	if err != nil {
		t.Fatal(err)
	}
	for _, order := range [][]int64{{3, 2, 1}, {2, 3, 1}, {1, 3, 2}} {
		got, err := json.Marshal(build("o", "u", memberRow(order, perms, grants, res)))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("roles in order %v:\n got %s\nwant %s", order, got, want)
		}
	}
}
