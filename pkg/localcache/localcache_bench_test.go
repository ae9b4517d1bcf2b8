package localcache

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

const benchKeys = 1024

// benchCache returns a cache holding benchKeys keys, and the keys.
func benchCache(b *testing.B, cfg Config) (*Cache[string], []Key) {
	b.Helper()
	c, err := New[string](cfg)
	if err != nil {
		b.Fatal(err)
	}
	keys := make([]Key, benchKeys)
	for i := range keys {
		keys[i] = Key{Org: fmt.Sprintf("org-%04d", i%37), User: fmt.Sprintf("user-%08d", i)}
		t := c.Begin(keys[i])
		if !t.Store("v", 0) {
			b.Fatal("store refused")
		}
	}
	return c, keys
}

func benchGetHit(b *testing.B, cfg Config) {
	c, keys := benchCache(b, cfg)
	var seq atomic.Uint32
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		// Each goroutine walks the keys from its own offset, by a stride
		// coprime with benchKeys.
		i := int(seq.Add(1)) * 97
		for pb.Next() {
			if _, ok := c.Get(keys[i%benchKeys]); !ok {
				b.Fatal("miss")
			}
			i += 31
		}
	})
}

// BenchmarkGetHit measures a hit with the default shard count; run it with
// -cpu 1,2,4 to see how it scales.
func BenchmarkGetHit(b *testing.B) {
	benchGetHit(b, Config{})
}

// BenchmarkGetHitSingleMutex is BenchmarkGetHit with one shard: one mutex
// and one LRU list for every key, as golang-lru's own locked Cache.
func BenchmarkGetHitSingleMutex(b *testing.B) {
	benchGetHit(b, Config{Shards: 1})
}

// BenchmarkDoHit measures Do answered from the cache.
func BenchmarkDoHit(b *testing.B) {
	c, keys := benchCache(b, Config{})
	load := func(context.Context) (string, time.Duration, error) {
		b.Fatal("load on a hit")
		return "", 0, nil
	}
	var seq atomic.Uint32
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		i := int(seq.Add(1)) * 97
		for pb.Next() {
			if _, err := c.Do(ctx, keys[i%benchKeys], load); err != nil {
				b.Fatal(err)
			}
			i += 31
		}
	})
}

// benchDoMiss runs Do from 8 goroutines per CPU, spread over 4 keys, with a
// load that takes latency and returns an already expired value, so that
// nothing is stored and every call misses. Concurrent callers of a key share
// a flight; loads/op reports the fraction of calls that ran a load.
func benchDoMiss(b *testing.B, latency time.Duration) {
	c, err := New[string](Config{})
	if err != nil {
		b.Fatal(err)
	}
	keys := []Key{{Org: "o", User: "1"}, {Org: "o", User: "2"}, {Org: "o", User: "3"}, {Org: "o", User: "4"}}
	const expired = -time.Nanosecond // already expired: nothing is stored
	load := func(context.Context) (string, time.Duration, error) {
		if latency > 0 {
			time.Sleep(latency) // stands for the database query
		}
		return "v", expired, nil
	}
	var seq atomic.Uint32
	b.ReportAllocs()
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		k := keys[int(seq.Add(1))%len(keys)]
		for pb.Next() {
			if _, err := c.Do(ctx, k, load); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.StopTimer()
	// A stored value would answer later calls as hits, and loads/op would
	// count them as saved by coalescing: every call must have missed.
	if st := c.Stats(); st.Hits != 0 || st.Entries != 0 {
		b.Fatalf("%d hits, %d entries: the load's value was stored", st.Hits, st.Entries)
	}
	b.ReportMetric(float64(c.Stats().Loads)/float64(b.N), "loads/op")
}

// BenchmarkDoMiss measures the overhead of the miss path (flight, goroutine,
// registration) with a load that returns at once, so that callers rarely
// overlap.
func BenchmarkDoMiss(b *testing.B) {
	benchDoMiss(b, 0)
}

// BenchmarkDoMissCoalesced gives the load 100µs of simulated query latency:
// callers of a key pile up on one flight, and loads/op shows how many
// queries coalescing saves.
func BenchmarkDoMissCoalesced(b *testing.B) {
	benchDoMiss(b, 100*time.Microsecond)
}
