package membership

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orgperm/orgperm/pkg/listener"
	"github.com/orgperm/orgperm/pkg/localcache"
)

// Config configures a [Client]. Its zero value means "defaults".
type Config struct {
	// Capacity is the most permission sets (and user-wide answers) the local
	// cache holds. Defaults to 10,000.
	Capacity int

	// TTL is the safety TTL: no entry lives longer than this after its fill
	// began, whatever the notifications say. Defaults to 5 minutes, as in the
	// seed design.
	TTL time.Duration

	// HeartbeatInterval is how often the listener checks that its connection
	// still delivers notifications. Defaults to 5 seconds.
	HeartbeatInterval time.Duration

	// HeartbeatTimeout is how long a heartbeat may take to come back before
	// the cache is marked unsynced and the connection replaced. Defaults to
	// 2 seconds.
	HeartbeatTimeout time.Duration

	// ListenerConnect opens the listener's dedicated connection. It must be a
	// direct connection, never through a transaction pooler. Defaults to a
	// new connection with the pool's configuration.
	ListenerConnect func(ctx context.Context) (*pgx.Conn, error)

	// RewarmKeys is how many of the most recently used keys are loaded
	// again, in one round trip, after the listener resyncs (which purges the
	// cache), so that a reconnect does not become a burst of misses. Zero
	// turns it off. Defaults to 0: off, because a re-warm is a query the app
	// did not ask for, and most apps refill fast enough on demand.
	RewarmKeys int

	// Logger receives listener state changes and errors. Defaults to a
	// logger that discards everything.
	Logger *slog.Logger

	// Now is the clock permission sets are evaluated against. Defaults to
	// time.Now.
	Now func() time.Time

	// OnInvalidate, when set, is called after each notification has been
	// applied to the cache (err is the payload's parse error, if any). It is
	// a hook for tests and metrics. Defaults to nil.
	OnInvalidate func(inv listener.Invalidation, err error)

	// OnStateChange, when set, is called when the listener's state changes.
	// Defaults to nil.
	OnStateChange func(listener.State)

	// AfterLoad, when set, runs after each cache fill's query returns and
	// before the cache decides whether to store the result. It is a hook for
	// tests that hold a fill at that point (the race of correctness rule 1).
	// Defaults to nil.
	AfterLoad func(Key)
}

