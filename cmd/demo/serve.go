package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/orgperm/orgperm/pkg/membership"
	"github.com/orgperm/orgperm/pkg/permhttp"
	"github.com/orgperm/orgperm/pkg/promcollector"
)

// serve runs a small HTTP API protected by the middleware:
//
//	GET /orgs/{org}/invoices   needs billing.view_invoice; the user comes from the X-User header
//	GET /metrics               Prometheus text format
//	GET /healthz               the listener state (503 until synced)
//
// ADDR sets the listen address (default 127.0.0.1:8080).
func serve(ctx context.Context, url string) error {
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return err
	}
	defer pool.Close()
	client, err := membership.New(ctx, pool, membership.Config{})
	if err != nil {
		return err
	}
	defer client.Close(context.WithoutCancel(ctx))

	reg := prometheus.NewRegistry()
	reg.MustRegister(promcollector.New(client))

	require, err := permhttp.Require(permhttp.Config{Checker: client}, "billing.view_invoice")
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /orgs/{org}/invoices", withHeaderUser(require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		set := permhttp.Permissions(r.Context())
		all, ids := set.AccessibleIDs("invoice")
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"org": set.Org(), "user": set.User(), "all_invoices": all, "invoice_ids": ids})
	}))))
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		st := client.Stats().Listener
		if st.State.String() != "synced" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprintf(w, "listener: %s\nreconnects: %d\nlast sync: %s\n", st.State, st.Reconnects, st.LastSync.Format(time.RFC3339Nano))
	})

	addr := os.Getenv("ADDR")
	if addr == "" {
		addr = "127.0.0.1:8080"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	fmt.Printf("Serving on http://%s (Ctrl-C to stop). Try:\n", ln.Addr())
	fmt.Printf("  curl -H 'X-User: alice' http://%s/orgs/acme/invoices\n", ln.Addr())
	fmt.Printf("  curl -H 'X-User: mallory' http://%s/orgs/acme/invoices\n", ln.Addr())
	fmt.Printf("  curl http://%s/metrics\n  curl http://%s/healthz\n", ln.Addr(), ln.Addr())
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// withHeaderUser stands in for the app's authentication: it trusts the
// X-User header. Never do this in production.
func withHeaderUser(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u := r.Header.Get("X-User"); u != "" {
			r = r.WithContext(permhttp.WithUser(r.Context(), u))
		}
		next.ServeHTTP(w, r)
	})
}
