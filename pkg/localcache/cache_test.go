package localcache

import (
	"context"
	"slices"
	"testing"
	"time"
)

func TestGetDo(t *testing.T) {
	t.Parallel()
	c, _ := setup(t, Config{})
	k := Key{Org: "o1", User: "u1"}

	wantGet(t, c, k, "", false)
	if got := mustDo(t, c, k, "v1"); got != "v1" {
		t.Fatalf("Do = %q, want v1", got)
	}
	wantGet(t, c, k, "v1", true)
	if got := mustDo(t, c, k, "other"); got != "v1" {
		t.Fatalf("Do on a hit = %q, want the cached v1", got)
	}

	st := c.Stats()
	want := Stats{Hits: 2, Misses: 2, Loads: 1, Fills: 1, Entries: 1}
	if st != want {
		t.Errorf("Stats = %+v\nwant    %+v", st, want)
	}
}

func TestDoContextDoneOnEntry(t *testing.T) {
	t.Parallel()
	c, _ := setup(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.Do(ctx, Key{User: "u"}, func(context.Context) (string, time.Duration, error) {
		t.Error("load called with a done context")
		return "", 0, nil
	})
	if err != context.Canceled {
		t.Errorf("Do = %v, want context.Canceled", err)
	}
}

func TestGetHitDoesNotAllocate(t *testing.T) {
	c, _ := setup(t, Config{Shards: 8})
	k := Key{Org: "some-org-id", User: "some-user-id"}
	mustDo(t, c, k, "v")
	allocs := testing.AllocsPerRun(100, func() {
		if _, ok := c.Get(k); !ok {
			t.Fatal("miss")
		}
	})
	if allocs != 0 {
		t.Errorf("Get hit allocates %v times, want 0", allocs)
	}
}

// keysOfTest is the population of TestInvalidateScopes: two orgs, two users,
// and a user-wide key per user.
var keysOfTest = []Key{
	{Org: "o1", User: "u1"}, {Org: "o1", User: "u2"},
	{Org: "o2", User: "u1"}, {Org: "o2", User: "u2"},
	{Org: "", User: "u1"}, {Org: "", User: "u2"},
}

func TestInvalidateScopes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		invalidate func(*Cache[string])
		removed    []Key
		counter    func(Stats) uint64
	}{
		{
			name:       "key",
			invalidate: func(c *Cache[string]) { c.InvalidateKey(Key{Org: "o1", User: "u1"}) },
			removed:    []Key{{Org: "o1", User: "u1"}},
			counter:    func(st Stats) uint64 { return st.EvictedKey },
		},
		{
			name:       "user-wide key",
			invalidate: func(c *Cache[string]) { c.InvalidateKey(Key{User: "u1"}) },
			removed:    []Key{{User: "u1"}},
			counter:    func(st Stats) uint64 { return st.EvictedKey },
		},
		{
			name:       "absent key",
			invalidate: func(c *Cache[string]) { c.InvalidateKey(Key{Org: "o3", User: "u1"}) },
			counter:    func(st Stats) uint64 { return st.EvictedKey },
		},
		{
			name:       "org",
			invalidate: func(c *Cache[string]) { c.InvalidateOrg("o1") },
			removed:    []Key{{Org: "o1", User: "u1"}, {Org: "o1", User: "u2"}},
			counter:    func(st Stats) uint64 { return st.EvictedOrg },
		},
		{
			name:       "user-wide keys",
			invalidate: func(c *Cache[string]) { c.InvalidateOrg("") },
			removed:    []Key{{User: "u1"}, {User: "u2"}},
			counter:    func(st Stats) uint64 { return st.EvictedOrg },
		},
		{
			name:       "user",
			invalidate: func(c *Cache[string]) { c.InvalidateUser("u1") },
			removed:    []Key{{Org: "o1", User: "u1"}, {Org: "o2", User: "u1"}, {User: "u1"}},
			counter:    func(st Stats) uint64 { return st.EvictedUser },
		},
		{
			name:       "all",
			invalidate: func(c *Cache[string]) { c.InvalidateAll() },
			removed:    keysOfTest,
			counter:    func(st Stats) uint64 { return st.EvictedAll },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, _ := setup(t, Config{Shards: 4})
			for _, k := range keysOfTest {
				mustDo(t, c, k, k.Org+"/"+k.User)
			}
			tt.invalidate(c)
			for _, k := range keysOfTest {
				gone := slices.Contains(tt.removed, k)
				wantGet(t, c, k, map[bool]string{false: k.Org + "/" + k.User}[gone], !gone)
			}
			st := c.Stats()
			if got := tt.counter(st); got != uint64(len(tt.removed)) {
				t.Errorf("eviction counter = %d, want %d", got, len(tt.removed))
			}
			total := st.EvictedKey + st.EvictedOrg + st.EvictedUser + st.EvictedAll
			if total != uint64(len(tt.removed)) {
				t.Errorf("evictions in all scopes = %d, want %d", total, len(tt.removed))
			}
			if st.Entries != len(keysOfTest)-len(tt.removed) {
				t.Errorf("Entries = %d, want %d", st.Entries, len(keysOfTest)-len(tt.removed))
			}
		})
	}
}

