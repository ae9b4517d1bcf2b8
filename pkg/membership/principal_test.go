package membership

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/orgperm/orgperm/pkg/pgtest"
)

// settings returns the principal settings as the SQL side reads them.
func settings(t *testing.T, tx pgx.Tx) (org, user *string) {
	t.Helper()
	if err := tx.QueryRow(context.Background(), `SELECT orgperm.principal_org(), orgperm.principal_user()`).Scan(&org, &user); err != nil {
		t.Fatal(err)
	}
	return org, user
}

func TestSetPrincipal(t *testing.T) {
	t.Parallel()
	traced, _, tr := tracedPool(t)
	ctx := context.Background()
	tx, err := traced.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck

	// Bad input: a typed error, nothing sent, nothing changed.
	before := tr.n.Load()
	for _, c := range []struct{ org, user string }{
		{"acme", ""},
		{"acme", strings.Repeat("u", 129)},
		{"acme", "a\nb"},
		{strings.Repeat("o", 129), "alice"},
		{"ac\x00me", "alice"},
	} {
		err := SetPrincipal(ctx, tx, c.org, c.user)
		var ve *ValidationError
		if !errors.Is(err, ErrInvalidID) || !errors.As(err, &ve) {
			t.Errorf("SetPrincipal(%q, %q) = %v; want an ErrInvalidID ValidationError", c.org, c.user, err)
		}
	}
	if n := tr.n.Load() - before; n != 0 {
		t.Errorf("bad input sent %d statements", n)
	}
	if err := SetPrincipal(ctx, nil, "acme", "alice"); err == nil {
		t.Error("SetPrincipal with a nil tx: no error")
	}
	if org, user := settings(t, tx); org != nil || user != nil {
		t.Errorf("after rejected calls: principal (%v, %v); want none", org, user)
	}

	// One round trip; both settings.
	before = tr.n.Load()
	if err := SetPrincipal(ctx, tx, "acme", "alice"); err != nil {
		t.Fatal(err)
	}
	if n := tr.n.Load() - before; n != 1 {
		t.Errorf("SetPrincipal made %d round trips, want 1", n)
	}
	if org, user := settings(t, tx); org == nil || *org != "acme" || user == nil || *user != "alice" {
		t.Errorf("principal (%v, %v); want (acme, alice)", org, user)
	}
	// A user without an org clears the org.
	if err := SetPrincipal(ctx, tx, "", "bob"); err != nil {
		t.Fatal(err)
	}
	if org, user := settings(t, tx); org != nil || user == nil || *user != "bob" {
		t.Errorf("principal (%v, %v); want (none, bob)", org, user)
	}
}

func TestSetPrincipalFromContext(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	ctx := context.Background()
	if _, _, ok := PrincipalFromContext(ctx); ok {
		t.Fatal("a bare context carries a principal")
	}
	if _, _, ok := PrincipalFromContext(WithPrincipal(ctx, "acme", "")); ok {
		t.Error("a principal with an empty user counts")
	}
	pctx := WithPrincipal(ctx, "acme", "alice")
	if org, user, ok := PrincipalFromContext(pctx); !ok || org != "acme" || user != "alice" {
		t.Errorf("PrincipalFromContext = %q, %q, %v", org, user, ok)
	}

	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	if err := SetPrincipalFromContext(pctx, tx); err != nil {
		t.Fatal(err)
	}
	if org, user := settings(t, tx); org == nil || *org != "acme" || user == nil || *user != "alice" {
		t.Errorf("principal (%v, %v); want (acme, alice)", org, user)
	}
	// No principal in the context: an error, and the earlier principal of
	// the transaction is cleared (fail closed).
	if err := SetPrincipalFromContext(ctx, tx); !errors.Is(err, ErrNoPrincipal) {
		t.Errorf("SetPrincipalFromContext without a principal = %v; want ErrNoPrincipal", err)
	}
	if org, user := settings(t, tx); org != nil || user != nil {
		t.Errorf("principal (%v, %v) after a context without one; want none", org, user)
	}
	if err := SetPrincipalFromContext(WithPrincipal(ctx, "acme", "a\nb"), tx); !errors.Is(err, ErrInvalidID) {
		t.Errorf("malformed principal: %v; want ErrInvalidID", err)
	}
}
