package localcache

import (
	"math/bits"
	"runtime"
	"time"
)

const (
	// DefaultCapacity is the total number of entries a Cache holds when
	// Config.Capacity is zero.
	DefaultCapacity = 10_000

	// DefaultTTL is the safety TTL used when Config.TTL is zero.
	DefaultTTL = 5 * time.Minute

	// MaxShards is the largest accepted Config.Shards.
	MaxShards = 1 << 16
)

// Config configures a Cache. Its zero value means "all defaults".
type Config struct {
	// Capacity is the maximum number of entries across all shards. It is
	// split evenly over the shards, each evicting on its own, so a skewed key
	// distribution can evict from one shard before the whole cache is full.
	// Defaults to DefaultCapacity (10,000).
	Capacity int

	// TTL is the safety TTL: no entry lives longer than TTL after its fill
	// began, whatever time left its load returned. Defaults to DefaultTTL
	// (5 minutes).
	TTL time.Duration

	// Shards is the number of shards, each with its own lock and eviction. It is
	// rounded up to a power of two, then lowered to the largest power of two
	// not above Capacity so that every shard holds at least one entry. At
	// most MaxShards. Defaults to the smallest power of two >= 4*GOMAXPROCS.
	Shards int

	// Now is the clock used for fill start times and expiry. Tests pass a
	// fake clock. Defaults to time.Now.
	Now func() time.Time

	// Lease, when positive, is the freshness lease: the cache answers only
	// until Lease after the newest proof recorded with Cache.Prove (a
	// proof says every invalidation issued before an instant has been
	// applied). Lookups past it are misses (counted as LeaseExpired), and
	// fills still land. Defaults to 0: no lease, the cache answers whenever
	// it is synced.
	Lease time.Duration

	// OnLeaseLow, when set, is called by a lookup once the lease is in its
	// last half (or over), at most once per proof: the owner should obtain
	// a new proof and record it with Prove. It runs on the caller's
	// goroutine, inside Get or Do: it must not block. Defaults to nil.
	OnLeaseLow func()
}

// resolve fills the defaults of cfg, validates it, and returns it with Shards
// set to the number of shards to build.
func (cfg Config) resolve() (Config, error) {
	if cfg.Capacity == 0 {
		cfg.Capacity = DefaultCapacity
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Shards == 0 {
		cfg.Shards = 4 * runtime.GOMAXPROCS(0)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}

	switch {
	case cfg.Capacity < 0:
		return cfg, &ConfigError{Field: "Capacity", Reason: "must be >= 0", Value: cfg.Capacity}
	case cfg.Lease < 0:
		return cfg, &ConfigError{Field: "Lease", Reason: "must be >= 0", Value: cfg.Lease}
	case cfg.TTL < 0:
		return cfg, &ConfigError{Field: "TTL", Reason: "must be >= 0", Value: cfg.TTL}
	case cfg.Shards < 0:
		return cfg, &ConfigError{Field: "Shards", Reason: "must be >= 0", Value: cfg.Shards}
	case cfg.Shards > MaxShards:
		return cfg, &ConfigError{Field: "Shards", Reason: "must be <= 65536", Value: cfg.Shards}
	}

	cfg.Shards = ceilPow2(cfg.Shards)
	if limit := floorPow2(cfg.Capacity); cfg.Shards > limit {
		cfg.Shards = limit
	}
	return cfg, nil
}

// ceilPow2 returns the smallest power of two >= n, for 1 <= n <= MaxShards.
func ceilPow2(n int) int {
	if n <= 1 {
		return 1
	}
	return 1 << bits.Len(uint(n-1))
}

// floorPow2 returns the largest power of two <= n, for n >= 1.
func floorPow2(n int) int {
	return 1 << (bits.Len(uint(n)) - 1)
}
