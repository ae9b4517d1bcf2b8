package membership

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orgperm/orgperm/pkg/listener"
	"github.com/orgperm/orgperm/pkg/pgtest"
)

// newTestClient starts a Client on pool and waits until it is ready.
func newTestClient(t *testing.T, pool *pgxpool.Pool, cfg Config) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := New(ctx, pool, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	select {
	case <-c.Ready():
	case <-ctx.Done():
		t.Fatal("client never ready")
	}
	return c
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		cfg   Config
		field string
	}{
		{Config{Capacity: -1}, "Capacity"},
		{Config{TTL: -1}, "TTL"},
		{Config{Lease: -1}, "Lease"},
		{Config{Lease: 2 * time.Minute}, "Lease"},
		{Config{ProofTimeout: -1}, "ProofTimeout"},
		{Config{FillTimeout: -1}, "FillTimeout"},
		{Config{RewarmKeys: -1}, "RewarmKeys"},
	} {
		_, err := tt.cfg.resolve()
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Field != tt.field || !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("resolve(%+v) = %v; want a ConfigError on %s", tt.cfg, err, tt.field)
		}
	}
	cfg, err := Config{}.resolve()
	if err != nil || cfg.Lease != DefaultLease || cfg.TTL != 5*time.Minute || cfg.Capacity != 10_000 {
		t.Fatalf("defaults: %+v, %v", cfg, err)
	}
}

// TestClientCheckSyncToken covers the Client's consistency surface on one
// instance: Check once ready and after Close, Sync, tokens (valid, garbage,
// already passed), the one check pipeline for sets and user-wide answers.
func TestClientCheckSyncToken(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	c := newTestClient(t, pool, Config{})
	ctx := context.Background()
	if err := c.Check(ctx); err != nil {
		t.Fatalf("Check when ready = %v", err)
	}
	if err := c.Store().AddMember(ctx, "acme", "alice", MemberOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	tok, err := c.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseToken(string(tok)); err != nil || !strings.HasPrefix(string(tok), "o2.1.") {
		t.Fatalf("ParseToken(%q) = %v; want a token of timeline 1", tok, err)
	}
	for _, good := range []string{"o1.0/16", "o2.1.0/16", "o2.1F.A/16"} { // o1: the first release's
		if _, err := ParseToken(good); err != nil {
			t.Errorf("ParseToken(%q) = %v", good, err)
		}
	}
	for _, bad := range []string{"garbage", "o1.", "o1.0/0", "o1.zz/1", "o1.1/2/3", "x1.0/16",
		"o2.", "o2.1", "o2.1.", "o2.0.0/16", "o2.a.0/16", "o2.zz.0/16", "o2.1.0/0", "o2.1.x/1", "o2.-1.0/16", "o2.100000000.0/16"} {
		if _, err := ParseToken(bad); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("ParseToken(%q) = %v; want ErrInvalidToken", bad, err)
		}
		if _, err := WithToken(ctx, Token(bad)); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("WithToken(%q) = %v; want ErrInvalidToken", bad, err)
		}
	}
	tctx, err := WithToken(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := c.IsActiveMember(tctx, "acme", "alice"); err != nil || !ok {
		t.Fatalf("IsActiveMember with a token = %v, %v", ok, err)
	}
	if ok, err := c.UserHasActiveMembership(tctx, "alice"); err != nil || !ok {
		t.Fatalf("UserHasActiveMembership with a token = %v, %v", ok, err)
	}
	if _, err := c.Permissions(ctx, "", "alice"); !errors.Is(err, ErrInvalidID) {
		t.Fatalf("Permissions with an empty org = %v; want ErrInvalidID", err)
	}
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Check(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Check after Close = %v; want ErrClosed", err)
	}
	// Checks after Close still answer, from the database.
	if ok, err := c.IsActiveMember(ctx, "acme", "alice"); err != nil || !ok {
		t.Fatalf("IsActiveMember after Close = %v, %v", ok, err)
	}
}

// TestCheckNamesTheReason: a client allowed to run uncached on an empty
// database says why its cache is bypassed, and New without the option
// refuses with a *SchemaError.
func TestCheckNamesTheReason(t *testing.T) {
	t.Parallel()
	pool, err := pgxpool.New(context.Background(), pgtest.Shared(t).NewEmptyDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := New(ctx, pool, Config{}); !errors.Is(err, ErrSchema) {
		t.Fatalf("New on an empty database = %v; want ErrSchema", err)
	}
	c, err := New(ctx, pool, Config{AllowUncached: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	err = c.Check(ctx)
	var se *SchemaError
	if !errors.Is(err, ErrBypassed) || !errors.As(err, &se) {
		t.Fatalf("Check = %v; want ErrBypassed wrapping a *SchemaError", err)
	}
	if st := c.Stats().Listener; st.State == listener.Synced {
		t.Fatalf("listener synced on a database with no schema: %+v", st)
	}
}

// TestTokenWaitIsBounded checks that a check's wait for its consistency
// token ends at Config.FillTimeout, whatever its context: a token no proof
// will ever pass (a WAL position far ahead of the server's) fails the check
// closed with context.DeadlineExceeded instead of waiting for ever.
func TestTokenWaitIsBounded(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	c := newTestClient(t, pool, Config{FillTimeout: 300 * time.Millisecond})
	ctx, err := WithToken(context.Background(), Token("o2.1.FFFFFFF/0"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		ok, err := c.HasPermission(ctx, "acme", "alice", "billing.view_invoice")
		if ok {
			err = errors.New("allowed")
		}
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("a check with an unreachable token: %v, want a failure matching context.DeadlineExceeded", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a check with an unreachable token still waits after 20s (FillTimeout 300ms)")
	}
}
