package membership

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

var update = flag.Bool("update-json-golden", false, "rewrite testdata/permset.golden.json")

func ptr[T any](v T) *T { return &v }

// goldenSet is a set built without a database, from what loadSQL returns.
func goldenSet() *PermissionSet {
	at := time.Date(2030, 1, 1, 12, 0, 0, 500, time.UTC)
	until := time.Date(2030, 6, 1, 0, 0, 0, 0, time.UTC)
	elevated := time.Date(2030, 1, 1, 13, 0, 0, 0, time.UTC)
	ended := time.Date(2030, 1, 1, 11, 0, 0, 0, time.UTC)
	ts := func(t time.Time) pgtype.Timestamptz { return pgtype.Timestamptz{Time: t, Valid: true} }
	return build("acme", "alice", &rawSet{
		at:         at,
		status:     ptr("active"),
		until:      ts(until),
		roleIDs:    []int64{1, 7, 9, 12},
		roleNames:  []string{"viewer", "accountant", "temp admin", "old role"},
		roleSystem: []bool{true, false, false, false},
		roleUntil:  []pgtype.Timestamptz{{}, {}, ts(elevated), ts(ended)},
		permRole:   []int64{7, 1, 7, 9, 12},
		permCode:   []string{"billing.view_invoice", "billing.view_invoice", "billing.edit_invoice", "users.manage_user", "reports.view_report"},
		grantID:    []int64{30, 31, 32, 33, 34},
		grantRole:  []*int64{nil, ptr[int64](7), nil, ptr[int64](9), ptr[int64](12)},
		grantType:  []string{"invoice", "invoice", "invoice", "report", "customer"},
		grantRes:   []string{"inv-2", "inv-10", "inv-2", "", ""},
	})
}

func TestJSONGolden(t *testing.T) {
	t.Parallel()
	s := goldenSet()
	got, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "permset.golden.json")
	if *update {
		if err := os.WriteFile(path, append(got, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(append(got, '\n'), want) {
		t.Errorf("JSON changed (go test -run TestJSONGolden -update-json-golden if intended):\n%s\nwant:\n%s", got, want)
	}

	var d PermissionSet
	if err := json.Unmarshal(want, &d); err != nil {
		t.Fatal(err)
	}
	again, _ := json.MarshalIndent(&d, "", "  ")
	if !bytes.Equal(again, got) {
		t.Errorf("round trip changed the JSON:\n%s", again)
	}
	if !d.ValidUntil().Equal(s.ValidUntil()) || !d.ComputedAt().Equal(s.ComputedAt()) {
		t.Errorf("round trip changed the times: %v %v", d.ValidUntil(), d.ComputedAt())
	}
	// Decoding into a set in use is refused.
	if err := json.Unmarshal(want, &d); err == nil {
		t.Error("UnmarshalJSON into a set in use succeeded")
	}
}

func TestGoldenSetSemantics(t *testing.T) {
	t.Parallel()
	s := goldenSet()
	if !s.ValidUntil().Equal(time.Date(2030, 1, 1, 13, 0, 0, 0, time.UTC)) {
		t.Errorf("ValidUntil = %v", s.ValidUntil())
	}
	if d := s.Explain("billing.view_invoice"); d.RoleID != 1 || d.RoleName != "viewer" {
		t.Errorf("lowest role ID does not win: %+v", d)
	}
	if d := s.Explain("reports.view_report"); d.Reason != ReasonRoleExpired || d.RoleID != 12 {
		t.Errorf("Explain of an expired role's codename = %+v", d)
	}
	if d := s.ExplainAccess("invoice", "inv-2"); d.GrantID != 30 {
		t.Errorf("lowest grant ID does not win: %+v", d)
	}
	if d := s.ExplainAccess("customer", "c"); d.Reason != ReasonRoleExpired || d.GrantID != 34 || d.RoleName != "old role" {
		t.Errorf("ExplainAccess through an expired role = %+v", d)
	}
	if all, ids := s.AccessibleIDs("invoice"); all || strings.Join(ids, ",") != "inv-10,inv-2" {
		t.Errorf("AccessibleIDs = %v %v (byte order expected)", all, ids)
	}
}

func TestUnmarshalRejects(t *testing.T) {
	t.Parallel()
	base := `"org":"acme","user":"alice","computed_at":"2030-01-01T00:00:00Z","window":{"from":null,"until":null}`
	for name, doc := range map[string]string{
		"not JSON":               `{`,
		"bad org":                `{"org":"","user":"alice","computed_at":"2030-01-01T00:00:00Z"}`,
		"bad status":             `{` + base + `,"status":"boss","active":false}`,
		"no computed_at":         `{"org":"acme","user":"alice","status":"active","active":true}`,
		"active without status":  `{` + base + `,"status":"","active":true}`,
		"inactive with a grant":  `{` + base + `,"status":"suspended","active":false,"permissions":["a.b"]}`,
		"bad codename":           `{` + base + `,"status":"active","active":true,"permissions":["A"]}`,
		"bad resource type":      `{` + base + `,"status":"active","active":true,"data_access":{"X":{"all":true}}}`,
		"window after the fact":  `{"org":"acme","user":"alice","computed_at":"2030-01-01T00:00:00Z","window":{"from":null,"until":"2029-01-01T00:00:00Z"},"status":"active","active":true}`,
		"window without members": `{"org":"acme","user":"alice","computed_at":"2030-01-01T00:00:00Z","window":{"from":"2029-01-01T00:00:00Z","until":null},"status":"","active":false}`,
	} {
		var s PermissionSet
		if err := json.Unmarshal([]byte(doc), &s); err == nil {
			t.Errorf("%s: accepted %s", name, doc)
		}
	}
}