func (cfg Config) resolve() (Config, error) {
	if cfg.Capacity < 0 {
		return cfg, &ConfigError{Field: "Capacity", Reason: "must not be negative"}
	}
	if cfg.Capacity == 0 {
		cfg.Capacity = 10_000
	}
	if cfg.TTL < 0 {
		return cfg, &ConfigError{Field: "TTL", Reason: "must not be negative"}
	}
	if cfg.TTL == 0 {
		cfg.TTL = 5 * time.Minute
	}
	if cfg.RewarmKeys < 0 {
		return cfg, &ConfigError{Field: "RewarmKeys", Reason: "must not be negative"}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return cfg, nil
}

// ErrInvalidConfig is matched (errors.Is) by every [ConfigError].
var ErrInvalidConfig = errors.New("membership: invalid config")

// ConfigError reports an invalid [Config] field.
type ConfigError struct {
	Field  string
	Reason string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("membership: Config.%s %s", e.Field, e.Reason)
}

// Unwrap returns ErrInvalidConfig.
func (e *ConfigError) Unwrap() error { return ErrInvalidConfig }

// cached is what the local cache holds: a permission set under an (org,
// user) key, or a user-wide answer under a user-wide key (Org "").
type cached struct {
	set    *PermissionSet
	active UserActive
}

// Client answers permission checks from a local cache that stays correct:
// every check goes request memo → local cache → single flight → [Store],
// and a listener evicts what the database's triggers say changed.
//
// A Client is safe for concurrent use. Create one per process with [New]
// and stop it with [Client.Close].
type Client struct {
	store    *Store
	cache    *localcache.Cache[cached]
	listener *listener.Listener
	cfg      Config

	wg      sync.WaitGroup
	closed  chan struct{}
	closeMu sync.Once
}

var (
	_ Checker         = (*Client)(nil)
	_ listener.Target = (*cacheTarget)(nil)
)

// Checker answers permission checks. [Client] implements it; the HTTP
// middleware depends on this interface only.
type Checker interface {
	Permissions(ctx context.Context, org, user string) (*PermissionSet, error)
}

// New returns a Client over pool and starts its listener. It connects the
// listener once before returning, so an obvious misconfiguration fails
// here; ctx bounds only that first connection. Until the listener has
// synced (see [Client.Ready]), checks go to the database.
func New(ctx context.Context, pool *pgxpool.Pool, cfg Config) (*Client, error) {
	if pool == nil {
		return nil, &ConfigError{Field: "pool", Reason: "must not be nil"}
	}
	// The cache gets the app's clock only if it set one: with its own
	// default, a lookup reads the cheaper monotonic clock.
	cacheNow := cfg.Now
	cfg, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	cache, err := localcache.New[cached](localcache.Config{Capacity: cfg.Capacity, TTL: cfg.TTL, Now: cacheNow})
	if err != nil {
		return nil, fmt.Errorf("membership: %w", err)
	}
	c := &Client{store: NewStore(pool), cache: cache, cfg: cfg, closed: make(chan struct{})}
	c.store.OnWrite = c.evictScope
	// Unsynced until the listener's first LISTEN and purge.
	cache.MarkUnsynced()
	l, err := listener.New(pool, &cacheTarget{c}, listener.Config{
		Connect:           cfg.ListenerConnect,
		HeartbeatInterval: cfg.HeartbeatInterval,
		HeartbeatTimeout:  cfg.HeartbeatTimeout,
		Logger:            cfg.Logger,
		OnNotification:    cfg.OnInvalidate,
		OnStateChange:     cfg.OnStateChange,
	})
	if err != nil {
		return nil, fmt.Errorf("membership: %w", err)
	}
	c.listener = l
	if err := l.Start(ctx); err != nil {
		return nil, fmt.Errorf("membership: start listener: %w", err)
	}
	return c, nil
}

// Close stops the listener and waits for background work. It is
// idempotent. Checks after Close still answer, from the database.
func (c *Client) Close(ctx context.Context) error {
	var err error
	c.closeMu.Do(func() {
		close(c.closed)
		err = c.listener.Stop(ctx)
		c.wg.Wait()
		c.cache.MarkUnsynced()
	})
	return err
}

// Store returns the store the client reads and writes through. Its admin
// writes evict this client's cache at once (read-your-writes); the
// triggers evict every other instance.
func (c *Client) Store() *Store { return c.store }

// Ready is closed once the listener has synced for the first time; from
// then on, checks are answered from the cache.
func (c *Client) Ready() <-chan struct{} { return c.listener.Ready() }

// Stats is a snapshot of a client's cache and listener counters.
type Stats struct {
	Cache    localcache.Stats
	Listener listener.Stats
}

// Stats returns the cache and listener counters.
func (c *Client) Stats() Stats {
	return Stats{Cache: c.cache.Stats(), Listener: c.listener.Stats()}
}

// FullyConsistent returns a context whose checks bypass the local cache and
// read straight from the database (the request memo too), for the rare
// caller who cannot accept even notification delay.
func FullyConsistent(ctx context.Context) context.Context {
	o := optionsFrom(ctx)
	if o.consistent {
		return ctx
	}
	o.consistent = true
	return context.WithValue(ctx, optionsKey{}, &o)
}

// optionsKey carries a *checkOptions: one context lookup per check, however
// deep the request's context is.
type optionsKey struct{}

// checkOptions are what a context says about its checks.
type checkOptions struct {
	memo       *requestMemo // WithRequestCache
	consistent bool         // FullyConsistent
}

func optionsFrom(ctx context.Context) checkOptions {
	if o, _ := ctx.Value(optionsKey{}).(*checkOptions); o != nil {
		return *o
	}
	return checkOptions{}
}

// Permissions returns the permission set of user in org. It never returns
// a nil set with a nil error; on error the caller must deny (fail closed).
func (c *Client) Permissions(ctx context.Context, org, user string) (*PermissionSet, error) {
	opts := optionsFrom(ctx)
	consistent, memo := opts.consistent, opts.memo
	ck := localcache.Key{Org: org, User: user}
	// The hit path: no validation (an entry's key was validated when it was
	// filled, and an empty org, which would name a user-wide key, never gets
	// here), no closure, no allocation.
	if org != "" && !consistent {
		if memo != nil {
			if s, ok := memo.set(org, user); ok {
				return s, nil
			}
		}
		if v, ok := c.cache.Get(ck); ok {
			if memo != nil {
				memo.putSet(org, user, v.set)
			}
			return v.set, nil
		}
	}
	if err := checkID("org", org); err != nil {
		return nil, err
	}
	if err := checkID("user", user); err != nil {
		return nil, err
	}
	if consistent {
		return c.store.Load(ctx, org, user, c.cfg.Now())
	}
	k := Key{Org: org, User: user}
	v, err := c.cache.DoAfterGet(ctx, ck, func(ctx context.Context) (cached, time.Time, error) {
		s, err := c.store.Load(ctx, org, user, c.cfg.Now())
		if c.cfg.AfterLoad != nil {
			c.cfg.AfterLoad(k)
		}
		if err != nil {
			return cached{}, time.Time{}, err
		}
		return cached{set: s}, s.ValidUntil(), nil
	})
	if err != nil {
		return nil, err
	}
	if memo != nil {
		memo.putSet(org, user, v.set)
	}
	return v.set, nil
}

// UserHasActiveMembership reports whether user holds at least one
// membership, in any org, that is active and inside its window: the seed's
// user_has_active_membership. It is cached under a user-wide key; see the
// package documentation for which notifications evict it.
func (c *Client) UserHasActiveMembership(ctx context.Context, user string) (bool, error) {
	opts := optionsFrom(ctx)
	consistent, memo := opts.consistent, opts.memo
	ck := localcache.Key{User: user}
	if user != "" && !consistent { // the hit path, as in Permissions
		if memo != nil {
			if a, ok := memo.userActive(user); ok {
				return a, nil
			}
		}
		if v, ok := c.cache.Get(ck); ok {
			if memo != nil {
				memo.putUserActive(user, v.active.Active)
			}
			return v.active.Active, nil
		}
	}
	if err := checkID("user", user); err != nil {
		return false, err
	}
	if consistent {
		ua, err := c.store.LoadUserActive(ctx, user, c.cfg.Now())
		return ua.Active && err == nil, err
	}
	k := Key{User: user}
	v, err := c.cache.DoAfterGet(ctx, ck, func(ctx context.Context) (cached, time.Time, error) {
		ua, err := c.store.LoadUserActive(ctx, user, c.cfg.Now())
		if c.cfg.AfterLoad != nil {
			c.cfg.AfterLoad(k)
		}
		if err != nil {
			return cached{}, time.Time{}, err
		}
		return cached{active: ua}, ua.ValidUntil, nil
	})
	if err != nil {
		return false, err
	}
	if memo != nil {
		memo.putUserActive(user, v.active.Active)
	}
	return v.active.Active, nil
}

// IsActiveMember reports whether user is an active member of org now.
func (c *Client) IsActiveMember(ctx context.Context, org, user string) (bool, error) {
	s, err := c.Permissions(ctx, org, user)
	return err == nil && s.Active(), err
}

// HasPermission reports whether user holds codename in org.
func (c *Client) HasPermission(ctx context.Context, org, user, codename string) (bool, error) {
	s, err := c.Permissions(ctx, org, user)
	return err == nil && s.Has(codename), err
}

// HasAnyPermission reports whether user holds at least one of codenames in org.
func (c *Client) HasAnyPermission(ctx context.Context, org, user string, codenames ...string) (bool, error) {
	s, err := c.Permissions(ctx, org, user)
	return err == nil && s.HasAny(codenames...), err
}

// HasAllPermissions reports whether user holds every one of codenames in org.
func (c *Client) HasAllPermissions(ctx context.Context, org, user string, codenames ...string) (bool, error) {
	s, err := c.Permissions(ctx, org, user)
	return err == nil && s.HasAll(codenames...), err
}

// CanAccess reports whether user may access the record id of resourceType
// in org.
func (c *Client) CanAccess(ctx context.Context, org, user, resourceType, id string) (bool, error) {
	s, err := c.Permissions(ctx, org, user)
	return err == nil && s.CanAccess(resourceType, id), err
}

// AccessibleIDs returns the records of resourceType user may access in org:
// all of them, or the listed IDs (for WHERE id = ANY($1)). On error it
// returns all == false and no IDs.
func (c *Client) AccessibleIDs(ctx context.Context, org, user, resourceType string) (all bool, ids []string, err error) {
	s, err := c.Permissions(ctx, org, user)
	if err != nil {
		return false, nil, err
	}
	all, ids = s.AccessibleIDs(resourceType)
	return all, ids, nil
}

// Explain says whether user holds codename in org and why: the role that
// granted it, or the reason it was denied.
func (c *Client) Explain(ctx context.Context, org, user, codename string) (Decision, error) {
	s, err := c.Permissions(ctx, org, user)
	if err != nil {
		return Decision{}, err
	}
	return s.Explain(codename), nil
}

// Warm loads the permission sets of keys in one round trip and stores them
// in the cache (unless an invalidation covering a key arrives meanwhile),
// for an app that knows its hot users at start.
func (c *Client) Warm(ctx context.Context, keys []Key) error {
	if len(keys) == 0 {
		return nil
	}
	for _, k := range keys {
		if err := checkID("org", k.Org); err != nil {
			return err
		}
		if err := checkID("user", k.User); err != nil {
			return err
		}
	}
	ck := make([]localcache.Key, len(keys))
	for i, k := range keys {
		ck[i] = localcache.Key{Org: k.Org, User: k.User}
	}
	// Flights for every key not cached nor loading: readers that arrive
	// meanwhile join them instead of querying too.
	b := c.cache.BeginBatch(ctx, ck)
	if len(b.Keys()) == 0 {
		return nil
	}
	load := make([]Key, len(b.Keys()))
	for i, k := range b.Keys() {
		load[i] = Key{Org: k.Org, User: k.User}
	}
	sets, err := c.store.LoadMany(ctx, load, c.cfg.Now())
	if err != nil {
		b.Abort(err)
		return err
	}
	for i, s := range sets {
		b.Finish(i, cached{set: s}, s.ValidUntil())
	}
	return nil
}

// EvictMember evicts (org, user) on this instance. To evict on every
// instance, call the SQL function orgperm.evict_member.
func (c *Client) EvictMember(org, user string) {
	c.cache.InvalidateKey(localcache.Key{Org: org, User: user})
	c.cache.InvalidateKey(localcache.Key{User: user})
}

// EvictOrg evicts every key of org on this instance, and every user-wide
// answer (which may depend on a membership in org).
func (c *Client) EvictOrg(org string) {
	c.cache.InvalidateOrg(org)
	c.cache.InvalidateOrg("")
}

// EvictUser evicts every key of user, in every org, and the user-wide
// answer, on this instance.
func (c *Client) EvictUser(user string) { c.cache.InvalidateUser(user) }

// EvictAll empties this instance's cache.
func (c *Client) EvictAll() { c.cache.InvalidateAll() }

// evictScope is the Store's OnWrite hook: read-your-writes on this
// instance, before the notification arrives.
func (c *Client) evictScope(sc Scope) {
	switch {
	case sc.All:
		c.EvictAll()
	case sc.User != "":
		c.EvictMember(sc.Org, sc.User)
	default:
		c.EvictOrg(sc.Org)
	}
}

// rewarm reloads the hottest keys cached before a resync purge, in one
// round trip. It runs right after the purge, on the listener's goroutine,
// only to begin the flights (so that readers arriving from now on join them
// rather than query the same keys); the query itself runs in the
// background.
func (c *Client) rewarm(keys []localcache.Key) {
	select {
	case <-c.closed:
		return
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	b := c.cache.BeginBatch(ctx, keys)
	if len(b.Keys()) == 0 {
		cancel()
		return
	}
	load := make([]Key, len(b.Keys()))
	for i, k := range b.Keys() {
		load[i] = Key{Org: k.Org, User: k.User}
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer cancel()
		sets, err := c.store.LoadMany(ctx, load, c.cfg.Now())
		if err != nil {
			b.Abort(err)
			c.cfg.Logger.Warn("orgperm: re-warm after resync failed", "keys", len(load), "err", err)
			return
		}
		for i, s := range sets {
			b.Finish(i, cached{set: s}, s.ValidUntil())
		}
	}()
}

// cacheTarget is what the listener drives.
type cacheTarget struct{ c *Client }

// Invalidate maps a notification to cache evictions. User-wide answers
// depend only on the memberships table, so scopes from tables that cannot
// change a membership (roles, role_permissions, membership_roles,
// data_access) leave them alone; every other source, including "evict",
// malformed payloads and unknown future sources, evicts them too.
func (t *cacheTarget) Invalidate(inv listener.Invalidation) {
	cache := t.c.cache
	if inv.All {
		cache.InvalidateAll()
		return
	}
	userWide := affectsUserWide(inv.Source)
	for _, o := range inv.Orgs {
		cache.InvalidateOrg(o)
	}
	if userWide && len(inv.Orgs) > 0 {
		cache.InvalidateOrg("")
	}
	for _, m := range inv.Members {
		cache.InvalidateKey(localcache.Key{Org: m.Org, User: m.User})
		if userWide {
			cache.InvalidateKey(localcache.Key{User: m.User})
		}
	}
	for _, u := range inv.Users {
		cache.InvalidateUser(u)
	}
}

func affectsUserWide(source string) bool {
	switch source {
	case "roles", "role_permissions", "membership_roles", "data_access":
		return false
	}
	return true
}

func (t *cacheTarget) MarkUnsynced() { t.c.cache.MarkUnsynced() }

func (t *cacheTarget) Resync() {
	var hot []localcache.Key
	if n := t.c.cfg.RewarmKeys; n > 0 {
		for _, k := range t.c.cache.Keys() {
			if len(hot) == n {
				break
			}
			if k.Org != "" { // permission sets only; user-wide answers refill on demand
				hot = append(hot, k)
			}
		}
	}
	t.c.cache.Resync()
	if len(hot) > 0 {
		t.c.rewarm(hot)
	}
}
