package integration_test

import (
	"context"
	"testing"

	"github.com/orgperm/orgperm/pkg/membership"
	"github.com/orgperm/orgperm/pkg/pgtest"
)

// TestFullyConsistent: a FullyConsistent context reads straight from the
// database, also inside a request memo, without waiting for the write's
// notification, and neither reads nor fills the cache (which is what tells
// it apart from a cached read that happened to be fresh).
func TestFullyConsistent(t *testing.T) {
	t.Parallel()
	w := newWorld(t, pgtest.Shared(t))
	in := newInstance(t, w.pool, membership.Config{})
	ctx := context.Background()
	if ok, err := in.c.HasPermission(ctx, "o1", "u2", "billing.edit_invoice"); err != nil || !ok {
		t.Fatalf("before: %v, %v", ok, err)
	}
	before := in.c.Stats().Cache

	if _, err := rawConn(t, w.url).Exec(ctx, `UPDATE orgperm.memberships SET status = 'suspended' WHERE org_id = 'o1' AND user_id = 'u2'`); err != nil {
		t.Fatal(err)
	}
	for _, cctx := range []context.Context{
		membership.FullyConsistent(ctx),
		membership.WithRequestCache(membership.FullyConsistent(ctx)),
		membership.FullyConsistent(membership.WithRequestCache(ctx)),
	} {
		ok, err := in.c.HasPermission(cctx, "o1", "u2", "billing.edit_invoice")
		if err != nil || ok {
			t.Errorf("fully consistent read after the write: %v, %v; want false", ok, err)
		}
		active, err := in.c.UserHasActiveMembership(cctx, "u2")
		if err != nil || active {
			t.Errorf("fully consistent user-wide read after the write: %v, %v; want false", active, err)
		}
	}
	after := in.c.Stats().Cache
	if after.Hits != before.Hits || after.Misses != before.Misses || after.Fills != before.Fills {
		t.Errorf("fully consistent reads touched the cache: before %+v, after %+v", before, after)
	}
}
