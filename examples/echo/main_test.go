package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/orgperm/orgperm/pkg/membership"
	"github.com/orgperm/orgperm/pkg/permhttp"
	"github.com/orgperm/orgperm/pkg/pgtest"
)

// TestMain runs the tests against a real PostgreSQL (a throwaway cluster,
// or TEST_DATABASE_URL; see package pgtest), then checks that no goroutine
// outlived them.
func TestMain(m *testing.M) {
	os.Exit(pgtest.Run(m, pgtest.After(func() error { return goleak.Find() })))
}

// ready is a ReadinessChecker that fails when err is set.
type ready struct{ err error }

func (r *ready) Check(context.Context) error { return r.err }

// setup returns the app, over a fresh database in which alice is a
// viewer of acme (billing.view_invoice) and bob a member of acme with no
// role, and the pool the app's client uses.
func setup(t *testing.T, probe permhttp.ReadinessChecker) (*httptest.Server, func()) {
	t.Helper()
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	client, err := membership.New(ctx, pool, membership.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close(context.Background()) })
	st := client.Store()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(st.EnsurePermission(ctx, "billing.view_invoice", "view invoices"))
	viewer, err := st.CreateRole(ctx, "acme", "viewer", "billing.view_invoice")
	must(err)
	must(st.AddMember(ctx, "acme", "alice", membership.MemberOptions{}))
	must(st.AssignRole(ctx, "acme", "alice", viewer, nil))
	must(st.AddMember(ctx, "acme", "bob", membership.MemberOptions{}))

	app, err := newApp(client, probe)
	must(err)
	srv := httptest.NewServer(app)
	t.Cleanup(srv.Close)
	return srv, pool.Close
}

// get sends GET path to srv as user ("" for none).
func get(t *testing.T, srv *httptest.Server, path, user string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.Header.Set("X-User", user)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

func TestInvoices(t *testing.T) {
	srv, _ := setup(t, &ready{})
	tests := []struct {
		name, path, user string
		status           int
		body             string // "" to skip the comparison
		challenge        string
	}{
		{"member with the permission", "/orgs/acme/invoices", "alice", http.StatusOK, "", ""},
		{"no user", "/orgs/acme/invoices", "", http.StatusUnauthorized, `{"error":"unauthorized"}` + "\n", `Bearer realm="api"`},
		{"member without the permission", "/orgs/acme/invoices", "bob", http.StatusForbidden, `{"error":"forbidden"}` + "\n", ""},
		{"member of another org", "/orgs/globex/invoices", "alice", http.StatusForbidden, `{"error":"forbidden"}` + "\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := get(t, srv, tt.path, tt.user)
			if resp.StatusCode != tt.status || (tt.body != "" && body != tt.body) {
				t.Fatalf("got %d %q, want %d %q", resp.StatusCode, body, tt.status, tt.body)
			}
			if got := resp.Header.Get("WWW-Authenticate"); got != tt.challenge {
				t.Errorf("WWW-Authenticate %q, want %q", got, tt.challenge)
			}
		})
	}
	// The handler saw the set the middleware checked, for echo's :org.
	resp, body := get(t, srv, "/orgs/acme/invoices", "alice")
	var got struct {
		Org, User   string
		AllInvoices bool `json:"all_invoices"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %q: %v", resp.StatusCode, body, err)
	}
	if got.Org != "acme" || got.User != "alice" || got.AllInvoices {
		t.Errorf("handler answered %+v", got)
	}
}

func TestUnavailable(t *testing.T) {
	srv, closePool := setup(t, &ready{})
	// The database can no longer be asked, and nothing is cached yet (a
	// cached set would still be served: the listener has its own
	// connection and still proves the cache).
	closePool()
	resp, body := get(t, srv, "/orgs/acme/invoices", "alice")
	if resp.StatusCode != http.StatusServiceUnavailable || body != `{"error":"unavailable"}`+"\n" {
		t.Fatalf("got %d %q, want 503", resp.StatusCode, body)
	}
}

func TestReadiness(t *testing.T) {
	probe := &ready{}
	srv, _ := setup(t, probe)
	if resp, body := get(t, srv, "/readyz", ""); resp.StatusCode != http.StatusOK || body != "ready\n" {
		t.Errorf("ready: got %d %q", resp.StatusCode, body)
	}
	probe.err = errors.New("cache bypassed")
	if resp, body := get(t, srv, "/readyz", ""); resp.StatusCode != http.StatusServiceUnavailable || body != "not ready\n" {
		t.Errorf("not ready: got %d %q", resp.StatusCode, body)
	}
}
