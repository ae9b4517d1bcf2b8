package permhttp_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orgperm/orgperm/pkg/membership"
	"github.com/orgperm/orgperm/pkg/permhttp"
	"github.com/orgperm/orgperm/pkg/pgtest"
)

const (
	viewInvoice = "billing.view_invoice"
	editInvoice = "billing.edit_invoice"

	forbidden   = `{"error":"forbidden"}` + "\n"
	unavailable = `{"error":"unavailable"}` + "\n"
)

// newClient returns a Client over pool, closed when the test ends.
func newClient(t *testing.T, pool *pgxpool.Pool, cfg membership.Config) *membership.Client {
	t.Helper()
	client, err := membership.New(context.Background(), pool, cfg)
	if err != nil {
		t.Fatalf("membership.New: %v", err)
	}
	t.Cleanup(func() {
		if err := client.Close(context.Background()); err != nil {
			t.Errorf("close client: %v", err)
		}
	})
	return client
}

// seed writes, through the admin API:
//
//   - alice: active member of acme with the role viewer (view_invoice);
//   - bob: active member of acme with no role;
//   - carol: no membership in acme, but a viewer in globex;
//   - dave: suspended member of acme who still holds viewer.
func seed(t *testing.T, store *membership.Store) {
	t.Helper()
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("seed: %v", err)
		}
	}
	must(store.EnsurePermission(ctx, viewInvoice, "view invoices"))
	must(store.EnsurePermission(ctx, editInvoice, "edit invoices"))
	roles := map[string]int64{}
	for _, org := range []string{"acme", "globex"} {
		id, err := store.CreateRole(ctx, org, "viewer", viewInvoice)
		must(err)
		roles[org] = id
	}
	for _, m := range []struct {
		org, user string
		status    membership.Status
		role      bool
	}{
		{"acme", "alice", membership.StatusActive, true},
		{"acme", "bob", membership.StatusActive, false},
		{"globex", "carol", membership.StatusActive, true},
		{"acme", "dave", membership.StatusSuspended, true},
	} {
		must(store.AddMember(ctx, m.org, m.user, membership.MemberOptions{Status: m.status}))
		if m.role {
			must(store.AssignRole(ctx, m.org, m.user, roles[m.org], nil))
		}
	}
}

// setup returns a Client over a fresh, seeded database.
func setup(t *testing.T) *membership.Client {
	t.Helper()
	client := newClient(t, pgtest.NewPool(t), membership.Config{})
	seed(t, client.Store())
	return client
}

// serve sends a request for target to h, as user ("" for none), and
// returns the response.
func serve(h http.Handler, target, user string, header http.Header) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, target, nil)
	for k, v := range header {
		r.Header[k] = v
	}
	if user != "" {
		r = r.WithContext(permhttp.WithUser(r.Context(), user))
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// counted is a handler that counts its calls and writes what it sees of
// the permission set in its context.
type counted struct{ calls atomic.Int64 }

func (h *counted) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.calls.Add(1)
	s := permhttp.Permissions(r.Context())
	fmt.Fprintf(w, "org=%s user=%s view=%t edit=%t", s.Org(), s.User(), s.Has(viewInvoice), s.Has(editInvoice))
}

// mustMiddleware fails the test when building the middleware fails.
func mustMiddleware(t *testing.T) func(func(http.Handler) http.Handler, error) func(http.Handler) http.Handler {
	return func(mw func(http.Handler) http.Handler, err error) func(http.Handler) http.Handler {
		t.Helper()
		if err != nil {
			t.Fatalf("build middleware: %v", err)
		}
		return mw
	}
}

