package membership

import (
	"context"
	"testing"
	"time"

	"github.com/orgperm/orgperm/pkg/pgtest"
)

// TestUserActiveSemantics is the table test of the seed's
// user_has_active_membership: true when the user has at least one active
// membership inside its window, in any org; ValidUntil is the next boundary.
func TestUserActiveSemantics(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	ctx := context.Background()
	from, until := t0.Add(time.Hour), t0.Add(2*time.Hour)
	if _, err := pool.Exec(ctx, `
		INSERT INTO orgperm.memberships (org_id, user_id, status, valid_from, valid_until) VALUES
			('acme', 'invited', 'invited', NULL, NULL),
			('acme', 'suspended', 'suspended', NULL, NULL),
			('acme', 'revoked', 'revoked', NULL, NULL),
			('acme', 'window', 'active', $1, $2),
			('acme', 'several', 'suspended', NULL, NULL),
			('globex', 'several', 'revoked', NULL, NULL),
			('initech', 'several', 'active', NULL, $2),
			('acme', 'elsewhere', 'invited', NULL, NULL),
			('globex', 'elsewhere', 'active', $1, NULL)`, from, until); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name       string
		user       string
		at         time.Time
		active     bool
		validUntil time.Time
	}{
		{"no membership", "nobody", t0, false, time.Time{}},
		{"only invited", "invited", t0, false, time.Time{}},
		{"only suspended", "suspended", t0, false, time.Time{}},
		{"only revoked", "revoked", t0, false, time.Time{}},
		{"before its window", "window", t0, false, from},
		{"exactly at valid_from", "window", from, true, until},
		{"inside its window", "window", from.Add(time.Minute), true, until},
		{"exactly at valid_until", "window", until, false, time.Time{}},
		{"active in one org of several", "several", t0, true, until},
		{"several, after the active one ended", "several", until, false, time.Time{}},
		{"inactive here, active elsewhere later", "elsewhere", t0, false, from},
		{"inactive here, active elsewhere now", "elsewhere", from, true, time.Time{}},
	}
	store := NewStore(pool)
	for _, tc := range cases {
		ua, err := store.LoadUserActive(ctx, tc.user, tc.at)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if ua.Active != tc.active || !ua.ValidUntil.Equal(tc.validUntil) {
			t.Errorf("%s: LoadUserActive(%s, %v) = %v until %v; want %v until %v",
				tc.name, tc.user, tc.at, ua.Active, ua.ValidUntil, tc.active, tc.validUntil)
		}
	}
}
