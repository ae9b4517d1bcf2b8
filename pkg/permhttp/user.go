package permhttp

import (
	"context"
	"net/http"
)

type userKey struct{}

// WithUser returns a copy of ctx that carries the authenticated user ID,
// for the app's authentication middleware to call before the permission
// middleware runs:
//
//	next.ServeHTTP(w, r.WithContext(permhttp.WithUser(r.Context(), userID)))
//
// An empty user counts as no user.
func WithUser(ctx context.Context, user string) context.Context {
	return context.WithValue(ctx, userKey{}, user)
}

// UserFromContext returns the user stored in the request's context by
// [WithUser], and whether there is one. It is the default Config.User.
func UserFromContext(r *http.Request) (string, bool) {
	u, _ := r.Context().Value(userKey{}).(string)
	return u, u != ""
}
