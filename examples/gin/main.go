// Command gin is a small gin app guarded by orgperm's permhttp middleware:
// the organization comes from gin's own path parameter, the user from a
// header (a stand-in for real authentication).
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
// gin.
package main

import (
	"context"
	"database/sql"
	"errors"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/orgperm/orgperm/migrations"
	"github.com/orgperm/orgperm/pkg/membership"
	"github.com/orgperm/orgperm/pkg/permhttp"
)

// newApp returns the app: checker answers the permission checks and ready
// the readiness probe (both are the *membership.Client; the tests pass a
// ready of their own).
func newApp(checker membership.Checker, ready permhttp.ReadinessChecker) (*gin.Engine, error) {
	requireInvoices, err := permhttp.Require(permhttp.Config{Checker: checker}, "billing.view_invoice")
	if err != nil {
		return nil, err
	}
	probe, err := permhttp.Ready(permhttp.ReadyConfig{Checker: ready})
	if err != nil {
		return nil, err
	}

	r := gin.New()
	r.Use(gin.Recovery())
	// The order matters: principal puts the org and the user in the
	// request's context, where the permission middleware looks first.
	r.GET("/orgs/:org/invoices", principal, wrap(requireInvoices), listInvoices)
	r.GET("/readyz", gin.WrapH(probe))
	return r, nil
}

// principal is the gin middleware that hands permhttp what only gin
// knows: the :org path parameter, which net/http's PathValue cannot see.
// It also plays the app's authentication, trusting the X-User header,
// which no real app should do.
func principal(c *gin.Context) {
	r := c.Request
	c.Request = r.WithContext(permhttp.WithPrincipal(r.Context(), c.Param("org"), r.Header.Get("X-User")))
	c.Next()
}

// wrap adapts net/http middleware to gin. The request goes on down gin's
// chain, with the context the middleware gave it, only if the middleware
// calls its next handler; otherwise the middleware has answered (401, 403,
// 503, ...) and the chain stops there.
func wrap(mw func(http.Handler) http.Handler) gin.HandlerFunc {
	return func(c *gin.Context) {
		passed := false
		mw(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			passed = true
			c.Request = r
			c.Next()
		})).ServeHTTP(c.Writer, c.Request)
		if !passed {
			c.Abort()
		}
	}
}

// listInvoices runs only when the middleware allowed the request; the
// permission set it checked is in the request's context.
func listInvoices(c *gin.Context) {
	perms := permhttp.Permissions(c.Request.Context())
	all, ids := perms.AccessibleIDs("invoice") // for WHERE id = ANY($1)
	c.JSON(http.StatusOK, gin.H{
		"org": perms.Org(), "user": perms.User(), "all_invoices": all, "invoice_ids": ids,
	})
}

func main() {
	gin.SetMode(gin.ReleaseMode)
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
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: app, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	log.Printf("serving on http://%s", ln.Addr())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// migrate brings orgperm's schema up to date (a no-op when it is).
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	db := stdlib.OpenDBFromPool(pool)
	defer func(db *sql.DB) { _ = db.Close() }(db)
	_, err := migrations.Up(ctx, db)
	return err
}