func TestRequireStatusCodes(t *testing.T) {
	t.Parallel()
	client := setup(t)
	next := &counted{}
	mw := mustMiddleware(t)(permhttp.Require(permhttp.Config{Checker: client}, viewInvoice))
	mux := http.NewServeMux()
	mux.Handle("GET /orgs/{org}/invoices", mw(next))
	mux.Handle("GET /invoices", mw(next)) // no {org}: misrouted

	tests := []struct {
		name   string
		target string
		user   string
		status int
		body   string
	}{
		{"allowed", "/orgs/acme/invoices", "alice", http.StatusOK, "org=acme user=alice view=true edit=false"},
		{"no user", "/orgs/acme/invoices", "", http.StatusUnauthorized, `{"error":"unauthorized"}` + "\n"},
		{"no user before no org", "/invoices", "", http.StatusUnauthorized, `{"error":"unauthorized"}` + "\n"},
		{"no org in route", "/invoices", "alice", http.StatusBadRequest, `{"error":"bad_request"}` + "\n"},
		{"member lacking permission", "/orgs/acme/invoices", "bob", http.StatusForbidden, forbidden},
		{"non-member", "/orgs/acme/invoices", "carol", http.StatusForbidden, forbidden},
		{"suspended member with role", "/orgs/acme/invoices", "dave", http.StatusForbidden, forbidden},
		{"unknown org", "/orgs/initech/invoices", "alice", http.StatusForbidden, forbidden},
		{"invalid org: control character", "/orgs/%01/invoices", "alice", http.StatusForbidden, forbidden},
		{"invalid org: too long", "/orgs/" + strings.Repeat("x", 200) + "/invoices", "alice", http.StatusForbidden, forbidden},
		{"permission of another org", "/orgs/globex/invoices", "alice", http.StatusForbidden, forbidden},
	}
	var denials []*httptest.ResponseRecorder
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := next.calls.Load()
			w := serve(mux, tt.target, tt.user, nil)
			if w.Code != tt.status || w.Body.String() != tt.body {
				t.Fatalf("got %d %q, want %d %q", w.Code, w.Body.String(), tt.status, tt.body)
			}
			called := next.calls.Load() != before
			if called != (tt.status == http.StatusOK) {
				t.Errorf("handler called: %t, want %t", called, tt.status == http.StatusOK)
			}
			if tt.status == http.StatusForbidden {
				denials = append(denials, w)
			}
			if tt.status != http.StatusOK {
				if got := w.Header().Get("Content-Type"); got != "application/json; charset=utf-8" {
					t.Errorf("Content-Type %q", got)
				}
				if got := w.Header().Get("Cache-Control"); got != "no-store" {
					t.Errorf("Cache-Control %q", got)
				}
			}
		})
	}
	// No enumeration: every 403, whatever its reason, is the same response.
	for i := 1; i < len(denials); i++ {
		a, b := denials[0], denials[i]
		if a.Body.String() != b.Body.String() || fmt.Sprint(a.Header()) != fmt.Sprint(b.Header()) {
			t.Errorf("403 responses differ:\n%v %q\n%v %q", a.Header(), a.Body, b.Header(), b.Body)
		}
	}
	if len(denials) != 7 {
		t.Errorf("compared %d 403 responses, want 7", len(denials))
	}
}

