package permhttp

import (
	"net/http"
	"strings"
)

// Reason says why the middleware refused a request. Each has a default
// status code ([Reason.Status]); a Config.Deny hook may map it to another.
type Reason int

// The reasons, in the order the middleware checks them.
const (
	// ReasonUnauthenticated: the request has no user. Defaults to 401.
	ReasonUnauthenticated Reason = iota + 1
	// ReasonNoOrganization: the request names no organization. Defaults
	// to 400.
	ReasonNoOrganization
	// ReasonForbidden: the user may not; the same reason whatever the
	// cause (no such organization, not a member, inactive membership,
	// missing permission, invalid ID), so that no hook can reveal which.
	// Defaults to 403.
	ReasonForbidden
	// ReasonUnavailable: the check failed (the database cannot be asked,
	// the request was cancelled); nothing is granted. Defaults to 503.
	ReasonUnavailable
)

// Status returns the default status code of r: 401, 400, 403 or 503, and
// 500 for a value that is not one of the reasons.
func (r Reason) Status() int {
	switch r {
	case ReasonUnauthenticated:
		return http.StatusUnauthorized
	case ReasonNoOrganization:
		return http.StatusBadRequest
	case ReasonForbidden:
		return http.StatusForbidden
	case ReasonUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// String returns the code that the default body carries: "unauthorized",
// "bad_request", "forbidden" or "unavailable".
func (r Reason) String() string {
	switch r {
	case ReasonUnauthenticated:
		return "unauthorized"
	case ReasonNoOrganization:
		return "bad_request"
	case ReasonForbidden:
		return "forbidden"
	case ReasonUnavailable:
		return "unavailable"
	}
	return "internal_error"
}

// Denial describes a request that the middleware refuses, for a
// Config.Deny hook.
type Denial struct {
	// Reason is why the request is refused.
	Reason Reason
	// Err is the error of the failed check when Reason is
	// ReasonUnavailable, and nil otherwise. It is for logs: its text may
	// name database hosts and users, so never write it in a response.
	Err error
}

// Status returns the default status code of the denial's reason.
func (d Denial) Status() int { return d.Reason.Status() }

// The default response bodies. They are constants so that a denial says
// the same thing, byte for byte, whatever the cause behind it.
const (
	bodyBadRequest   = `{"error":"bad_request"}` + "\n"
	bodyUnauthorized = `{"error":"unauthorized"}` + "\n"
	bodyForbidden    = `{"error":"forbidden"}` + "\n"
	bodyUnavailable  = `{"error":"unavailable"}` + "\n"
	bodyInternal     = `{"error":"internal_error"}` + "\n"
)

// WriteDenial is the default Config.Deny: it answers with the reason's
// default status and a small JSON body, the same bytes for every request
// that gets that status (see the package documentation). A hook can call
// it for the denials it does not answer itself.
func WriteDenial(w http.ResponseWriter, _ *http.Request, d Denial) {
	body := bodyInternal
	switch d.Reason {
	case ReasonUnauthenticated:
		body = bodyUnauthorized
	case ReasonNoOrganization:
		body = bodyBadRequest
	case ReasonForbidden:
		body = bodyForbidden
	case ReasonUnavailable:
		body = bodyUnavailable
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(d.Status())
	_, _ = w.Write([]byte(body))
}

// deny answers a refused request through the Config.Deny hook: with
// Cache-Control: no-store (authorization answers must not be cached by
// anyone between the server and the caller), the WWW-Authenticate
// challenge on a 401, and the default answer when the hook wrote nothing.
func (g *guard) deny(w http.ResponseWriter, r *http.Request, d Denial) {
	w.Header().Set("Cache-Control", "no-store")
	dw := &denyWriter{ResponseWriter: w, challenge: g.challenge}
	g.cfg.Deny(dw, r, d)
	if !dw.wrote {
		// A hook that wrote nothing would let net/http answer 200.
		WriteDenial(dw, r, d)
	}
}

// denyWriter is the ResponseWriter a Config.Deny hook writes to. It adds
// the WWW-Authenticate challenge to a 401 that lacks one, whatever the
// reason the hook mapped to 401, and records whether the hook wrote.
type denyWriter struct {
	http.ResponseWriter
	challenge string
	wrote     bool
}

// WriteHeader implements http.ResponseWriter.
func (w *denyWriter) WriteHeader(code int) {
	if !w.wrote && code >= 200 { // 1xx are informational: more follows
		w.wrote = true
		if code == http.StatusUnauthorized && w.Header().Get("WWW-Authenticate") == "" {
			w.Header().Set("WWW-Authenticate", w.challenge)
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write implements http.ResponseWriter.
func (w *denyWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK) // what net/http does; no challenge
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap returns the underlying ResponseWriter, for http.ResponseController.
func (w *denyWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// challenge returns the WWW-Authenticate value for scheme and realm, or a
// *ConfigError when scheme is not an HTTP token or realm holds a control
// character. The realm is sent as a quoted string (RFC 9110, 11.6.1).
func challenge(scheme, realm string) (string, error) {
	if scheme == "" || strings.IndexFunc(scheme, func(c rune) bool { return !isTokenChar(c) }) >= 0 {
		return "", &ConfigError{Field: "Config.AuthScheme", Reason: "must be an HTTP token (letters, digits, !#$%&'*+-.^_`|~)"}
	}
	if strings.IndexFunc(realm, func(c rune) bool { return c < ' ' && c != '\t' || c == 0x7f }) >= 0 {
		return "", &ConfigError{Field: "Config.Realm", Reason: "must not hold a control character"}
	}
	quoted := strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(realm)
	return scheme + ` realm="` + quoted + `"`, nil
}

// isTokenChar reports whether c is a tchar of RFC 9110, 5.6.2.
func isTokenChar(c rune) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.ContainsRune("!#$%&'*+-.^_`|~", c)
}
