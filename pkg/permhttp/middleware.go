package permhttp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"

	"github.com/orgperm/orgperm/pkg/membership"
)

// Require returns middleware that lets a request through only when its user
// is an active member of its organization and holds every one of
// codenames there. See the package documentation for the status codes.
//
// It returns a *ConfigError when cfg is invalid (a nil Checker, an
// AuthScheme that is not an HTTP token, a Realm with a control character),
// when codenames is empty (to require only an active membership, use
// [RequireMember]) or when one of them is not a valid codename (it could
// never be granted).
func Require(cfg Config, codenames ...string) (func(http.Handler) http.Handler, error) {
	codes, err := checkCodenames(codenames)
	if err != nil {
		return nil, err
	}
	return middleware(cfg, func(s *membership.PermissionSet) bool { return s.HasAll(codes...) })
}

// RequireAny returns middleware that lets a request through only when its
// user is an active member of its organization and holds at least one of
// codenames there. It returns the same errors as [Require].
func RequireAny(cfg Config, codenames ...string) (func(http.Handler) http.Handler, error) {
	codes, err := checkCodenames(codenames)
	if err != nil {
		return nil, err
	}
	return middleware(cfg, func(s *membership.PermissionSet) bool { return s.HasAny(codes...) })
}

// RequireMember returns middleware that lets a request through only when
// its user is an active member of its organization (status active, inside
// the membership's window), whatever the permissions. It returns a
// *ConfigError when cfg is invalid, as [Require] does.
func RequireMember(cfg Config) (func(http.Handler) http.Handler, error) {
	return middleware(cfg, (*membership.PermissionSet).Active)
}

type permsKey struct{}

// Permissions returns the permission set that the middleware put in the
// request's context: the set of the request's user in the request's
// organization. It returns nil outside a handler wrapped by the middleware.
// With nested middleware, it is the set the innermost one checked.
func Permissions(ctx context.Context) *membership.PermissionSet {
	s, _ := ctx.Value(permsKey{}).(*membership.PermissionSet)
	return s
}

// checkCodenames returns a copy of codenames, or a *ConfigError when there
// are none or one is malformed.
func checkCodenames(codenames []string) ([]string, error) {
	if len(codenames) == 0 {
		return nil, &ConfigError{Field: "codenames", Reason: "must not be empty"}
	}
	for _, c := range codenames {
		if !membership.ValidCodename(c) {
			return nil, &ConfigError{Field: "codenames", Reason: fmt.Sprintf("holds %q, which is not a valid codename", c)}
		}
	}
	return slices.Clone(codenames), nil
}

// middleware builds the middleware that lets a request through when allow
// says yes to the permission set of its user in its organization.
func middleware(cfg Config, allow func(*membership.PermissionSet) bool) (func(http.Handler) http.Handler, error) {
	cfg, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	chal, _ := challenge(cfg.AuthScheme, cfg.Realm) // validated by resolve
	return func(next http.Handler) http.Handler {
		if next == nil {
			panic("permhttp: nil handler")
		}
		return &guard{cfg: cfg, challenge: chal, allow: allow, next: next}
	}, nil
}

// guard is the handler the middleware wraps around the app's own.
type guard struct {
	cfg       Config
	challenge string // the WWW-Authenticate value of a 401
	allow     func(*membership.PermissionSet) bool
	next      http.Handler
}

// ServeHTTP checks the request and calls the next handler only when it is
// allowed. The order of the checks is fixed: no user (401) before no
// organization (400), so that an anonymous caller learns nothing about
// routes; then the check itself (403 or 503).
func (g *guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	log := g.cfg.Logger
	user, ok := g.cfg.user(r)
	if !ok {
		log.DebugContext(ctx, "permhttp: no user", "path", r.URL.Path)
		g.deny(w, r, Denial{Reason: ReasonUnauthenticated})
		return
	}
	org, ok := g.cfg.org(r)
	if !ok {
		log.DebugContext(ctx, "permhttp: request names no organization", "path", r.URL.Path, "user", user)
		g.deny(w, r, Denial{Reason: ReasonNoOrganization})
		return
	}

	// The memo makes every later check of the request free, the handler's
	// included; an outer middleware's memo is kept.
	ctx = membership.WithRequestCache(ctx)
	set, err := g.cfg.Checker.Permissions(ctx, org, user)
	switch {
	case errors.Is(err, membership.ErrInvalidID):
		// An org ID (or user ID) that cannot exist is denied like one
		// that does not: a distinct answer would let callers probe.
		log.DebugContext(ctx, "permhttp: forbidden: invalid ID", "org", org, "user", user, "err", err)
		g.deny(w, r, Denial{Reason: ReasonForbidden})
		return
	case err != nil:
		// Fail closed: the database cannot be asked, so nothing is
		// granted and the handler never runs.
		level := slog.LevelWarn
		if ctx.Err() != nil {
			level = slog.LevelDebug // the caller went away; nobody reads the answer
		}
		log.Log(ctx, level, "permhttp: permission check failed", "org", org, "user", user, "err", err)
		g.deny(w, r, Denial{Reason: ReasonUnavailable, Err: err})
		return
	case !g.allow(set):
		log.DebugContext(ctx, "permhttp: forbidden", "org", org, "user", user, "status", string(set.Status()), "active", set.Active())
		g.deny(w, r, Denial{Reason: ReasonForbidden})
		return
	}
	// The principal rides along for the database's own enforcement: a
	// handler calls membership.SetPrincipalFromContext on its transaction
	// and row-level security admits what this check admitted.
	ctx = membership.WithPrincipal(ctx, org, user)
	g.next.ServeHTTP(w, r.WithContext(context.WithValue(ctx, permsKey{}, set)))
}
