package localcache

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestLockFreeLookups runs lock-free Gets against a writer that stores,
// invalidates by key, org and user, and purges, on one shard small enough
// that its table grows and is cleared again and again and CLOCK evicts
// constantly. Every hit must be the entry of the key asked for, and no Get
// that begins after an invalidation of its key returned may see a value
// stored before that invalidation (rule 1b of the package documentation).
func TestLockFreeLookups(t *testing.T) {
	t.Parallel()
	c, err := New[string](Config{Capacity: 200, Shards: 1, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	const nkeys = 400
	keys := make([]Key, nkeys)
	for i := range keys {
		keys[i] = Key{Org: "o" + strconv.Itoa(i%7), User: "u" + strconv.Itoa(i)}
	}
	// dead[i] is the newest generation of key i known invalidated: set
	// by the writer once the invalidation has returned.
	dead := make([]atomic.Int64, nkeys)

	stop := make(chan struct{})
	var hits, violations atomic.Int64
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for {
				select {
				case <-stop:
					return
				default:
				}
				i := r.IntN(nkeys)
				floor := dead[i].Load() // before the Get begins
				v, ok := c.Get(keys[i])
				if !ok {
					continue
				}
				hits.Add(1)
				name, gen, found := strings.Cut(v, "#")
				n, _ := strconv.ParseInt(gen, 10, 64)
				if !found || name != keys[i].User || n <= floor {
					if violations.Add(1) <= 5 {
						t.Errorf("Get(%v) = %q after generation %d was invalidated", keys[i], v, floor)
					}
				}
			}
		}()
	}

	r := rand.New(rand.NewPCG(9, 9))
	var gen int64
	stored := make([]int64, nkeys) // newest generation stored per key
	kill := func(match func(Key) bool) {
		for i, k := range keys {
			if match(k) {
				dead[i].Store(stored[i])
			}
		}
	}
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		for range 200 {
			i := r.IntN(nkeys)
			gen++
			if c.Begin(keys[i]).Store(fmt.Sprintf("%s#%d", keys[i].User, gen), 0) {
				stored[i] = gen
			}
		}
		switch i := r.IntN(nkeys); r.IntN(4) {
		case 0:
			c.InvalidateKey(keys[i])
			kill(func(k Key) bool { return k == keys[i] })
		case 1:
			c.InvalidateOrg(keys[i].Org)
			kill(func(k Key) bool { return k.Org == keys[i].Org })
		case 2:
			c.InvalidateUser(keys[i].User)
			kill(func(k Key) bool { return k.User == keys[i].User })
		case 3:
			c.InvalidateAll()
			kill(func(Key) bool { return true })
		}
	}
	close(stop)
	wg.Wait()
	if hits.Load() == 0 {
		t.Fatal("no Get hit: the test tested nothing")
	}
	t.Logf("%d hits, %d generations stored", hits.Load(), gen)
}

// TestHitsCountedExactly checks that hits counted from many goroutines at
// once, in the hit counter's stripes, add up exactly.
func TestHitsCountedExactly(t *testing.T) {
	t.Parallel()
	c, _ := setup(t, Config{})
	k := Key{Org: "o", User: "u"}
	mustDo(t, c, k, "v")
	const goroutines, each = 16, 1000
	var wg sync.WaitGroup
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if _, ok := c.Get(k); !ok {
					t.Error("miss")
					return
				}
			}
		}()
	}
	wg.Wait()
	if got := c.Stats().Hits; got != goroutines*each {
		t.Fatalf("Hits = %d after %d hits", got, goroutines*each)
	}
}
