package relay_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/orgperm/orgperm/pkg/pgtest"
	"github.com/orgperm/orgperm/pkg/relay"
)

// TestWaitVisible: the wal relay holds a batch back while one of its
// transactions is still running in a new snapshot, and lets it go once
// that transaction ends.
func TestWaitVisible(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	conn := connect(t, url)
	other := connect(t, url)
	tx, err := other.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var xid int64
	if err := tx.QueryRow(ctx, `SELECT pg_current_xact_id()::text::bigint`).Scan(&xid); err != nil {
		t.Fatal(err)
	}
	low := uint32(xid)

	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err = relay.WaitVisible(wctx, conn, []uint32{low - 1, low})
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiting on a running transaction: %v, want the deadline", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	// A new connection: the deadline above may have cut a query, and pgx
	// closes a connection whose query a context cancels.
	after := connect(t, url)
	wctx, cancel = context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := relay.WaitVisible(wctx, after, []uint32{low - 1, low}); err != nil {
		t.Fatalf("after the commit: %v", err)
	}
}

// TestScopeSetBounded: a source's scopes in one batch stay bounded: past
// MaxScopes members collapse to their orgs, and past MaxScopes orgs to
// everything, never to less than they name.
func TestScopeSetBounded(t *testing.T) {
	t.Parallel()
	var s relay.ScopeSet
	for i := range relay.MaxScopes {
		s.Member("o", fmt.Sprint("u", i))
	}
	if all, orgs, members := s.Counts(); all || orgs != 0 || members != relay.MaxScopes {
		t.Fatalf("at the bound: everything %v, %d orgs, %d members", all, orgs, members)
	}
	s.Member("p", "u")
	if all, orgs, members := s.Counts(); all || orgs != 2 || members != 0 {
		t.Fatalf("past the bound: everything %v, %d orgs, %d members; want orgs o and p", all, orgs, members)
	}
	s.Member("o", "again") // covered by org o
	if _, orgs, members := s.Counts(); orgs != 2 || members != 0 {
		t.Fatalf("a member of a collapsed org: %d orgs, %d members", orgs, members)
	}
	for i := range relay.MaxScopes {
		s.Org(fmt.Sprint("org", i))
	}
	if all, orgs, members := s.Counts(); !all || orgs != 0 || members != 0 {
		t.Fatalf("past the bound of orgs: everything %v, %d orgs, %d members", all, orgs, members)
	}
}
