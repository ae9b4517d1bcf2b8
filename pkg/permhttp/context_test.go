package permhttp_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/orgperm/orgperm/pkg/permhttp"
)

// TestContextTakesPrecedence checks the documented order: the org and the
// user in the request's context (WithOrg, WithUser, WithPrincipal) first,
// the Config extractors second, and an empty context value is no value.
func TestContextTakesPrecedence(t *testing.T) {
	t.Parallel()
	client := setup(t)
	// The extractors read headers, so that each request can give the
	// context and the extractor different answers.
	cfg := permhttp.Config{
		Checker: client,
		Org:     permhttp.OrgFromHeader("X-Org"),
		User: func(r *http.Request) (string, bool) {
			u := r.Header.Get("X-User")
			return u, u != ""
		},
	}
	next := &counted{}
	h := mustMiddleware(t)(permhttp.Require(cfg, viewInvoice))(next)
	tests := []struct {
		name         string
		ctx          func(context.Context) context.Context
		hOrg, hUser  string // the headers the extractors read
		status       int
		wantOrg, who string // what the handler sees on 200
	}{
		{"extractors alone", nil, "acme", "alice", http.StatusOK, "acme", "alice"},
		{"context org over extractor", func(c context.Context) context.Context {
			return permhttp.WithOrg(c, "acme")
		}, "globex", "alice", http.StatusOK, "acme", "alice"},
		{"context org denies what extractor would allow", func(c context.Context) context.Context {
			return permhttp.WithOrg(c, "globex")
		}, "acme", "alice", http.StatusForbidden, "", ""},
		{"context user over extractor", func(c context.Context) context.Context {
			return permhttp.WithUser(c, "alice")
		}, "acme", "bob", http.StatusOK, "acme", "alice"},
		{"context user denies what extractor would allow", func(c context.Context) context.Context {
			return permhttp.WithUser(c, "bob")
		}, "acme", "alice", http.StatusForbidden, "", ""},
		{"principal over both", func(c context.Context) context.Context {
			return permhttp.WithPrincipal(c, "globex", "carol")
		}, "acme", "bob", http.StatusOK, "globex", "carol"},
		{"principal without extractors", func(c context.Context) context.Context {
			return permhttp.WithPrincipal(c, "acme", "alice")
		}, "", "", http.StatusOK, "acme", "alice"},
		{"empty context values fall through", func(c context.Context) context.Context {
			return permhttp.WithPrincipal(c, "", "")
		}, "acme", "alice", http.StatusOK, "acme", "alice"},
		{"context org, no user anywhere", func(c context.Context) context.Context {
			return permhttp.WithOrg(c, "acme")
		}, "", "", http.StatusUnauthorized, "", ""},
		{"context user, no org anywhere", func(c context.Context) context.Context {
			return permhttp.WithUser(c, "alice")
		}, "", "", http.StatusBadRequest, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			if tt.hOrg != "" {
				r.Header.Set("X-Org", tt.hOrg)
			}
			if tt.hUser != "" {
				r.Header.Set("X-User", tt.hUser)
			}
			if tt.ctx != nil {
				r = r.WithContext(tt.ctx(r.Context()))
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.status {
				t.Fatalf("got %d %q, want %d", w.Code, w.Body.String(), tt.status)
			}
			if tt.status != http.StatusOK {
				return
			}
			want := "org=" + tt.wantOrg + " user=" + tt.who + " view=true edit=false"
			if got := w.Body.String(); got != want {
				t.Errorf("handler saw %q, want %q", got, want)
			}
		})
	}
}

func TestWithPrincipalAndOrg(t *testing.T) {
	t.Parallel()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r = r.WithContext(permhttp.WithPrincipal(r.Context(), "acme", "alice"))
	if u, ok := permhttp.UserFromContext(r); !ok || u != "alice" {
		t.Errorf("UserFromContext after WithPrincipal = %q, %t", u, ok)
	}
	// WithOrg leaves the user alone.
	r = r.WithContext(permhttp.WithOrg(r.Context(), "globex"))
	if u, ok := permhttp.UserFromContext(r); !ok || u != "alice" {
		t.Errorf("UserFromContext after WithOrg = %q, %t", u, ok)
	}
}
