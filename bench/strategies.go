package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/orgperm/orgperm/pkg/membership"
)

// The strategies' names, as the tables show them.
const (
	nameNoCache   = "No cache (query per check)"
	nameRedis     = "Redis, 5 min TTL + DEL on write"
	nameRedisBool = "Redis, boolean per codename"
	nameRequest   = "Request cache only"
	nameOrgperm   = "orgperm"
)

// checker is one strategy's answer to HasPermission(org, user, codename).
type checker interface {
	check(ctx context.Context, org, user, codename string) (bool, error)
	// reads is how many times the strategy has read the database so far
	// (a query, a Store.Load, a cache fill): what shows, before a figure
	// is kept, that a hit made no round trip to PostgreSQL and that a miss
	// or an uncached check made exactly one (see benchHit, benchMiss).
	reads() uint64
}

// existsSQL is the no-cache strategy's query: the one statement an app
// without a cache would write for one check. It applies the same rules as
// Store.Load (active status, the membership window, the role assignment's
// end, a role of the org or a system role) but returns one boolean instead
// of the whole set, which makes it the cheapest query a check can make, so
// the ratios against it are the conservative ones.
const existsSQL = `
SELECT EXISTS (
    SELECT FROM orgperm.memberships m
    JOIN orgperm.membership_roles mr ON mr.org_id = m.org_id AND mr.user_id = m.user_id
    JOIN orgperm.roles r ON r.id = mr.role_id AND (r.org_id IS NULL OR r.org_id = m.org_id)
    JOIN orgperm.role_permissions rp ON rp.role_id = mr.role_id
    WHERE m.org_id = $1 AND m.user_id = $2 AND rp.codename = $3
      AND m.status = 'active'
      AND (m.valid_from IS NULL OR m.valid_from <= now())
      AND (m.valid_until IS NULL OR m.valid_until > now())
      AND (mr.valid_until IS NULL OR mr.valid_until > now())
)`

// noCache asks the database on every check (pgx prepares the statement
// once per connection). n counts the queries.
type noCache struct {
	pool *pgxpool.Pool
	n    *atomic.Uint64
}

func newNoCache(pool *pgxpool.Pool) noCache { return noCache{pool: pool, n: new(atomic.Uint64)} }

func (s noCache) check(ctx context.Context, org, user, codename string) (bool, error) {
	var ok bool
	s.n.Add(1)
	err := s.pool.QueryRow(ctx, existsSQL, org, user, codename).Scan(&ok)
	return ok, err
}

func (s noCache) reads() uint64 { return s.n.Load() }

// redisTTL is the seed's cache duration.
const redisTTL = 5 * time.Minute

// redisCache is the seed's default: a shared cache with a 5-minute TTL,
// emptied by an explicit DEL after each write the app makes (Django's model
// signals). It caches the permission set's JSON per (org, user), so that one
// entry answers every codename, like orgperm's.
type redisCache struct {
	rdb    *redis.Client
	store  *membership.Store
	prefix string
	loads  atomic.Uint64 // Store.Load calls: GETs that missed
}

func (s *redisCache) reads() uint64 { return s.loads.Load() }

func (s *redisCache) key(org, user string) string { return s.prefix + "set:" + org + ":" + user }

func (s *redisCache) check(ctx context.Context, org, user, codename string) (bool, error) {
	key := s.key(org, user)
	b, err := s.rdb.Get(ctx, key).Bytes()
	switch {
	case err == nil:
		var set membership.PermissionSet
		if err := json.Unmarshal(b, &set); err != nil {
			return false, fmt.Errorf("redis value of %s: %w", key, err)
		}
		return set.Has(codename), nil
	case !errors.Is(err, redis.Nil):
		return false, err
	}
	s.loads.Add(1)
	set, err := s.store.Load(ctx, org, user, time.Time{})
	if err != nil {
		return false, err
	}
	if b, err = json.Marshal(set); err != nil {
		return false, err
	}
	if err := s.rdb.Set(ctx, key, b, redisTTL).Err(); err != nil {
		return false, err
	}
	return set.Has(codename), nil
}

// invalidate is the signal handler's DEL, sent after the write commits.
func (s *redisCache) invalidate(ctx context.Context, org, user string) error {
	return s.rdb.Del(ctx, s.key(org, user)).Err()
}

// redisBool is the seed's exact shape: the boolean answer of one check in
// Redis (here per (org, user, codename)), falling back to the no-cache
// query. It is measured for hits only, as a lower bound of a Redis hit.
// db must be a noCache of its own: its count is this strategy's reads.
type redisBool struct {
	rdb    *redis.Client
	db     noCache
	prefix string
}

func (s *redisBool) reads() uint64 { return s.db.reads() }

func (s *redisBool) check(ctx context.Context, org, user, codename string) (bool, error) {
	key := s.prefix + "bool:" + org + ":" + user + ":" + codename
	v, err := s.rdb.Get(ctx, key).Result()
	switch {
	case err == nil:
		return v == "1", nil
	case !errors.Is(err, redis.Nil):
		return false, err
	}
	ok, err := s.db.check(ctx, org, user, codename)
	if err != nil {
		return false, err
	}
	val := "0"
	if ok {
		val = "1"
	}
	return ok, s.rdb.Set(ctx, key, val, redisTTL).Err()
}

// requestCache is the seed's second strategy: a memo per request
// (membership.WithRequestCache) in front of the database. Its client's
// shared cache is made useless by a 1 ns TTL, so that the first check of
// each request goes to the database, as the seed's does. ctx must come from
// WithRequestCache: one per request.
type requestCache struct{ client *membership.Client }

func (s requestCache) check(ctx context.Context, org, user, codename string) (bool, error) {
	return s.client.HasPermission(ctx, org, user, codename)
}

func (s requestCache) reads() uint64 { return clientReads(s.client) }

// orgpermCache is orgperm's Client.
type orgpermCache struct{ client *membership.Client }

func (s orgpermCache) check(ctx context.Context, org, user, codename string) (bool, error) {
	return s.client.HasPermission(ctx, org, user, codename)
}

func (s orgpermCache) reads() uint64 { return clientReads(s.client) }

// clientReads is how many times c has read the database for a check: every
// check its request memo and its local cache do not answer (a miss, a
// lookup past the lease or while unsynced) starts a load or joins one, and
// the counters say so. The benchmark makes no FullyConsistent or token
// check, the other ways to the database.
func clientReads(c *membership.Client) uint64 {
	st := c.Stats().Cache
	return st.Loads + st.Coalesced
}
