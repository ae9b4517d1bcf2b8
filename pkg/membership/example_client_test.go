package membership_test

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orgperm/orgperm/pkg/listener"
	"github.com/orgperm/orgperm/pkg/membership"
	"github.com/orgperm/orgperm/pkg/pgtest"
)

// exampleDB returns a pool on a fresh migrated database (the test binary's
// PostgreSQL: TEST_DATABASE_URL, or a throwaway cluster) and its cleanup.
func exampleDB() (*pgxpool.Pool, func()) {
	ctx := context.Background()
	url, drop, err := pgtest.CreateDatabase(ctx)
	if err != nil {
		panic(err)
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		panic(err)
	}
	return pool, func() {
		pool.Close()
		_ = drop()
	}
}

// The first seed's user_has_active_membership: does the user hold an active
// membership in any organization? Cached under a user-wide key, evicted by
// every membership change of that user.
func ExampleClient_UserHasActiveMembership() {
	ctx := context.Background()
	pool, cleanup := exampleDB()
	defer cleanup()
	client, err := membership.New(ctx, pool, membership.Config{})
	if err != nil {
		panic(err)
	}
	defer client.Close(ctx)
	<-client.Ready()

	st := client.Store()
	_ = st.AddMember(ctx, "acme", "alice", membership.MemberOptions{Status: membership.StatusInvited})
	ok, _ := client.UserHasActiveMembership(ctx, "alice")
	fmt.Println("invited to acme:", ok)

	_ = st.AddMember(ctx, "globex", "alice", membership.MemberOptions{})
	ok, _ = client.UserHasActiveMembership(ctx, "alice")
	fmt.Println("active in globex:", ok)

	_ = st.SuspendMember(ctx, "globex", "alice")
	ok, _ = client.UserHasActiveMembership(ctx, "alice")
	fmt.Println("suspended in globex:", ok)
	// Output:
	// invited to acme: false
	// active in globex: true
	// suspended in globex: false
}

// Explicit eviction, the seed's delete_permission_cache: from Go on this
// instance, or from SQL (any client: another service, psql, a cron job) on
// every listening instance.
func ExampleClient_EvictMember() {
	ctx := context.Background()
	pool, cleanup := exampleDB()
	defer cleanup()
	notified := make(chan listener.Invalidation, 16)
	client, err := membership.New(ctx, pool, membership.Config{
		OnInvalidate: func(inv listener.Invalidation, _ error) { notified <- inv },
	})
	if err != nil {
		panic(err)
	}
	defer client.Close(ctx)
	<-client.Ready()
	_ = client.Store().AddMember(ctx, "acme", "alice", membership.MemberOptions{})
	<-notified // the trigger's own notification of that write

	check := func() {
		_, _ = client.Permissions(ctx, "acme", "alice")
		fmt.Println("queries so far:", client.Stats().Cache.Loads)
	}
	check()
	check() // a hit

	client.EvictMember("acme", "alice") // this instance only
	check()

	// Every instance: the same payload the triggers send.
	if _, err := pool.Exec(ctx, "SELECT orgperm.evict_member('acme', 'alice')"); err != nil {
		panic(err)
	}
	inv := <-notified
	fmt.Println("notified:", inv.Members)
	check()
	// Output:
	// queries so far: 1
	// queries so far: 1
	// queries so far: 2
	// notified: [{acme alice}]
	// queries so far: 3
}
