package localcache_test

import (
	"context"
	"fmt"
	"time"

	"github.com/orgperm/orgperm/pkg/localcache"
)

// A permission set as an app might cache it: immutable once loaded.
type perms struct {
	Roles []string
}

func Example() {
	ctx := context.Background()
	cache, err := localcache.New[*perms](localcache.Config{})
	if err != nil {
		panic(err)
	}
	load := func(ctx context.Context) (*perms, time.Duration, error) {
		fmt.Println("query the database")
		// Zero time left: nothing expires this value before the TTL.
		return &perms{Roles: []string{"admin"}}, 0, nil
	}
	k := localcache.Key{Org: "acme", User: "alice"}

	p, _ := cache.Do(ctx, k, load) // miss: loads
	fmt.Println(p.Roles)
	p, _ = cache.Do(ctx, k, load) // hit
	fmt.Println(p.Roles)

	cache.InvalidateOrg("acme") // a NOTIFY said acme's roles changed
	_, ok := cache.Get(k)
	fmt.Println("cached after invalidation:", ok)

	st := cache.Stats()
	fmt.Println("loads:", st.Loads, "hits:", st.Hits, "evicted by org:", st.EvictedOrg)
	// Output:
	// query the database
	// [admin]
	// [admin]
	// cached after invalidation: false
	// loads: 1 hits: 1 evicted by org: 1
}

// A listener marks the cache unsynced before it connects and whenever the
// connection is in doubt, and resyncs once LISTEN is in place.
func ExampleCache_Resync() {
	cache, _ := localcache.New[string](localcache.Config{})
	k := localcache.Key{Org: "acme", User: "alice"}
	t := cache.Begin(k)
	fmt.Println("stored:", t.Store("member", 0))

	cache.MarkUnsynced() // the connection dropped
	_, ok := cache.Get(k)
	fmt.Println("hit while unsynced:", ok)

	hot := cache.Keys() // what to re-warm
	cache.Resync()      // LISTEN is back: purge, then trust the cache again
	for _, k := range hot {
		t := cache.Begin(k) // before the query
		fmt.Println("re-warmed:", t.Store("member", 0))
	}
	v, ok := cache.Get(k)
	fmt.Println(v, ok, cache.Synced())
	// Output:
	// stored: true
	// hit while unsynced: false
	// re-warmed: true
	// member true true
}
