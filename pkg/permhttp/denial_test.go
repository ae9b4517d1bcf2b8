package permhttp_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/orgperm/orgperm/pkg/membership"
	"github.com/orgperm/orgperm/pkg/permhttp"
	"github.com/orgperm/orgperm/pkg/pgtest"
)

// problem is the JSON problem details object (RFC 9457) that the test's
// Deny hook writes.
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
}

// problemDeny is a Deny hook that answers application/problem+json and
// maps a request with no organization to 404. It records what it was
// given.
type problemDeny struct{ got []permhttp.Denial }

func (p *problemDeny) deny(w http.ResponseWriter, _ *http.Request, d permhttp.Denial) {
	p.got = append(p.got, d)
	status := d.Status()
	if d.Reason == permhttp.ReasonNoOrganization {
		status = http.StatusNotFound
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(problem{Type: "about:blank", Title: http.StatusText(status), Status: status})
}

func TestDenyHook(t *testing.T) {
	t.Parallel()
	client := setup(t)
	hook := &problemDeny{}
	next := &counted{}
	mw := mustMiddleware(t)(permhttp.Require(permhttp.Config{Checker: client, Deny: hook.deny}, viewInvoice))
	mux := http.NewServeMux()
	mux.Handle("GET /orgs/{org}/invoices", mw(next))
	mux.Handle("GET /invoices", mw(next))
	tests := []struct {
		target, user string
		reason       permhttp.Reason
		status       int
	}{
		{"/orgs/acme/invoices", "", permhttp.ReasonUnauthenticated, http.StatusUnauthorized},
		{"/invoices", "alice", permhttp.ReasonNoOrganization, http.StatusNotFound},
		{"/orgs/acme/invoices", "bob", permhttp.ReasonForbidden, http.StatusForbidden},
		{"/orgs/%01/invoices", "alice", permhttp.ReasonForbidden, http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%s", tt.user, tt.reason), func(t *testing.T) {
			hook.got = nil
			w := serve(mux, tt.target, tt.user, nil)
			if w.Code != tt.status {
				t.Fatalf("got %d %q, want %d", w.Code, w.Body.String(), tt.status)
			}
			var p problem
			if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || p.Status != tt.status {
				t.Errorf("body %q: %+v, %v", w.Body.String(), p, err)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type %q", ct)
			}
			if cc := w.Header().Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q", cc)
			}
			if len(hook.got) != 1 || hook.got[0].Reason != tt.reason || hook.got[0].Err != nil {
				t.Errorf("hook got %+v, want one %v with no error", hook.got, tt.reason)
			}
		})
	}
	if n := next.calls.Load(); n != 0 {
		t.Errorf("handler called %d times", n)
	}
	// A request that is allowed never reaches the hook.
	hook.got = nil
	if w := serve(mux, "/orgs/acme/invoices", "alice", nil); w.Code != http.StatusOK || len(hook.got) != 0 {
		t.Errorf("allowed request: %d, hook calls %d", w.Code, len(hook.got))
	}
}

func TestDenyHookGetsCheckError(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	client := newClient(t, pool, membership.Config{})
	seed(t, client.Store())
	pool.Close()
	hook := &problemDeny{}
	mux := http.NewServeMux()
	mux.Handle("GET /orgs/{org}/invoices",
		mustMiddleware(t)(permhttp.Require(permhttp.Config{Checker: client, Deny: hook.deny}, viewInvoice))(&counted{}))
	w := serve(mux, "/orgs/acme/invoices", "alice", nil)
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("got %d %q, want 503", w.Code, w.Body.String())
	}
	if len(hook.got) != 1 || hook.got[0].Reason != permhttp.ReasonUnavailable || hook.got[0].Err == nil {
		t.Fatalf("hook got %+v, want one ReasonUnavailable with the check's error", hook.got)
	}
	if _, err := client.Permissions(t.Context(), "acme", "alice"); err == nil || err.Error() != hook.got[0].Err.Error() {
		t.Errorf("hook's error %v, the check's %v", hook.got[0].Err, err)
	}
}

