package membership

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orgperm/orgperm/pkg/listener"
	"github.com/orgperm/orgperm/pkg/pgtest"
)

func errorsIs(err, target error) bool { return errors.Is(err, target) }

// countingTracer counts the statements and batches sent through a pool:
// each is one database round trip.
type countingTracer struct{ n atomic.Int64 }

var (
	_ pgx.QueryTracer = (*countingTracer)(nil)
	_ pgx.BatchTracer = (*countingTracer)(nil)
)

func (c *countingTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}
func (c *countingTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (c *countingTracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	c.n.Add(1)
	return ctx
}
func (c *countingTracer) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (c *countingTracer) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

// tracedPool returns a pool on a fresh migrated database whose round trips
// are counted, and a plain pool on the same database.
func tracedPool(tb testing.TB) (traced *pgxpool.Pool, plain *pgxpool.Pool, tr *countingTracer) {
	tb.Helper()
	url := pgtest.NewDatabase(tb)
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		tb.Fatal(err)
	}
	tr = &countingTracer{}
	cfg.ConnConfig.Tracer = tr
	traced, err = pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(traced.Close)
	plain, err = pgxpool.New(context.Background(), url)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(plain.Close)
	return traced, plain, tr
}

// Scope is one scope of an invalidation, as the tests compare them.
type Scope struct {
	All       bool
	Org, User string
}

// scopeRecorder records the scopes of the invalidations a Store's write
// hook reports (each admin write reports one scope).
type scopeRecorder struct {
	mu     sync.Mutex
	scopes []Scope
	invs   []listener.Invalidation
}

func (r *scopeRecorder) record(inv listener.Invalidation) {
	var s Scope
	switch {
	case inv.All:
		s.All = true
	case len(inv.Members) == 1 && len(inv.Orgs)+len(inv.Users) == 0:
		s.Org, s.User = inv.Members[0].Org, inv.Members[0].User
	case len(inv.Orgs) == 1 && len(inv.Members)+len(inv.Users) == 0:
		s.Org = inv.Orgs[0]
	default:
		panic(fmt.Sprintf("an admin write reported %+v: not one scope", inv))
	}
	r.mu.Lock()
	r.scopes = append(r.scopes, s)
	r.invs = append(r.invs, inv)
	r.mu.Unlock()
}

// take returns the scopes recorded since the last take.
func (r *scopeRecorder) take() []Scope {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.scopes
	r.scopes = nil
	return s
}
