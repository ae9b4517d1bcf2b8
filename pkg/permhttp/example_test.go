package permhttp_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orgperm/orgperm/pkg/membership"
	"github.com/orgperm/orgperm/pkg/permhttp"
)

// jsonChecker answers from permission sets in their documented JSON form.
// It stands in for a *membership.Client so that the example runs without a
// database; an app passes its client.
type jsonChecker map[string]string // "org/user" -> JSON of the set

func (c jsonChecker) Permissions(_ context.Context, org, user string) (*membership.PermissionSet, error) {
	doc, ok := c[org+"/"+user]
	if !ok { // no membership: an inactive set
		doc = fmt.Sprintf(`{"org":%q,"user":%q,"status":"","active":false,"computed_at":"2030-01-01T00:00:00Z"}`, org, user)
	}
	s := new(membership.PermissionSet)
	if err := json.Unmarshal([]byte(doc), s); err != nil {
		return nil, err
	}
	return s, nil
}

// authenticate is a stand-in for the app's own authentication middleware:
// it trusts a header, which no real app should.
func authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if user := r.Header.Get("X-Demo-User"); user != "" {
			r = r.WithContext(permhttp.WithUser(r.Context(), user))
		}
		next.ServeHTTP(w, r)
	})
}

func ExampleRequire() {
	checker := jsonChecker{
		"acme/alice": `{"org":"acme","user":"alice","status":"active","active":true,
			"permissions":["billing.view_invoice"],"computed_at":"2030-01-01T00:00:00Z"}`,
		"acme/bob": `{"org":"acme","user":"bob","status":"active","active":true,
			"permissions":[],"computed_at":"2030-01-01T00:00:00Z"}`,
	}
	requireInvoices, err := permhttp.Require(permhttp.Config{Checker: checker}, "billing.view_invoice")
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /orgs/{org}/invoices", requireInvoices(http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			perms := permhttp.Permissions(r.Context())
			fmt.Fprintf(w, "invoices of %s for %s\n", perms.Org(), perms.User())
		})))
	app := authenticate(mux)

	for _, req := range []struct{ user, path string }{
		{"alice", "/orgs/acme/invoices"},
		{"bob", "/orgs/acme/invoices"},     // a member without the permission
		{"alice", "/orgs/globex/invoices"}, // not a member
		{"", "/orgs/acme/invoices"},        // not logged in
	} {
		r := httptest.NewRequest(http.MethodGet, req.path, nil)
		r.Header.Set("X-Demo-User", req.user)
		w := httptest.NewRecorder()
		app.ServeHTTP(w, r)
		fmt.Printf("%-5s %-21s %d %s", req.user, req.path, w.Code, w.Body)
	}
	// Output:
	// alice /orgs/acme/invoices   200 invoices of acme for alice
	// bob   /orgs/acme/invoices   403 {"error":"forbidden"}
	// alice /orgs/globex/invoices 403 {"error":"forbidden"}
	//       /orgs/acme/invoices   401 {"error":"unauthorized"}
}

// The usual wiring: one membership.Client per process, the organization in
// a header, and a handler that makes further checks, which the request's
// memo answers.
func ExampleRequireAny_client() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	client, err := membership.New(ctx, pool, membership.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close(ctx)

	billing, err := permhttp.RequireAny(permhttp.Config{
		Checker: client,
		Org:     permhttp.OrgFromHeader("X-Org-ID"),
	}, "billing.view_invoice", "billing.admin")
	if err != nil {
		log.Fatal(err)
	}
	http.Handle("GET /invoices", billing(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		perms := permhttp.Permissions(r.Context())
		all, ids := perms.AccessibleIDs("invoice") // for WHERE id = ANY($1)
		canEdit, err := client.HasPermission(r.Context(), perms.Org(), perms.User(), "billing.edit_invoice")
		if err != nil {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, all, strings.Join(ids, ","), canEdit)
	})))
}

// A Deny hook that answers with JSON problem details (RFC 9457) and maps a
// request that names no organization to 404. The middleware adds the
// WWW-Authenticate challenge to the 401.
func ExampleConfig_deny() {
	problem := func(w http.ResponseWriter, r *http.Request, d permhttp.Denial) {
		status := d.Status()
		if d.Reason == permhttp.ReasonNoOrganization {
			status = http.StatusNotFound
		}
		if d.Err != nil {
			log.Printf("permission check failed: %v", d.Err) // never in the body
		}
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]any{
			"type": "about:blank", "title": http.StatusText(status), "status": status,
		})
	}
	require, err := permhttp.Require(permhttp.Config{
		Checker: jsonChecker{},
		Org:     permhttp.OrgFromHeader("X-Org-ID"),
		Deny:    problem,
		Realm:   "invoices",
	}, "billing.view_invoice")
	if err != nil {
		log.Fatal(err)
	}
	app := authenticate(require(http.NotFoundHandler()))
	for _, req := range []struct{ user, org string }{{"", "acme"}, {"alice", ""}, {"alice", "acme"}} {
		r := httptest.NewRequest(http.MethodGet, "/invoices", nil)
		r.Header.Set("X-Demo-User", req.user)
		r.Header.Set("X-Org-ID", req.org)
		w := httptest.NewRecorder()
		app.ServeHTTP(w, r)
		fmt.Printf("%d %q %s", w.Code, w.Header().Get("WWW-Authenticate"), w.Body)
	}
	// Output:
	// 401 "Bearer realm=\"invoices\"" {"status":401,"title":"Unauthorized","type":"about:blank"}
	// 404 "" {"status":404,"title":"Not Found","type":"about:blank"}
	// 403 "" {"status":403,"title":"Forbidden","type":"about:blank"}
}

// A readiness probe. An app passes its *membership.Client, whose Check
// says whether the cache is synced and proven; ReadinessFunc adds checks
// of the app's own.
func ExampleReady() {
	var synced bool
	ready, err := permhttp.Ready(permhttp.ReadyConfig{
		Checker: permhttp.ReadinessFunc(func(context.Context) error {
			if !synced {
				return errors.New("cache not synced yet")
			}
			return nil
		}),
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /readyz", ready)
	for range 2 {
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		fmt.Print(w.Code, " ", w.Body)
		synced = true
	}
	// Output:
	// 503 not ready
	// 200 ready
}