// TestWWWAuthenticate checks that every 401 carries the challenge, and
// nothing else does, whatever the Deny hook does.
func TestWWWAuthenticate(t *testing.T) {
	t.Parallel()
	client := setup(t)
	const def = `Bearer realm="api"`
	tests := []struct {
		name       string
		cfg        permhttp.Config
		user       string
		status     int
		challenge  string // "" for none
		bodyPrefix string
	}{
		{"default", permhttp.Config{}, "", http.StatusUnauthorized, def, `{"error":"unauthorized"}`},
		{"default, 403 has none", permhttp.Config{}, "bob", http.StatusForbidden, "", `{"error":"forbidden"}`},
		{"scheme and realm", permhttp.Config{AuthScheme: "Session", Realm: `the "acme" console`},
			"", http.StatusUnauthorized, `Session realm="the \"acme\" console"`, `{"error":"unauthorized"}`},
		{"hook writes 401 without one", permhttp.Config{Deny: func(w http.ResponseWriter, _ *http.Request, d permhttp.Denial) {
			w.WriteHeader(d.Status())
		}}, "", http.StatusUnauthorized, def, ""},
		{"hook writes a body only", permhttp.Config{Deny: func(w http.ResponseWriter, _ *http.Request, d permhttp.Denial) {
			fmt.Fprint(w, "no")
		}}, "", http.StatusOK, "", "no"},
		{"hook maps 403 to 401", permhttp.Config{Deny: func(w http.ResponseWriter, _ *http.Request, d permhttp.Denial) {
			w.WriteHeader(http.StatusUnauthorized)
		}}, "bob", http.StatusUnauthorized, def, ""},
		{"hook maps 401 to 404", permhttp.Config{Deny: func(w http.ResponseWriter, _ *http.Request, d permhttp.Denial) {
			w.WriteHeader(http.StatusNotFound)
		}}, "", http.StatusNotFound, "", ""},
		{"hook sets its own", permhttp.Config{Deny: func(w http.ResponseWriter, _ *http.Request, d permhttp.Denial) {
			w.Header().Set("WWW-Authenticate", `Basic realm="x"`)
			w.WriteHeader(d.Status())
		}}, "", http.StatusUnauthorized, `Basic realm="x"`, ""},
		{"hook writes nothing: the default", permhttp.Config{Deny: func(http.ResponseWriter, *http.Request, permhttp.Denial) {}},
			"", http.StatusUnauthorized, def, `{"error":"unauthorized"}`},
		{"hook delegates", permhttp.Config{Deny: permhttp.WriteDenial}, "bob", http.StatusForbidden, "", `{"error":"forbidden"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Checker = client
			mux := http.NewServeMux()
			mux.Handle("GET /orgs/{org}/invoices", mustMiddleware(t)(permhttp.Require(cfg, viewInvoice))(&counted{}))
			w := serve(mux, "/orgs/acme/invoices", tt.user, nil)
			if w.Code != tt.status || !strings.HasPrefix(w.Body.String(), tt.bodyPrefix) {
				t.Fatalf("got %d %q, want %d %q...", w.Code, w.Body.String(), tt.status, tt.bodyPrefix)
			}
			if got := w.Header().Values("WWW-Authenticate"); strings.Join(got, "|") != tt.challenge {
				t.Errorf("WWW-Authenticate %q, want %q", got, tt.challenge)
			}
		})
	}
}

func TestChallengeConfigErrors(t *testing.T) {
	t.Parallel()
	var checker membership.Checker = (*membership.Client)(nil) // never called
	tests := []struct {
		name  string
		cfg   permhttp.Config
		field string
	}{
		{"scheme with a space", permhttp.Config{AuthScheme: "Bearer x"}, "Config.AuthScheme"},
		{"scheme with a quote", permhttp.Config{AuthScheme: `Be"arer`}, "Config.AuthScheme"},
		{"scheme not ASCII", permhttp.Config{AuthScheme: "Bearé"}, "Config.AuthScheme"},
		{"realm with a newline", permhttp.Config{Realm: "api\r\nSet-Cookie: x=1"}, "Config.Realm"},
		{"realm with DEL", permhttp.Config{Realm: "a\x7f"}, "Config.Realm"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := tt.cfg
			cfg.Checker = checker
			mw, err := permhttp.Require(cfg, viewInvoice)
			var ce *permhttp.ConfigError
			if mw != nil || !errors.Is(err, permhttp.ErrInvalidConfig) || !errors.As(err, &ce) || ce.Field != tt.field {
				t.Fatalf("got %v, %v; want a ConfigError on %s", mw != nil, err, tt.field)
			}
		})
	}
	// Legal values pass: a token with every punctuation a token allows, a
	// realm with a tab and non-ASCII letters.
	if _, err := permhttp.RequireMember(permhttp.Config{Checker: checker, AuthScheme: "X-!#$%&'*+.^_`|~9", Realm: "zoë\tco"}); err != nil {
		t.Errorf("legal scheme and realm: %v", err)
	}
}

func TestReasonStatusAndString(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		r      permhttp.Reason
		status int
		s      string
	}{
		{permhttp.ReasonUnauthenticated, 401, "unauthorized"},
		{permhttp.ReasonNoOrganization, 400, "bad_request"},
		{permhttp.ReasonForbidden, 403, "forbidden"},
		{permhttp.ReasonUnavailable, 503, "unavailable"},
		{0, 500, "internal_error"},
	} {
		if tt.r.Status() != tt.status || tt.r.String() != tt.s || (permhttp.Denial{Reason: tt.r}).Status() != tt.status {
			t.Errorf("Reason %d: %d %q, want %d %q", tt.r, tt.r.Status(), tt.r.String(), tt.status, tt.s)
		}
		w := httptest.NewRecorder()
		permhttp.WriteDenial(w, httptest.NewRequest(http.MethodGet, "/", nil), permhttp.Denial{Reason: tt.r})
		if want := `{"error":"` + tt.s + `"}` + "\n"; w.Code != tt.status || w.Body.String() != want {
			t.Errorf("WriteDenial %v: %d %q, want %d %q", tt.r, w.Code, w.Body.String(), tt.status, want)
		}
	}
}
