package membership

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
)

// ErrInvalidActor reports an actor (WithActor) that is longer than 256
// bytes, not valid UTF-8 or that holds a control character. The write is
// refused: nothing is written without the actor the app asked for.
var ErrInvalidActor = errors.New("membership: invalid actor")

// maxActorBytes is the longest actor WithActor accepts.
const maxActorBytes = 256

// actorKey is the context key of WithActor.
type actorKey struct{}

// WithActor returns a context whose Store writes record actor (an
// application user ID, a service name: whoever the app says made the
// change) in the audit trail: each write transaction of the Store sets the
// transaction-local setting orgperm.actor to it, which the audit triggers
// read. Raw SQL can set the same setting:
//
//	BEGIN;
//	SELECT set_config('orgperm.actor', 'admin:42', true);
//	UPDATE orgperm.memberships ...;
//	COMMIT;
//
// An empty actor records none. An invalid one (ErrInvalidActor) fails the
// write.
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey{}, actor)
}

// ActorFrom returns the actor WithActor put in ctx, "" if none.
func ActorFrom(ctx context.Context) string {
	a, _ := ctx.Value(actorKey{}).(string)
	return a
}

// setActor sets orgperm.actor for the transaction tx from ctx's actor; it
// sends nothing when ctx has none.
func setActor(ctx context.Context, tx pgx.Tx) error {
	a := ActorFrom(ctx)
	if a == "" {
		return nil
	}
	if !validText(a, maxActorBytes) {
		return invalid("actor", a, ErrInvalidActor)
	}
	_, err := tx.Exec(ctx, `SELECT set_config('orgperm.actor', $1, true)`, a)
	return err
}
