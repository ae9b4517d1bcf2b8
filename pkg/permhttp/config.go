package permhttp

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/orgperm/orgperm/pkg/membership"
)

// Config configures the middleware that [Require], [RequireAny] and
// [RequireMember] build. Only Checker is required; the zero value of every
// other field means its default.
type Config struct {
	// Checker answers the permission checks, usually a *membership.Client.
	// It is required.
	Checker membership.Checker

	// Org returns the organization a request is about; false means the
	// request names none (the middleware answers 400). It is asked only
	// when the request's context carries no organization (see WithOrg,
	// which takes precedence). A value that is not a valid ID is not a
	// "none": it is checked, and denied with 403 like an organization that
	// does not exist. Defaults to OrgFromPath("org"), the {org} wildcard of
	// a net/http route pattern.
	Org func(r *http.Request) (string, bool)

	// User returns the authenticated user of a request; false means there
	// is none (the middleware answers 401). It is asked only when the
	// request's context carries no user (see WithUser, which takes
	// precedence). Defaults to UserFromContext, which reads what the
	// app's authentication middleware stored with WithUser.
	User func(r *http.Request) (string, bool)

	// Deny writes the response to a request the middleware refuses: the
	// status code (d.Status() is the default one) and a body, JSON
	// problem details (RFC 9457) for instance. The middleware has set
	// Cache-Control: no-store already; it adds the WWW-Authenticate
	// challenge to any 401 that the hook writes without one, and writes
	// the default answer when the hook writes nothing. Whatever the hook
	// does, the app's handler is not called. Defaults to WriteDenial.
	Deny func(w http.ResponseWriter, r *http.Request, d Denial)

	// AuthScheme is the authentication scheme of the WWW-Authenticate
	// challenge sent with every 401, an HTTP token. Defaults to "Bearer".
	AuthScheme string

	// Realm is the realm parameter of that challenge; it must not hold a
	// control character. Defaults to "api", which gives
	// WWW-Authenticate: Bearer realm="api".
	Realm string

	// Logger receives a line per denied or failed request: 503s at Warn
	// level, 400s, 401s and 403s at Debug level. Defaults to a logger that
	// discards everything.
	Logger *slog.Logger
}

// ErrInvalidConfig is matched (errors.Is) by every [ConfigError].
var ErrInvalidConfig = errors.New("permhttp: invalid config")

// ConfigError reports an invalid [Config] field, or invalid codenames given
// to [Require] or [RequireAny].
type ConfigError struct {
	// Field names the Config field ("Config.Checker"), the ReadyConfig
	// field ("ReadyConfig.Checker") or "codenames".
	Field string
	// Reason says what is wrong with it.
	Reason string
}

// Error implements error.
func (e *ConfigError) Error() string {
	return fmt.Sprintf("permhttp: %s %s", e.Field, e.Reason)
}

// Unwrap returns ErrInvalidConfig.
func (e *ConfigError) Unwrap() error { return ErrInvalidConfig }

// resolve fills the defaults of cfg and validates it.
func (cfg Config) resolve() (Config, error) {
	if cfg.Checker == nil {
		return cfg, &ConfigError{Field: "Config.Checker", Reason: "must not be nil"}
	}
	if cfg.Org == nil {
		cfg.Org = OrgFromPath("org")
	}
	if cfg.User == nil {
		cfg.User = UserFromContext
	}
	if cfg.Deny == nil {
		cfg.Deny = WriteDenial
	}
	if cfg.AuthScheme == "" {
		cfg.AuthScheme = "Bearer"
	}
	if cfg.Realm == "" {
		cfg.Realm = "api"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if _, err := challenge(cfg.AuthScheme, cfg.Realm); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// OrgFromPath returns a Config.Org that reads the organization from the
// wildcard name of the request's route pattern (r.PathValue(name)), as in
// "GET /orgs/{org}/invoices". An empty value counts as none: with a route
// pattern that has no such wildcard, every request gets 400, which points at
// the route rather than at the caller.
func OrgFromPath(name string) func(*http.Request) (string, bool) {
	return func(r *http.Request) (string, bool) {
		v := r.PathValue(name)
		return v, v != ""
	}
}

// OrgFromHeader returns a Config.Org that reads the organization from the
// request header name (for example "X-Org-ID"). A missing or empty header
// counts as none.
func OrgFromHeader(name string) func(*http.Request) (string, bool) {
	return func(r *http.Request) (string, bool) {
		v := r.Header.Get(name)
		return v, v != ""
	}
}
