package membership

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
	"unique"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orgperm/orgperm/internal/hooks"
	"github.com/orgperm/orgperm/pkg/listener"
	"github.com/orgperm/orgperm/pkg/localcache"
	"github.com/orgperm/orgperm/pkg/relay"
)

// DefaultLease is the default of Config.Lease: no answer is served from the
// cache more than this after the instance last proved that notifications
// reach it.
const DefaultLease = time.Second

// DefaultFillTimeout is the default of Config.FillTimeout.
const DefaultFillTimeout = 5 * time.Second

// Config configures a [Client]. Its zero value means "defaults".
type Config struct {
	// Capacity is the most permission sets (and user-wide answers) the local
	// cache holds. Defaults to 10,000.
	Capacity int

	// TTL is the safety TTL: no entry lives longer than this after its fill
	// began, whatever the notifications say. Defaults to 5 minutes, as in the
	// seed design.
	TTL time.Duration

	// Lease is the freshness lease, the staleness bound under any fault:
	// the cache answers only while the instance's last proof of delivery (a
	// notification sent through the pool after an instant, come back on the
	// listening connection) is younger than Lease; past it, checks read the
	// database while a new proof is fetched. Proofs are fetched while
	// checks arrive (an idle instance sends none), one at a time, and one
	// instance's proof refreshes every instance's lease. At most 1 minute.
	// Defaults to DefaultLease (1 second).
	Lease time.Duration

	// ProofTimeout is how long a proof of delivery may take to come back
	// before the cache is bypassed and the listening connection replaced.
	// Getting a connection for it from the pool has as long again; a proof
	// that gets none (the pool exhausted) replaces nothing and purges
	// nothing: the lease runs out until one can (listener.ErrProofNotSent).
	// Defaults to 2 seconds.
	ProofTimeout time.Duration

	// FillTimeout bounds each read the Client makes on a check's behalf
	// (a cache fill, a check while the cache is bypassed, a
	// FullyConsistent check) and a check's wait for its consistency
	// token, whatever the caller's context. A pooled connection that a
	// silent network drop left dead (no FIN, no RST: a moved virtual IP, a
	// lost NAT entry) answers nothing, and the operating system gives it
	// up only after about 15 minutes; without a bound, a check whose
	// context has no deadline would wait that long, and so would every
	// check of the same key (they share its fill). Past it the check fails
	// closed with an error matching context.DeadlineExceeded, and pgx
	// closes the dead connection. Defaults to DefaultFillTimeout (5
	// seconds).
	FillTimeout time.Duration

	// ListenerConnect opens the listener's dedicated connection. It must be a
	// direct connection (or through a session-mode pooler), never through a
	// transaction pooler: there the proof of delivery never comes back, and
	// the cache stays bypassed (see [Client.Check]). Defaults to a new
	// connection with the pool's configuration.
	ListenerConnect func(ctx context.Context) (*pgx.Conn, error)

	// AllowUncached lets New succeed when the database's invalidation side
	// is not whole (schema missing or too old, a notify trigger dropped or
	// disabled): checks then read the database, and Check, the log (WARN)
	// and the metrics say why. Defaults to false: New fails with a
	// *SchemaError.
	AllowUncached bool

	// RewarmKeys is how many of the most recently used keys are loaded
	// again, in one round trip, after the listener resyncs (which purges the
	// cache), so that a reconnect does not become a burst of misses. Zero
	// turns it off. Defaults to 0: off, because a re-warm is a query the app
	// did not ask for, and most apps refill fast enough on demand.
	RewarmKeys int

	// Logger receives listener state changes and errors. Defaults to a
	// logger that discards everything.
	Logger *slog.Logger

	// Now is the local clock the cache counts entry lifetimes on (only its
	// monotonic reading is used). Permission windows are never judged on
	// it: every answer is evaluated at the database's clock. The listener
	// watches it against the wall clock and purges the cache when it stood
	// still (a system suspend: listener.ErrClockStopped). For tests.
	// Defaults to time.Now.
	Now func() time.Time

	// OnInvalidate, when set, is called after each notification has been
	// applied to the cache (err is the payload's parse error, if any), for
	// metrics. Defaults to nil.
	OnInvalidate func(inv listener.Invalidation, err error)

	// OnStateChange, when set, is called when the listener's state changes.
	// Defaults to nil.
	OnStateChange func(listener.State)

	// Replica, when set, is a pool on a streaming standby of the primary
	// that pool connects to (or several, each connection on one): cache
	// fills read it once it has replayed every write whose invalidation
	// this instance applied before the fill began, and read the primary
	// when it has not within ReplicaWait, fails, or is not in recovery.
	// Writes, the listener, batch warm-ups and FullyConsistent checks
	// always use the primary. See [ReplicaStats]. Defaults to nil: fills
	// read the primary.
	Replica *pgxpool.Pool

	// RoleCapacity is the most organizations whose role definitions (every
	// role usable in the org: its name, its permissions, the org's data
	// grants to it) the Client keeps, so that a cache fill reads only the
	// member's own rows and takes what the held roles grant from these
	// definitions (see the package documentation, "Role definitions").
	// They are read in one statement per org when missing and evicted by
	// the notifications that evict the org's permission sets. A negative
	// value turns them off: every fill reads the role tables. Defaults to
	// 1,000.
	RoleCapacity int

	// ReplicaWait bounds how long a fill waits for a free Replica
	// connection and for the replica to replay what it must show, before
	// it reads the primary instead. Defaults to DefaultReplicaWait (50
	// ms).
	ReplicaWait time.Duration

	// Relay runs the queue relay on this instance (package relay): needed
	// once the database is in queue mode (orgperm.set_transport('queue'),
	// README "Scaling"), where writers' payloads wait in orgperm.queue
	// until a relay sends them. Run it on several instances: one leads at a
	// time, the others take over when it dies. Without a leading relay, a
	// queue-mode cache bypasses itself (its proofs never come back).
	// Defaults to false.
	Relay bool

	// RelayInterval is the leading relay's pause between rounds; an
	// invalidation waits about half of it more in queue mode. Defaults to
	// relay.DefaultInterval (5 ms).
	RelayInterval time.Duration

	// RelayConnect opens the relay's dedicated connection (direct or
	// session-mode: it holds a session-level advisory lock). Defaults to
	// ListenerConnect when that is set (the listener needs a session too),
	// else to a new connection with the pool's configuration,
	// application_name orgperm_relay.
	RelayConnect func(ctx context.Context) (*pgx.Conn, error)
}

