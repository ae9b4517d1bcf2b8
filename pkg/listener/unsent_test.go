package listener

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orgperm/orgperm/pkg/pgtest"
)

// TestProofNotSent: a proof that cannot be sent because the pool is
// exhausted says nothing about the listening connection. The listener
// keeps it and leaves the Target alone (no unsync, no purge: its lease
// runs out), Sync fails at once with ErrProofNotSent instead of waiting
// out its context, and once the pool has a connection again a proof is
// sent unasked and comes back on the same connection.
func TestProofNotSent(t *testing.T) {
	t.Parallel()
	base := pgtest.NewPool(t)
	cfg := base.Config().Copy()
	cfg.MaxConns = 1
	ctx := context.Background()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	l, rt, h := setup(t, pool, Config{ProofTimeout: 300 * time.Millisecond})
	start(t, l, rt)
	proofs := rt.proofs.Load()

	held, err := pool.Acquire(ctx) // the pool's only connection
	if err != nil {
		t.Fatal(err)
	}
	release := sync.OnceFunc(held.Release)
	t.Cleanup(release) // before pool.Close, which waits for it
	l.RequestProof()
	for {
		if err := recv(t, h.proofs, "a failed proof"); errors.Is(err, ErrProofNotSent) {
			break
		}
	}
	sctx, cancel := context.WithTimeout(ctx, waitTimeout)
	err = l.Sync(sctx)
	cancel()
	if !errors.Is(err, ErrProofNotSent) {
		t.Fatalf("Sync while no proof can be sent = %v; want ErrProofNotSent at once", err)
	}
	if st := l.Stats(); st.State != Synced || st.Reconnects != 0 || st.ProofFailures == 0 {
		t.Fatalf("%v, %d reconnects, %d proof failures; want synced, 0, some", st.State, st.Reconnects, st.ProofFailures)
	}

	release()
	for rt.proofs.Load() == proofs {
		if err := recv(t, h.proofs, "a proof once the pool is free"); err != nil && !errors.Is(err, ErrProofNotSent) {
			t.Fatalf("a proof failed otherwise: %v", err)
		}
	}
	if err := l.Sync(ctx); err != nil {
		t.Fatalf("Sync once the pool is free: %v", err)
	}
	select {
	case e := <-rt.events:
		t.Fatalf("the Target got %s; want nothing (no unsync, no purge)", e.kind)
	default:
	}
	if st := l.Stats(); st.State != Synced || st.Reconnects != 0 {
		t.Fatalf("%v, %d reconnects; want synced on the same connection", st.State, st.Reconnects)
	}
}
