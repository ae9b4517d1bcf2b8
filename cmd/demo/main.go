// Command demo shows orgperm working against a real PostgreSQL.
//
// With no DATABASE_URL it starts a throwaway cluster from the local
// PostgreSQL binaries, migrates it, seeds a small org and starts two
// instances (two clients in one process). It then shows a cache miss against
// a hit, a role revoked by a raw SQL statement on a third connection, how
// long each instance took to evict, and the check flipping.
//
//	go run ./cmd/demo          # the walk-through
//	go run ./cmd/demo serve    # an HTTP API protected by the middleware
package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/orgperm/orgperm/internal/pgcluster"
	"github.com/orgperm/orgperm/migrations"
	"github.com/orgperm/orgperm/pkg/listener"
	"github.com/orgperm/orgperm/pkg/membership"
)

const (
	org      = "acme"
	user     = "alice"
	codename = "billing.view_invoice"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	mode := "walkthrough"
	if len(os.Args) > 1 {
		mode = os.Args[1]
	}
	var err error
	switch mode {
	case "walkthrough":
		err = withDatabase(ctx, walkthrough)
	case "serve":
		err = withDatabase(ctx, serve)
	default:
		err = fmt.Errorf("unknown mode %q (want no argument, or serve)", mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// withDatabase gives fn a migrated, seeded database: DATABASE_URL's, or one
// on a throwaway cluster that is removed afterwards.
func withDatabase(ctx context.Context, fn func(context.Context, string) error) error {
	url := os.Getenv("DATABASE_URL")
	if url == "" {
		fmt.Println("Starting a throwaway PostgreSQL from the local binaries...")
		cluster, err := pgcluster.Start()
		if err != nil {
			return fmt.Errorf("%w; or set DATABASE_URL", err)
		}
		defer cluster.Close()
		if _, url, err = pgcluster.NewMigrated(ctx, cluster.URL); err != nil {
			return err
		}
	} else {
		db, err := sql.Open("pgx", url)
		if err != nil {
			return err
		}
		_, err = migrations.Up(ctx, db)
		db.Close()
		if err != nil {
			return err
		}
	}
	if err := seed(ctx, url); err != nil {
		return err
	}
	return fn(ctx, url)
}

// seed creates org acme: alice and bob are members holding the accountant
// role (view and edit invoices); alice may see invoice 42.
func seed(ctx context.Context, url string) error {
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return err
	}
	defer pool.Close()
	// A rerun against DATABASE_URL starts from a clean org.
	for _, q := range []string{`DELETE FROM orgperm.memberships WHERE org_id = $1`, `DELETE FROM orgperm.roles WHERE org_id = $1`, `DELETE FROM orgperm.data_access WHERE org_id = $1`} {
		if _, err := pool.Exec(ctx, q, org); err != nil {
			return err
		}
	}
	st := membership.NewStore(pool)
	for _, c := range []string{"billing.view_invoice", "billing.edit_invoice"} {
		if err := st.EnsurePermission(ctx, c, ""); err != nil {
			return err
		}
	}
	role, err := st.CreateRole(ctx, org, "accountant", "billing.view_invoice", "billing.edit_invoice")
	if err != nil {
		return err
	}
	for _, u := range []string{"alice", "bob"} {
		if err := st.AddMember(ctx, org, u, membership.MemberOptions{}); err != nil {
			return err
		}
		if err := st.AssignRole(ctx, org, u, role, nil); err != nil {
			return err
		}
	}
	_, err = st.GrantDataAccess(ctx, org, membership.UserSubject("alice"), "invoice", "42")
	return err
}

// instance is a client plus the time it applied each notification.
type instance struct {
	name    string
	client  *membership.Client
	evicted chan time.Time
}

func newInstance(ctx context.Context, name, url string) (*instance, error) {
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, err
	}
	if err := pool.Ping(ctx); err != nil { // connect now, so the miss below times a query
		pool.Close()
		return nil, err
	}
	in := &instance{name: name, evicted: make(chan time.Time, 16)}
	c, err := membership.New(ctx, pool, membership.Config{
		OnInvalidate: func(inv listener.Invalidation, err error) {
			select {
			case in.evicted <- time.Now():
			default:
			}
		},
	})
	if err != nil {
		pool.Close()
		return nil, err
	}
	in.client = c
	select {
	case <-c.Ready():
	case <-time.After(10 * time.Second):
		return nil, errors.New("listener did not sync within 10s")
	}
	return in, nil
}

func walkthrough(ctx context.Context, url string) error {
	a, err := newInstance(ctx, "instance A", url)
	if err != nil {
		return err
	}
	defer a.client.Close(context.WithoutCancel(ctx))
	b, err := newInstance(ctx, "instance B", url)
	if err != nil {
		return err
	}
	defer b.client.Close(context.WithoutCancel(ctx))
	fmt.Printf("Seeded org %q; two instances are listening.\n\n", org)

	fmt.Printf("1. Miss against hit: HasPermission(%s, %s, %s)\n", org, user, codename)
	for _, in := range []*instance{a, b} {
		// Bob's check first, so that alice's miss times a query on a warm
		// connection (the first one also prepares the statement).
		if _, err := in.client.HasPermission(ctx, org, "bob", codename); err != nil {
			return err
		}
		start := time.Now()
		ok, err := in.client.HasPermission(ctx, org, user, codename)
		if err != nil {
			return err
		}
		miss := time.Since(start)
		const hits = 100_000
		start = time.Now()
		for range hits {
			if ok2, _ := in.client.HasPermission(ctx, org, user, codename); ok2 != ok {
				return errors.New("a hit disagreed with the miss")
			}
		}
		hit := time.Since(start) / hits
		fmt.Printf("   %s: %v; miss %v, hit %v (%.0fx faster)\n", in.name, ok, miss.Round(time.Microsecond), hit, float64(miss)/float64(hit))
	}

	fmt.Printf("\n2. A third connection revokes the role with raw SQL (no library call):\n")
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// Warm the connection's catalog caches on another row, so that the
	// timing below is the revoke's, not the connection's first statement.
	if _, err := conn.Exec(ctx, `DELETE FROM orgperm.membership_roles WHERE org_id = 'acme' AND user_id = 'nobody'`); err != nil {
		return err
	}
	const revoke = `DELETE FROM orgperm.membership_roles WHERE org_id = 'acme' AND user_id = 'alice'`
	fmt.Printf("   %s\n", revoke)
	committed := time.Now()
	if _, err := conn.Exec(ctx, revoke); err != nil {
		return err
	}
	commitDone := time.Now()

	fmt.Printf("\n3. Each instance evicts on the trigger's NOTIFY:\n")
	for _, in := range []*instance{a, b} {
		select {
		case at := <-in.evicted:
			fmt.Printf("   %s evicted %v after the statement was sent (the writer's commit returned after %v)\n",
				in.name, at.Sub(committed).Round(time.Microsecond), commitDone.Sub(committed).Round(time.Microsecond))
		case <-time.After(10 * time.Second):
			return fmt.Errorf("%s did not evict within 10s", in.name)
		}
	}

	fmt.Printf("\n4. The check flips on both instances:\n")
	for _, in := range []*instance{a, b} {
		ok, err := in.client.HasPermission(ctx, org, user, codename)
		if err != nil {
			return err
		}
		d, err := in.client.Explain(ctx, org, user, codename)
		if err != nil {
			return err
		}
		fmt.Printf("   %s: HasPermission = %v (%v)\n", in.name, ok, d.Reason)
		if ok {
			return errors.New("the revoked permission is still granted")
		}
	}
	st := a.client.Stats()
	fmt.Printf("\nInstance A cache: %d hits, %d misses, %d fills, %d stale fills refused; listener %v, %d notifications.\n",
		st.Cache.Hits, st.Cache.Misses, st.Cache.Fills, st.Cache.StaleFills, st.Listener.State, st.Listener.Notifications)
	return nil
}
