package permhttp

import (
	"context"
	"net/http"
)

type (
	userKey struct{}
	orgKey  struct{}
)

// WithUser returns a copy of ctx that carries the authenticated user ID,
// for the app's authentication middleware to call before the permission
// middleware runs:
//
//	next.ServeHTTP(w, r.WithContext(permhttp.WithUser(r.Context(), userID)))
//
// A user in the context takes precedence over Config.User. An empty user
// counts as no user: the middleware then asks Config.User.
func WithUser(ctx context.Context, user string) context.Context {
	return context.WithValue(ctx, userKey{}, user)
}

// WithOrg returns a copy of ctx that carries the organization ID the
// request is about. It is how a router that permhttp cannot see into
// supplies the organization: an echo or gin middleware reads the org from
// the framework's own path parameters and stores it here before the
// permission middleware runs (see the examples/ directory of the
// repository).
//
// An organization in the context takes precedence over Config.Org. An
// empty org counts as none: the middleware then asks Config.Org.
func WithOrg(ctx context.Context, org string) context.Context {
	return context.WithValue(ctx, orgKey{}, org)
}

// WithPrincipal returns a copy of ctx that carries both the organization
// and the user, as [WithOrg] and [WithUser] do.
func WithPrincipal(ctx context.Context, org, user string) context.Context {
	return WithOrg(WithUser(ctx, user), org)
}

// UserFromContext returns the user stored in the request's context by
// [WithUser] or [WithPrincipal], and whether there is one. It is the
// default Config.User.
func UserFromContext(r *http.Request) (string, bool) {
	return fromContext(r.Context(), userKey{})
}

// fromContext returns the non-empty string stored in ctx under key.
func fromContext(ctx context.Context, key any) (string, bool) {
	v, _ := ctx.Value(key).(string)
	return v, v != ""
}

// user returns the user of a request: from its context first (WithUser,
// WithPrincipal), then from Config.User.
func (cfg *Config) user(r *http.Request) (string, bool) {
	if u, ok := fromContext(r.Context(), userKey{}); ok {
		return u, true
	}
	u, ok := cfg.User(r)
	return u, ok && u != ""
}

// org returns the organization of a request: from its context first
// (WithOrg, WithPrincipal), then from Config.Org.
func (cfg *Config) org(r *http.Request) (string, bool) {
	if o, ok := fromContext(r.Context(), orgKey{}); ok {
		return o, true
	}
	o, ok := cfg.Org(r)
	return o, ok && o != ""
}
