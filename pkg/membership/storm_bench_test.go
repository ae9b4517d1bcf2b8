package membership

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/orgperm/orgperm/pkg/listener"
	"github.com/orgperm/orgperm/pkg/localcache"
)

// BenchmarkSpoofedPayload is what one spoofed 8 KB payload naming about
// 700 orgs costs the listening goroutine: the parse and the eviction
// (collapsed to one purge) on a cache of 10,000 entries refilled before
// every payload, the worst case. A real revoke queued behind n of them
// waits at most n times this (plus delivery).
func BenchmarkSpoofedPayload(b *testing.B) {
	payload := `{"v":1,"t":"memberships","orgs":[`
	for i := 0; len(payload) < 7800; i++ {
		if i > 0 {
			payload += ","
		}
		payload += fmt.Sprintf(`"spoof-%05d"`, i)
	}
	payload += `]}`
	c, err := localcache.New[cached](localcache.Config{Capacity: 20_000})
	if err != nil {
		b.Fatal(err)
	}
	fill := func() {
		for i := range 10_000 {
			k := localcache.Key{Org: "hot", User: fmt.Sprintf("h%d", i)}
			if _, err := c.Do(context.Background(), k, func(context.Context) (cached, time.Duration, error) { return cached{}, 0, nil }); err != nil {
				b.Fatal(err)
			}
		}
		if n := c.Len(); n != 10_000 {
			b.Fatalf("the cache holds %d entries after the fill, want 10000", n)
		}
	}
	// The payload must take the collapsed path (one purge), not a lookup
	// per org: checked once, before any timing.
	fill()
	inv, err := listener.ParsePayload(payload)
	if err != nil {
		b.Fatal(err)
	}
	if evict(c, inv); c.Len() != 0 {
		b.Fatalf("the payload left %d of 10000 entries: not collapsed to one purge", c.Len())
	}
	b.Run("full-cache", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			fill()
			b.StartTimer()
			inv, err := listener.ParsePayload(payload)
			if err != nil {
				b.Fatal(err)
			}
			evict(c, inv)
		}
	})
	b.Run("empty-cache", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			inv, err := listener.ParsePayload(payload)
			if err != nil {
				b.Fatal(err)
			}
			evict(c, inv)
		}
	})
}
