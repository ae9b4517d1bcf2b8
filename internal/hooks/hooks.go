// Package hooks carries test hooks into orgperm's packages without putting
// them on a public Config: a test inside this module attaches them to the
// context it passes to a constructor (membership.New), and production code,
// which cannot import an internal package of another module, never can.
package hooks

import "context"

// Client are the hooks of a membership.Client.
type Client struct {
	// AfterLoad runs after each cache fill's query returns and before the
	// cache decides whether to store the result, with the filled key (org
	// "" for a user-wide answer): a test holds a fill there to race it
	// with an invalidation (correctness rule 1).
	AfterLoad func(org, user string)
	// DropInvalidations makes the Client ignore every notification (proofs
	// still flow, so its cache stays trusted): a test shows with it that a
	// staleness detector sees lost notifications.
	DropInvalidations bool
}

type clientKey struct{}

// WithClient returns ctx carrying h, for membership.New.
func WithClient(ctx context.Context, h Client) context.Context {
	return context.WithValue(ctx, clientKey{}, h)
}

// ClientFrom returns the hooks ctx carries (zero if none).
func ClientFrom(ctx context.Context) Client {
	h, _ := ctx.Value(clientKey{}).(Client)
	return h
}