func TestRequireAnyAndMemberWithHeader(t *testing.T) {
	t.Parallel()
	client := setup(t)
	cfg := permhttp.Config{Checker: client, Org: permhttp.OrgFromHeader("X-Org-ID")}
	must := mustMiddleware(t)
	next := &counted{}
	handlers := map[string]http.Handler{
		"any":    must(permhttp.RequireAny(cfg, editInvoice, viewInvoice))(next),
		"all":    must(permhttp.Require(cfg, editInvoice, viewInvoice))(next),
		"member": must(permhttp.RequireMember(cfg))(next),
	}
	acme := http.Header{"X-Org-Id": {"acme"}}
	tests := []struct {
		handler string
		user    string
		header  http.Header
		status  int
	}{
		{"any", "alice", acme, http.StatusOK},
		{"any", "bob", acme, http.StatusForbidden},
		{"all", "alice", acme, http.StatusForbidden},
		{"member", "alice", acme, http.StatusOK},
		{"member", "bob", acme, http.StatusOK},
		{"member", "carol", acme, http.StatusForbidden},
		{"member", "dave", acme, http.StatusForbidden},
		{"member", "carol", http.Header{"X-Org-Id": {"globex"}}, http.StatusOK},
		{"member", "alice", nil, http.StatusBadRequest},
		{"member", "", acme, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		name := fmt.Sprintf("%s/%s/%s", tt.handler, tt.user, tt.header.Get("X-Org-ID"))
		t.Run(name, func(t *testing.T) {
			w := serve(handlers[tt.handler], "/", tt.user, tt.header)
			if w.Code != tt.status {
				t.Fatalf("got %d %q, want %d", w.Code, w.Body.String(), tt.status)
			}
		})
	}
}

// loadCounter is a pgx query tracer that counts the queries whose first two
// arguments are (org, user): the store's permission-set loads of that
// member, and nothing else the client sends (heartbeats have other
// arguments, and the admin writes are done before counting starts).
type loadCounter struct {
	org, user string
	n         atomic.Int64
}

func (c *loadCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if len(d.Args) >= 2 && d.Args[0] == c.org && d.Args[1] == c.user {
		c.n.Add(1)
	}
	return ctx
}

func (c *loadCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func TestRequestCacheServesHandlerChecks(t *testing.T) {
	t.Parallel()
	pcfg, err := pgxpool.ParseConfig(pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	tracer := &loadCounter{org: "acme", user: "alice"}
	pcfg.ConnConfig.Tracer = tracer
	pool, err := pgxpool.NewWithConfig(context.Background(), pcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	client := newClient(t, pool, membership.Config{})
	seed(t, client.Store())

	lookups := func() uint64 {
		st := client.Stats().Cache
		return st.Hits + st.Misses + st.Bypassed
	}
	var (
		handlerErr     error
		sameSet        bool
		handlerLookups uint64
	)
	h := mustMiddleware(t)(permhttp.Require(permhttp.Config{Checker: client}, viewInvoice))(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := r.Context()
			// Empty the shared cache: from here on, only the request's
			// memo can answer without a query.
			client.EvictAll()
			before := lookups()
			defer func() { handlerLookups = lookups() - before }()
			ok, err := client.HasPermission(ctx, "acme", "alice", viewInvoice)
			if err != nil || !ok {
				handlerErr = fmt.Errorf("HasPermission = %t, %v", ok, err)
				return
			}
			s, err := client.Permissions(ctx, "acme", "alice")
			if err != nil {
				handlerErr = err
				return
			}
			sameSet = s == permhttp.Permissions(ctx)
		}))
	mux := http.NewServeMux()
	mux.Handle("GET /orgs/{org}/invoices", h)

	tracer.n.Store(0) // the seed's writes are not loads
	w := serve(mux, "/orgs/acme/invoices", "alice", nil)
	if w.Code != http.StatusOK || handlerErr != nil {
		t.Fatalf("got %d %q, handler error %v", w.Code, w.Body.String(), handlerErr)
	}
	if n := tracer.n.Load(); n != 1 {
		t.Errorf("request made %d permission-set queries, want 1 (the middleware's)", n)
	}
	if handlerLookups != 0 {
		t.Errorf("handler's checks made %d shared-cache lookups, want 0", handlerLookups)
	}
	if !sameSet {
		t.Error("handler's check returned another set than Permissions(ctx)")
	}
}

// closedPort returns a local TCP address nothing listens on.
func closedPort(t *testing.T) (string, uint16) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	ln.Close()
	return addr.IP.String(), uint16(addr.Port)
}

func TestFailsClosedWhenDatabaseCannotBeAsked(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// client returns a client over a seeded database that it then
		// makes unreachable for the client's checks.
		client func(t *testing.T) *membership.Client
	}{
		{"pool closed", func(t *testing.T) *membership.Client {
			pool := pgtest.NewPool(t)
			client := newClient(t, pool, membership.Config{})
			seed(t, client.Store())
			pool.Close()
			return client
		}},
		{"connection refused", func(t *testing.T) *membership.Client {
			// The listener reaches the server; the pool the checks use
			// points at a port nothing listens on.
			url := pgtest.NewDatabase(t)
			good, err := pgxpool.New(context.Background(), url)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(good.Close)
			seed(t, membership.NewStore(good))
			pcfg, err := pgxpool.ParseConfig(url)
			if err != nil {
				t.Fatal(err)
			}
			pcfg.ConnConfig.Host, pcfg.ConnConfig.Port = closedPort(t)
			pcfg.ConnConfig.Fallbacks = nil
			pcfg.ConnConfig.ConnectTimeout = 10 * time.Second
			bad, err := pgxpool.NewWithConfig(context.Background(), pcfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(bad.Close)
			return newClient(t, bad, membership.Config{
				ListenerConnect: func(ctx context.Context) (*pgx.Conn, error) { return pgx.Connect(ctx, url) },
				AllowUncached:   true, // New's schema check cannot reach the database either
			})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			client := tt.client(t)
			next := &counted{}
			mux := http.NewServeMux()
			mux.Handle("GET /orgs/{org}/invoices",
				mustMiddleware(t)(permhttp.Require(permhttp.Config{Checker: client}, viewInvoice))(next))
			// The request is one alice is allowed (see the other tests).
			w := serve(mux, "/orgs/acme/invoices", "alice", nil)
			if w.Code != http.StatusServiceUnavailable || w.Body.String() != unavailable {
				t.Fatalf("got %d %q, want 503 %q", w.Code, w.Body.String(), unavailable)
			}
			if n := next.calls.Load(); n != 0 {
				t.Errorf("handler called %d times", n)
			}
			// The error is the database's, not a denial in disguise.
			_, err := client.Permissions(context.Background(), "acme", "alice")
			if err == nil {
				t.Fatal("Permissions succeeded with the database out of reach")
			}
			t.Logf("check error: %v", err)
		})
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	var checker membership.Checker = (*membership.Client)(nil) // never called
	tests := []struct {
		name  string
		build func() (func(http.Handler) http.Handler, error)
		field string
	}{
		{"no checker", func() (func(http.Handler) http.Handler, error) {
			return permhttp.Require(permhttp.Config{}, viewInvoice)
		}, "Config.Checker"},
		{"no checker, member", func() (func(http.Handler) http.Handler, error) {
			return permhttp.RequireMember(permhttp.Config{})
		}, "Config.Checker"},
		{"no codenames", func() (func(http.Handler) http.Handler, error) {
			return permhttp.Require(permhttp.Config{Checker: checker})
		}, "codenames"},
		{"no codenames, any", func() (func(http.Handler) http.Handler, error) {
			return permhttp.RequireAny(permhttp.Config{Checker: checker}, []string{}...)
		}, "codenames"},
		{"malformed codename", func() (func(http.Handler) http.Handler, error) {
			return permhttp.Require(permhttp.Config{Checker: checker}, viewInvoice, "Billing View")
		}, "codenames"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mw, err := tt.build()
			var ce *permhttp.ConfigError
			if mw != nil || !errors.Is(err, permhttp.ErrInvalidConfig) || !errors.As(err, &ce) || ce.Field != tt.field {
				t.Fatalf("got %v, %v; want a ConfigError on %s", mw != nil, err, tt.field)
			}
		})
	}
}

func TestUserFromContext(t *testing.T) {
	t.Parallel()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	if u, ok := permhttp.UserFromContext(r); ok || u != "" {
		t.Errorf("no user: got %q, %t", u, ok)
	}
	if u, ok := permhttp.UserFromContext(r.WithContext(permhttp.WithUser(r.Context(), ""))); ok || u != "" {
		t.Errorf("empty user: got %q, %t", u, ok)
	}
	if u, ok := permhttp.UserFromContext(r.WithContext(permhttp.WithUser(r.Context(), "alice"))); !ok || u != "alice" {
		t.Errorf("alice: got %q, %t", u, ok)
	}
	if s := permhttp.Permissions(r.Context()); s != nil {
		t.Errorf("Permissions outside the middleware = %v, want nil", s)
	}
}

// TestPrincipalHandedOn: the handler behind Require finds the checked
// (org, user) as the membership principal, ready for
// membership.SetPrincipalFromContext and row-level security.
func TestPrincipalHandedOn(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	client := newClient(t, pool, membership.Config{})
	seed(t, client.Store())
	var org, user string
	var ok bool
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		org, user, ok = membership.PrincipalFromContext(r.Context())
	})
	mux := http.NewServeMux()
	mux.Handle("GET /orgs/{org}/invoices", mustMiddleware(t)(permhttp.Require(permhttp.Config{Checker: client}, viewInvoice))(next))
	if w := serve(mux, "/orgs/acme/invoices", "alice", nil); w.Code != http.StatusOK {
		t.Fatalf("status %d", w.Code)
	}
	if !ok || org != "acme" || user != "alice" {
		t.Fatalf("principal in the handler = %q, %q, %v; want acme, alice", org, user, ok)
	}
}