func TestExpiry(t *testing.T) {
	t.Parallel()
	const ttl = time.Minute
	tests := []struct {
		name       string
		validUntil time.Duration // after the fill began; 0 for none
		expiresIn  time.Duration
	}{
		{"at validUntil", 10 * time.Second, 10 * time.Second},
		{"at TTL without validUntil", 0, ttl},
		{"at TTL before validUntil", 2 * ttl, ttl},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, clock := setup(t, Config{TTL: ttl})
			k := Key{Org: "o", User: "u"}
			_, err := c.Do(context.Background(), k, func(context.Context) (string, time.Duration, error) {
				return "v", tt.validUntil, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			clock.Advance(tt.expiresIn - time.Nanosecond)
			wantGet(t, c, k, "v", true)
			clock.Advance(time.Nanosecond) // the boundary instant is expired
			wantGet(t, c, k, "", false)
			if st := c.Stats(); st.Expired != 1 || st.Entries != 0 {
				t.Errorf("Expired = %d, Entries = %d; want 1, 0", st.Expired, st.Entries)
			}
		})
	}
}

// TestTTLFromFillStart checks that the TTL runs from when the load began, not
// from when its result was stored.
func TestTTLFromFillStart(t *testing.T) {
	t.Parallel()
	c, clock := setup(t, Config{TTL: time.Minute})
	k := Key{Org: "o", User: "u"}
	b := newBlocker("v")
	res := goDo(c, context.Background(), k, b.load)
	recv(t, b.started, "load start")
	clock.Advance(30 * time.Second)
	close(b.release)
	if r := recv(t, res, "Do"); r.err != nil {
		t.Fatal(r.err)
	}
	clock.Advance(30*time.Second - time.Nanosecond)
	wantGet(t, c, k, "v", true)
	clock.Advance(time.Nanosecond)
	wantGet(t, c, k, "", false)
}

func TestAlreadyExpiredIsNotStored(t *testing.T) {
	t.Parallel()
	c, clock := setup(t, Config{})
	k := Key{Org: "o", User: "u"}
	got, err := c.Do(context.Background(), k, func(context.Context) (string, time.Duration, error) {
		clock.Advance(time.Second) // the load took a second: the value was true for one
		return "v", time.Second, nil
	})
	if got != "v" || err != nil {
		t.Fatalf("Do = %q, %v; want v, nil", got, err)
	}
	if st := c.Stats(); st.Entries != 0 || st.Fills != 0 || st.Expired != 1 {
		t.Errorf("Entries = %d, Fills = %d, Expired = %d; want 0, 0, 1", st.Entries, st.Fills, st.Expired)
	}
}

func TestCapacityEviction(t *testing.T) {
	t.Parallel()
	c, _ := setup(t, Config{Capacity: 2, Shards: 1})
	k1, k2, k3 := Key{User: "1"}, Key{User: "2"}, Key{User: "3"}
	mustDo(t, c, k1, "1")
	mustDo(t, c, k2, "2")
	wantGet(t, c, k1, "1", true) // k2 is now least recently used
	mustDo(t, c, k3, "3")

	wantGet(t, c, k2, "", false)
	wantGet(t, c, k1, "1", true)
	wantGet(t, c, k3, "3", true)
	if st := c.Stats(); st.CapacityEvictions != 1 || st.Entries != 2 {
		t.Errorf("CapacityEvictions = %d, Entries = %d; want 1, 2", st.CapacityEvictions, st.Entries)
	}
}

func TestKeys(t *testing.T) {
	t.Parallel()
	t.Run("one shard, most recent first", func(t *testing.T) {
		t.Parallel()
		c, _ := setup(t, Config{Shards: 1})
		k1, k2, k3 := Key{User: "1"}, Key{User: "2"}, Key{User: "3"}
		for _, k := range []Key{k1, k2, k3} {
			mustDo(t, c, k, "v")
		}
		wantGet(t, c, k1, "v", true)
		if got, want := c.Keys(), []Key{k1, k3, k2}; !slices.Equal(got, want) {
			t.Errorf("Keys = %v, want %v", got, want)
		}
	})
	t.Run("shards, live only", func(t *testing.T) {
		t.Parallel()
		c, clock := setup(t, Config{Shards: 8, TTL: time.Minute})
		want := make(map[Key]bool)
		for i := range 100 {
			k := Key{Org: "o", User: string(rune('a' + i))}
			mustDo(t, c, k, "v")
			want[k] = true
		}
		short := Key{Org: "short", User: "lived"}
		_, err := c.Do(context.Background(), short, func(context.Context) (string, time.Duration, error) {
			return "v", time.Second, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Second)
		got := c.Keys()
		if len(got) != len(want) {
			t.Fatalf("Keys has %d keys, want %d", len(got), len(want))
		}
		for _, k := range got {
			if !want[k] {
				t.Errorf("Keys has unexpected %v", k)
			}
		}
	})
}