func (cfg Config) resolve() (Config, error) {
	switch {
	case cfg.Capacity < 0:
		return cfg, &ConfigError{Field: "Capacity", Reason: "must not be negative"}
	case cfg.TTL < 0:
		return cfg, &ConfigError{Field: "TTL", Reason: "must not be negative"}
	case cfg.Lease < 0 || cfg.Lease > time.Minute:
		return cfg, &ConfigError{Field: "Lease", Reason: "must be between 0 (default) and 1 minute"}
	case cfg.ProofTimeout < 0:
		return cfg, &ConfigError{Field: "ProofTimeout", Reason: "must not be negative"}
	case cfg.FillTimeout < 0:
		return cfg, &ConfigError{Field: "FillTimeout", Reason: "must not be negative"}
	case cfg.RewarmKeys < 0:
		return cfg, &ConfigError{Field: "RewarmKeys", Reason: "must not be negative"}
	case cfg.ReplicaWait < 0:
		return cfg, &ConfigError{Field: "ReplicaWait", Reason: "must not be negative"}
	case cfg.RelayInterval < 0:
		return cfg, &ConfigError{Field: "RelayInterval", Reason: "must not be negative"}
	}
	if cfg.ReplicaWait == 0 {
		cfg.ReplicaWait = DefaultReplicaWait
	}
	if cfg.RoleCapacity == 0 {
		cfg.RoleCapacity = 1_000
	}
	if cfg.Capacity == 0 {
		cfg.Capacity = 10_000
	}
	if cfg.TTL == 0 {
		cfg.TTL = 5 * time.Minute
	}
	if cfg.Lease == 0 {
		cfg.Lease = DefaultLease
	}
	if cfg.FillTimeout == 0 {
		cfg.FillTimeout = DefaultFillTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
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
	set *PermissionSet
	// perms is set.perms, zero for an inactive set (which holds none):
	// HasPermission tests its bit from the cache entry, without loading
	// the set (one dependent load fewer on a hit).
	perms  unique.Handle[permIndex]
	active bool
}

// setEntry is the cache value of s and the time it stays true after its
// fill began.
func setEntry(s *PermissionSet) (cached, time.Duration) {
	return cached{set: s, perms: s.perms}, timeLeft(s.ComputedAt(), s.ValidUntil())
}

// has is v.set.Has(codename): the bit test reads the index's bits alone,
// and only a set holding codenames outside the catalog goes on to Has.
func (v cached) has(codename string) bool {
	if v.perms == (unique.Handle[permIndex]{}) {
		return false
	}
	if id, ok := codes.fastLookup(codename); ok {
		if bits := v.perms.Value().bits; id/8 < uint32(len(bits)) && bits[id/8]&(1<<(id%8)) != 0 {
			return true
		}
	}
	return v.perms.Value().extra != "" && v.set.Has(codename)
}

// Client answers permission checks from a local cache that stays correct:
// every check goes request memo → local cache → single flight → [Store],
// and a listener evicts what the database's triggers say changed.
//
// A Client is safe for concurrent use. Create one per process with [New]
// and stop it with [Client.Close].
type Client struct {
	store    *Store
	pool     *pgxpool.Pool
	cache    *localcache.Cache[cached]
	listener *listener.Listener
	cfg      Config
	hooks    hooks.Client
	guardErr error // the last verification's error; guarded by guardMu
	guardMu  sync.Mutex
	replica  *replicaReader // nil without Config.Replica
	relay    *relay.Relay   // nil without Config.Relay

	// roles holds the role definitions of orgs under Key{Org: org} (see
	// roledefs.go); nil when Config.RoleCapacity is negative. It has no
	// lease of its own: fills read it only while cache is trusted.
	roles *localcache.Cache[*orgRoles]
	// roleLoads holds the orgs whose definitions a fill is reading, so
	// that a burst of misses in one org reads them once.
	roleLoads sync.Map

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

// New returns a Client over pool and starts its listener. It verifies the
// database's invalidation side first (schema version, every notify trigger
// present and enabled: one query) and fails with a *SchemaError if it is
// not whole, unless Config.AllowUncached; then it connects the listener
// once, so an obvious misconfiguration fails here; ctx bounds only these.
// Until the listener has proven delivery (see [Client.Ready]), checks go to
// the database.
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
	c := &Client{pool: pool, cfg: cfg, closed: make(chan struct{}), hooks: hooks.ClientFrom(ctx)}
	c.store = &Store{db: pool, onWrite: c.apply}
	if cfg.Replica != nil {
		c.replica = &replicaReader{pool: cfg.Replica, primary: pool, wait: cfg.ReplicaWait}
	}
	c.cache, err = localcache.New[cached](localcache.Config{
		Capacity:   cfg.Capacity,
		TTL:        cfg.TTL,
		Now:        cacheNow,
		Lease:      cfg.Lease,
		OnLeaseLow: c.requestProof,
	})
	if err != nil {
		return nil, fmt.Errorf("membership: %w", err)
	}
	if cfg.RoleCapacity > 0 {
		c.roles, err = localcache.New[*orgRoles](localcache.Config{
			Capacity: cfg.RoleCapacity,
			TTL:      cfg.TTL,
			Now:      cacheNow,
		})
		if err != nil {
			return nil, fmt.Errorf("membership: %w", err)
		}
	}
	// Unsynced until the listener has proven delivery and purged.
	c.markUnsynced()

	if _, err := c.verify(ctx); err != nil {
		if !cfg.AllowUncached {
			return nil, err
		}
		cfg.Logger.Warn("orgperm: the cache is bypassed: checks read the database", "err", err)
	}

	l, err := listener.New(pool, &cacheTarget{c}, listener.Config{
		Connect:        cfg.ListenerConnect,
		ProofTimeout:   cfg.ProofTimeout,
		Logger:         cfg.Logger,
		OnNotification: cfg.OnInvalidate,
		OnStateChange:  cfg.OnStateChange,
		Now:            cacheNow,
		Verify: func(ctx context.Context, fingerprint string) error {
			got, err := c.verify(ctx)
			if err == nil && got != fingerprint {
				// Changed between the proof and the check: the next
				// proof will say so, and this runs again.
				c.cfg.Logger.Info("orgperm: schema fingerprint moved while verifying", "proof", fingerprint, "now", got)
			}
			return err
		},
	})
	if err != nil {
		return nil, fmt.Errorf("membership: %w", err)
	}
	c.listener = l
	if err := c.startRelay(ctx); err != nil {
		return nil, err
	}
	if err := l.Start(ctx); err != nil {
		c.stopRelay(ctx)
		return nil, fmt.Errorf("membership: start listener: %w", err)
	}
	return c, nil
}

// requestProof is the cache's OnLeaseLow.
func (c *Client) requestProof() {
	if l := c.listener; l != nil {
		l.RequestProof()
	}
}

// Close stops the listener and waits for background work. It is
// idempotent. Checks after Close still answer, from the database.
func (c *Client) Close(ctx context.Context) error {
	var err error
	c.closeMu.Do(func() {
		close(c.closed)
		err = c.listener.Stop(ctx)
		if rerr := c.stopRelay(ctx); err == nil {
			err = rerr
		}
		c.wg.Wait()
		c.markUnsynced()
	})
	return err
}

// Store returns the store the client reads and writes through. Its admin
// writes evict this client's cache at once (read-your-writes); the
// triggers evict every other instance.
func (c *Client) Store() *Store { return c.store }

// Ready is closed once the listener has proven delivery and synced for the
// first time; from then on, checks are answered from the cache.
func (c *Client) Ready() <-chan struct{} { return c.listener.Ready() }

// Stats is a snapshot of a client's cache and listener counters.
type Stats struct {
	Cache localcache.Stats
	// Roles counts the role-definition cache, one entry per org (see
	// Config.RoleCapacity); zero when it is off.
	Roles    localcache.Stats
	Listener listener.Stats
	Replica  ReplicaStats // zero without Config.Replica
	Relay    relay.Stats  // zero without Config.Relay
}

// Stats returns the cache and listener counters.
func (c *Client) Stats() Stats {
	st := Stats{Cache: c.cache.Stats(), Listener: c.listener.Stats(), Replica: c.replica.stats()}
	if c.roles != nil {
		st.Roles = c.roles.Stats()
	}
	if c.relay != nil {
		st.Relay = c.relay.Stats()
	}
	return st
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
	memo       *requestMemo      // WithRequestCache
	consistent bool              // FullyConsistent
	token      listener.Position // WithToken: a position, LSN 0 for none
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
	if org == "" { // "" names a user-wide key in the cache: never a set
		return nil, checkID("org", org)
	}
	v, err := c.lookup(ctx, localcache.Key{Org: org, User: user})
	return v.set, err
}

// UserHasActiveMembership reports whether user holds at least one
// membership, in any org, that is active and inside its window: the seed's
// user_has_active_membership. It is cached under a user-wide key; see the
// package documentation for which notifications evict it.
func (c *Client) UserHasActiveMembership(ctx context.Context, user string) (bool, error) {
	v, err := c.lookup(ctx, localcache.Key{User: user})
	return v.active && err == nil, err
}

// lookup is the one check pipeline: request memo, local cache, single
// flight, store. k.Org "" is the user-wide answer of k.User. The hit path
// does no validation (an entry's key was validated when it was filled),
// calls no closure and allocates nothing.
func (c *Client) lookup(ctx context.Context, k localcache.Key) (cached, error) {
	opts := optionsFrom(ctx)
	if !opts.consistent && opts.token.LSN == 0 {
		if opts.memo != nil {
			if v, ok := opts.memo.get(k); ok {
				return v, nil
			}
		}
		if v, ok := c.cache.Get(k); ok {
			if opts.memo != nil {
				opts.memo.put(k, v)
			}
			return v, nil
		}
	}
	if err := checkKey(k); err != nil {
		return cached{}, err
	}
	consistent := opts.consistent
	if !consistent && opts.token.LSN != 0 {
		tctx, cancel := context.WithTimeout(ctx, c.cfg.FillTimeout)
		err := c.awaitToken(tctx, opts.token)
		cancel()
		switch {
		case errors.Is(err, listener.ErrProofNotSent):
			// No proof can be had now: the database answers.
			consistent = true
		case err != nil:
			return cached{}, err
		}
	}
	if consistent {
		ctx, cancel := context.WithTimeout(ctx, c.cfg.FillTimeout)
		defer cancel()
		v, _, err := c.load(ctx, k)
		return v, err
	}
	if opts.token.LSN != 0 {
		if v, ok := c.cache.Get(k); ok {
			if opts.memo != nil {
				opts.memo.put(k, v)
			}
			return v, nil
		}
	}
	v, err := c.cache.DoAfterGet(ctx, k, func(ctx context.Context) (cached, time.Duration, error) {
		// The flight's context has no deadline of its own (it ends when
		// every waiter has gone): FillTimeout bounds it.
		ctx, cancel := context.WithTimeout(ctx, c.cfg.FillTimeout)
		defer cancel()
		v, left, err := c.fill(ctx, k)
		if c.hooks.AfterLoad != nil {
			c.hooks.AfterLoad(k.Org, k.User)
		}
		return v, left, err
	})
	if err == nil && opts.memo != nil {
		opts.memo.put(k, v)
	}
	return v, err
}

// checkKey validates a cache key: a valid user, and a valid org unless
// user-wide.
func checkKey(k localcache.Key) error {
	if k.Org != "" {
		if err := checkID("org", k.Org); err != nil {
			return err
		}
	}
	return checkID("user", k.User)
}

// load reads k from the database, at the database's clock, and says how
// long the answer stays true with no write.
func (c *Client) load(ctx context.Context, k localcache.Key) (cached, time.Duration, error) {
	return c.loadFrom(ctx, c.store, k)
}

// loadFrom is load through store.
func (c *Client) loadFrom(ctx context.Context, store *Store, k localcache.Key) (cached, time.Duration, error) {
	if k.Org == "" {
		ua, err := store.LoadUserActive(ctx, k.User, time.Time{})
		if err != nil {
			return cached{}, 0, err
		}
		return cached{active: ua.Active}, timeLeft(ua.At, ua.ValidUntil), nil
	}
	s, err := store.Load(ctx, k.Org, k.User, time.Time{})
	if err != nil {
		return cached{}, 0, err
	}
	v, left := setEntry(s)
	return v, left, nil
}

// timeLeft is how long after at an answer true until until (zero: no end)
// stays true; 0 for no end.
func timeLeft(at, until time.Time) time.Duration {
	if until.IsZero() {
		return 0
	}
	if d := until.Sub(at); d > 0 {
		return d
	}
	return -1 // already over: not stored
}

// IsActiveMember reports whether user is an active member of org now.
func (c *Client) IsActiveMember(ctx context.Context, org, user string) (bool, error) {
	s, err := c.Permissions(ctx, org, user)
	return err == nil && s.Active(), err
}

// HasPermission reports whether user holds codename in org.
func (c *Client) HasPermission(ctx context.Context, org, user, codename string) (bool, error) {
	if org == "" {
		return false, checkID("org", org)
	}
	v, err := c.lookup(ctx, localcache.Key{Org: org, User: user})
	return err == nil && v.has(codename), err
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
	ck := make([]localcache.Key, len(keys))
	for i, k := range keys {
		ck[i] = localcache.Key{Org: k.Org, User: k.User}
		if err := checkMember(k.Org, k.User); err != nil {
			return err
		}
	}
	return c.fillBatch(ctx, ck)
}

// fillBatch is the one batch-fill path (Warm and the re-warm after a
// resync): flights for every key not cached nor loading, so that readers
// arriving meanwhile join them instead of querying too, then one round
// trip for all of them.
func (c *Client) fillBatch(ctx context.Context, keys []localcache.Key) error {
	return c.loadBatch(ctx, c.cache.BeginBatch(ctx, keys))
}

// loadBatch loads and finishes the flights of b.
func (c *Client) loadBatch(ctx context.Context, b *localcache.Batch[cached]) error {
	if len(b.Keys()) == 0 {
		return nil
	}
	load := make([]Key, len(b.Keys()))
	for i, k := range b.Keys() {
		load[i] = Key{Org: k.Org, User: k.User}
	}
	sets, err := c.store.LoadMany(ctx, load, time.Time{})
	if err != nil {
		b.Abort(err)
		return err
	}
	for i, s := range sets {
		v, left := setEntry(s)
		b.Finish(i, v, left)
	}
	return nil
}

// EvictMember evicts (org, user) on this instance. To evict on every
// instance, call the SQL function orgperm.evict_member.
func (c *Client) EvictMember(org, user string) {
	c.apply(memberInv(sourceEvict, org, user))
}

// EvictOrg evicts every key of org on this instance, and every user-wide
// answer (which may depend on a membership in org).
func (c *Client) EvictOrg(org string) { c.apply(orgInv(sourceEvict, org)) }

// EvictUser evicts every key of user, in every org, and the user-wide
// answer, on this instance.
func (c *Client) EvictUser(user string) {
	c.apply(listener.Invalidation{Source: sourceEvict, Users: []string{user}})
}

// EvictAll empties this instance's cache.
func (c *Client) EvictAll() { c.apply(listener.Invalidation{Source: sourceEvict, All: true}) }

// apply evicts what inv names from this instance's cache: the one eviction
// policy, for notifications, this instance's own writes and explicit
// evictions alike.
//
// The role definitions are evicted first: a fill registered after the
// permission sets were evicted then finds no definitions read before the
// write (a fill registered before is refused by rule 1 anyway).
func (c *Client) apply(inv listener.Invalidation) {
	c.replica.noteEviction() // before evicting: see replica.go
	if c.roles != nil {
		evictRoles(c.roles, inv)
	}
	evict(c.cache, inv)
}

// markUnsynced marks both caches unsynced, the role definitions first.
func (c *Client) markUnsynced() {
	if c.roles != nil {
		c.roles.MarkUnsynced()
	}
	c.cache.MarkUnsynced()
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
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer cancel()
		if err := c.loadBatch(ctx, b); err != nil {
			c.cfg.Logger.Warn("orgperm: re-warm after resync failed", "keys", len(keys), "err", err)
		}
	}()
}

// cacheTarget is what the listener drives.
type cacheTarget struct{ c *Client }

// Invalidate applies a notification.
func (t *cacheTarget) Invalidate(inv listener.Invalidation) {
	if t.c.hooks.DropInvalidations {
		return
	}
	t.c.apply(inv)
}

func (t *cacheTarget) MarkUnsynced() { t.c.markUnsynced() }

func (t *cacheTarget) Prove(at time.Time) { t.c.cache.Prove(at) }

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
	t.c.replica.noteEviction() // the purge stands for every write before it
	if t.c.roles != nil {
		t.c.roles.Resync() // first: see Client.apply
	}
	t.c.cache.Resync()
	if len(hot) > 0 {
		t.c.rewarm(hot)
	}
}
