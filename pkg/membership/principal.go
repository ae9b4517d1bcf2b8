package membership

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
)

// ErrNoPrincipal is returned by SetPrincipalFromContext when the context
// carries no principal (see WithPrincipal). The transaction's principal is
// cleared all the same, so the row-level security policies admit nothing.
var ErrNoPrincipal = errors.New("membership: no principal in context")

// The transaction-local settings that name the principal for orgperm's SQL
// check functions and row-level security policies (orgperm.principal_user()
// and orgperm.principal_org()).
const (
	SettingUser = "orgperm.user_id"
	SettingOrg  = "orgperm.org_id"
)

// setPrincipalSQL sets both settings for the rest of the transaction, in one
// round trip. set_config(..., true) is SET LOCAL: the settings end with the
// transaction, so a pooled connection never carries a principal into the
// next one.
const setPrincipalSQL = `SELECT pg_catalog.set_config('` + SettingUser + `', $1, true), pg_catalog.set_config('` + SettingOrg + `', $2, true)`

// SetPrincipal makes user, in org, the principal of tx: the user whose
// permissions orgperm's row-level security policies apply to the rest of the
// transaction (see orgperm.protect_table in the README's "SQL interface").
// The settings are transaction-local, so they end with tx and never leak to
// the next user of a pooled connection. It costs one round trip.
//
// org may be empty: the transaction then has a user but no organization,
// and an org-scoped policy admits nothing. A malformed user or org (see
// ValidID) is rejected with ErrInvalidID before anything is sent; an empty
// user is malformed.
//
// To spare the round trip, queue the same statement in front of the query
// in one pgx.Batch: a batch runs in one implicit transaction.
func SetPrincipal(ctx context.Context, tx pgx.Tx, org, user string) error {
	if err := checkID("user", user); err != nil {
		return err
	}
	if org != "" {
		if err := checkID("org", org); err != nil {
			return err
		}
	}
	if tx == nil {
		return errors.New("membership: SetPrincipal with a nil transaction")
	}
	if _, err := tx.Exec(ctx, setPrincipalSQL, user, org); err != nil {
		return dbError("set principal", err)
	}
	return nil
}

// principalKey carries a principal in a context.
type principalKey struct{}

type principal struct{ org, user string }

// WithPrincipal returns a copy of ctx that carries user, in org, as the
// principal for SetPrincipalFromContext. An HTTP middleware that has
// authenticated the user and resolved the organization calls it before the
// handler runs; the handler's transactions then call
// SetPrincipalFromContext.
func WithPrincipal(ctx context.Context, org, user string) context.Context {
	return context.WithValue(ctx, principalKey{}, principal{org: org, user: user})
}

// PrincipalFromContext returns the principal stored by WithPrincipal, and
// whether there is one with a non-empty user.
func PrincipalFromContext(ctx context.Context) (org, user string, ok bool) {
	p, _ := ctx.Value(principalKey{}).(principal)
	return p.org, p.user, p.user != ""
}

// SetPrincipalFromContext makes the principal that ctx carries (see
// WithPrincipal) the principal of tx, as SetPrincipal does. When ctx
// carries none, it clears the transaction's principal (so nothing set
// earlier in tx stays in force) and returns ErrNoPrincipal: fail closed.
func SetPrincipalFromContext(ctx context.Context, tx pgx.Tx) error {
	org, user, ok := PrincipalFromContext(ctx)
	if !ok {
		if tx == nil {
			return ErrNoPrincipal
		}
		if _, err := tx.Exec(ctx, setPrincipalSQL, "", ""); err != nil {
			return errors.Join(ErrNoPrincipal, dbError("clear principal", err))
		}
		return ErrNoPrincipal
	}
	return SetPrincipal(ctx, tx, org, user)
}
