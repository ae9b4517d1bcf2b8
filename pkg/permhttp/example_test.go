package permhttp_test

import (
	"context"
	"encoding/json"
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
