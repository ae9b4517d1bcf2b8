package membership

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orgperm/orgperm/pkg/listener"
	"github.com/orgperm/orgperm/pkg/pgtest"
)

// refuseProofs is a tracer that, while on, fails every proof statement
// before it is sent (a cancelled context): the pool's trouble, not the
// listening connection's.
type refuseProofs struct{ on *atomic.Bool }

var errRefused = errors.New("the test refuses proofs")

func (r refuseProofs) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if r.on.Load() && strings.Contains(d.SQL, "orgperm.prove(") {
		ctx, cancel := context.WithCancelCause(ctx)
		cancel(errRefused)
		return ctx
	}
	return ctx
}

func (refuseProofs) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// TestProofNotSentKeepsCache: while the pool cannot send proofs, the cache
// waits out its lease and keeps what it holds; a check with a token reads
// the database (fresh) instead of waiting or failing; Check says why the
// cache is bypassed; and once proofs go through, the set cached before is
// a hit again, with no purge and no fill.
func TestProofNotSentKeepsCache(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDatabase(t)
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	var refuse atomic.Bool
	cfg.ConnConfig.Tracer = refuseProofs{&refuse}
	ctx := context.Background()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	c := newTestClient(t, pool, Config{Lease: 200 * time.Millisecond, ProofTimeout: 500 * time.Millisecond})
	for _, u := range []string{"alice", "bob"} {
		if err := c.Store().AddMember(ctx, "acme", u, MemberOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.IsActiveMember(ctx, "acme", "alice"); err != nil || !ok { // cached
		t.Fatalf("IsActiveMember = %v, %v", ok, err)
	}

	refuse.Store(true)
	// bob suspended with raw SQL: the token covers it.
	if _, err := pool.Exec(ctx, `UPDATE orgperm.memberships SET status = 'suspended' WHERE org_id = 'acme' AND user_id = 'bob'`); err != nil {
		t.Fatal(err)
	}
	tok, err := c.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tctx, err := WithToken(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := c.IsActiveMember(tctx, "acme", "bob"); err != nil || ok {
		t.Fatalf("IsActiveMember(bob) with a token while no proof can be sent = %v, %v; want false from the database", ok, err)
	}
	// In service until its lease runs out, then bypassed, saying why.
	for deadline := time.Now().Add(20 * time.Second); ; {
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		err = c.Check(cctx)
		cancel()
		if err != nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond) // polling for the lease to run out
	}
	if !errors.Is(err, ErrBypassed) || !errors.Is(err, listener.ErrProofNotSent) {
		t.Fatalf("Check while no proof can be sent = %v; want ErrBypassed, ErrProofNotSent", err)
	}
	before := c.Stats()

	refuse.Store(false)
	if err := c.Sync(ctx); err != nil {
		for errors.Is(err, listener.ErrProofNotSent) { // until the listener's next try
			time.Sleep(10 * time.Millisecond) // polling for the listener's retry
			err = c.Sync(ctx)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := c.IsActiveMember(ctx, "acme", "alice"); err != nil || !ok {
		t.Fatalf("IsActiveMember(alice) once proofs go through = %v, %v", ok, err)
	}
	after := c.Stats()
	if after.Cache.EvictedAll != before.Cache.EvictedAll || after.Cache.Fills != before.Cache.Fills ||
		after.Cache.Hits != before.Cache.Hits+1 || after.Listener.Reconnects != 0 {
		t.Fatalf("once proofs go through: %d purges, %d fills, %d hits, %d reconnects (before %d, %d, %d); want no purge, no fill, one hit, no reconnect",
			after.Cache.EvictedAll, after.Cache.Fills, after.Cache.Hits, after.Listener.Reconnects,
			before.Cache.EvictedAll, before.Cache.Fills, before.Cache.Hits)
	}
}
