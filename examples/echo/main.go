// Command echo is a small echo (v5) app guarded by orgperm's permhttp
// middleware: the organization comes from echo's own path parameter, the
// user from a header (a stand-in for real authentication).
//
//	GET /orgs/:org/invoices   needs billing.view_invoice
//	GET /readyz               200 when the permission cache can be trusted, 503 otherwise
//
// Run it against a database with orgperm's schema (it migrates it):
//
//	DATABASE_URL=postgres://... go run .
//	curl -H 'X-User: alice' http://127.0.0.1:8080/orgs/acme/invoices
//
// The module has its own go.mod, so that orgperm takes no dependency on
// echo.
package main

import (
	"context"
	"database/sql"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/labstack/echo/v5"

	"github.com/orgperm/orgperm/migrations"
	"github.com/orgperm/orgperm/pkg/membership"
	"github.com/orgperm/orgperm/pkg/permhttp"
)

// newApp returns the app: checker answers the permission checks and ready
// the readiness probe (both are the *membership.Client; the tests pass a
// ready of their own).
func newApp(checker membership.Checker, ready permhttp.ReadinessChecker) (*echo.Echo, error) {
	requireInvoices, err := permhttp.Require(permhttp.Config{Checker: checker}, "billing.view_invoice")
	if err != nil {
		return nil, err
	}
	probe, err := permhttp.Ready(permhttp.ReadyConfig{Checker: ready})
	if err != nil {
		return nil, err
	}

	e := echo.New()
	// The order matters: principal puts the org and the user in the
	// request's context, where the permission middleware looks first.
	e.GET("/orgs/:org/invoices", listInvoices, principal, echo.WrapMiddleware(requireInvoices))
	e.GET("/readyz", echo.WrapHandler(probe))
	return e, nil
}

// principal is the echo middleware that hands permhttp what only echo
// knows: the :org path parameter. (echo v5's WrapMiddleware also copies
// path parameters to the request, where permhttp's default
// OrgFromPath("org") finds them; WithOrg depends neither on the
// parameter's name nor on that, and works with echo v4 too, whose Context
// is an interface.) It also plays the app's authentication, trusting the
// X-User header, which no real app should do.
func principal(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		r := c.Request()
		ctx := permhttp.WithPrincipal(r.Context(), c.Param("org"), r.Header.Get("X-User"))
		c.SetRequest(r.WithContext(ctx))
		return next(c)
	}
}

// listInvoices runs only when the middleware allowed the request; the
// permission set it checked is in the request's context.
func listInvoices(c *echo.Context) error {
	perms := permhttp.Permissions(c.Request().Context())
	all, ids := perms.AccessibleIDs("invoice") // for WHERE id = ANY($1)
	return c.JSON(http.StatusOK, map[string]any{
		"org": perms.Org(), "user": perms.User(), "all_invoices": all, "invoice_ids": ids,
	})
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context) error {
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := migrate(ctx, pool); err != nil {
		return err
	}
	client, err := membership.New(ctx, pool, membership.Config{})
	if err != nil {
		return err
	}
	defer client.Close(context.WithoutCancel(ctx))

	app, err := newApp(client, client) // the client is also the readiness check
	if err != nil {
		return err
	}
	addr := os.Getenv("ADDR")
	if addr == "" {
		addr = "127.0.0.1:8080"
	}
	sc := echo.StartConfig{Address: addr}
	return sc.Start(ctx, app)
}

// migrate brings orgperm's schema up to date (a no-op when it is).
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	db := stdlib.OpenDBFromPool(pool)
	defer func(db *sql.DB) { _ = db.Close() }(db)
	_, err := migrations.Up(ctx, db)
	return err
}
