package localcache

import (
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"
)

func TestNewRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		cfg     Config
		field   string
		message string
	}{
		{Config{Capacity: -1}, "Capacity", "localcache: Config.Capacity must be >= 0 (got -1)"},
		{Config{TTL: -time.Second}, "TTL", "localcache: Config.TTL must be >= 0 (got -1s)"},
		{Config{Shards: -2}, "Shards", "localcache: Config.Shards must be >= 0 (got -2)"},
		{Config{Shards: MaxShards + 1}, "Shards", "localcache: Config.Shards must be <= 65536 (got 65537)"},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			t.Parallel()
			c, err := New[int](tt.cfg)
			if c != nil || err == nil {
				t.Fatalf("New(%+v) = %v, %v; want an error", tt.cfg, c, err)
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("errors.Is(%v, ErrInvalidConfig) = false", err)
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Field != tt.field {
				t.Errorf("error %v: want a *ConfigError for field %s", err, tt.field)
			}
			if err.Error() != tt.message {
				t.Errorf("message %q, want %q", err.Error(), tt.message)
			}
		})
	}
}

func TestNewShards(t *testing.T) {
	t.Parallel()
	tests := []struct {
		cfg  Config
		want int
	}{
		{Config{Shards: 1}, 1},
		{Config{Shards: 3}, 4},
		{Config{Shards: 8}, 8},
		{Config{Shards: 9}, 16},
		{Config{Shards: MaxShards}, 8192}, // lowered to floorPow2(10,000)
		{Config{Capacity: 1}, 1},
		{Config{Capacity: 3, Shards: 8}, 2},
		{Config{Capacity: 1 << 20}, ceilPow2(4 * runtime.GOMAXPROCS(0))},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%+v", tt.cfg), func(t *testing.T) {
			t.Parallel()
			c, err := New[int](tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got := len(c.shards); got != tt.want {
				t.Errorf("shards = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestNewDefaults(t *testing.T) {
	t.Parallel()
	c, err := New[int](Config{})
	if err != nil {
		t.Fatal(err)
	}
	if c.ttl != DefaultTTL {
		t.Errorf("ttl = %v, want %v", c.ttl, DefaultTTL)
	}
	if !c.Synced() {
		t.Error("a new cache must start synced")
	}
	if got := len(c.shards); got&(got-1) != 0 || got < 4*runtime.GOMAXPROCS(0) {
		t.Errorf("shards = %d, want a power of two >= 4*GOMAXPROCS", got)
	}
}

// TestCapacityIsTotal checks that Capacity bounds the whole cache, not each
// shard, when it does not divide evenly.
func TestCapacityIsTotal(t *testing.T) {
	t.Parallel()
	c, _ := setup(t, Config{Capacity: 10, Shards: 4})
	for i := range 1000 {
		mustDo(t, c, Key{Org: "o", User: fmt.Sprint(i)}, "v")
	}
	if got := c.Len(); got != 10 {
		t.Errorf("Len = %d, want 10", got)
	}
	if st := c.Stats(); st.CapacityEvictions != 990 || st.Fills != 1000 {
		t.Errorf("CapacityEvictions = %d, Fills = %d; want 990, 1000", st.CapacityEvictions, st.Fills)
	}
}
