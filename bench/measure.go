package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/orgperm/orgperm/internal/sidecheck"
	"github.com/orgperm/orgperm/pkg/listener"
	"github.com/orgperm/orgperm/pkg/membership"
)

// hitResult is one strategy's repeated check of a key it already answered.
type hitResult struct {
	NsPerOp     float64
	AllocsPerOp int64
	BytesPerOp  int64
	N           int
	// Min, Max and Rounds describe the rounds a median was taken from.
	Min, Max float64
	Rounds   int
}

// benchHit measures c answering (hotOrg, hotUser) again and again, with
// testing.Benchmark. ctx is the context of every check (a request's, for
// the request cache); one check before the loop fills whatever c caches.
//
// The run the figure comes from must have read the database exactly as the
// strategy's name says, or benchHit fails: once per check when queries
// (no cache), never otherwise (a Redis hit is a GET, a request cache hit
// the memo, an orgperm hit the local cache). The reads are counted outside
// the timer.
func benchHit(ctx context.Context, c checker, queries bool) (hitResult, error) {
	if ok, err := c.check(ctx, hotOrg, hotUser, codename); err != nil || !ok {
		return hitResult{}, fmt.Errorf("first check: ok=%v err=%v", ok, err)
	}
	var failure error
	var lastN int
	var lastReads uint64
	r := testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		before := c.reads()
		b.ResetTimer()
		for range b.N {
			ok, err := c.check(ctx, hotOrg, hotUser, codename)
			if err != nil || !ok {
				failure = fmt.Errorf("check: ok=%v err=%v", ok, err)
				return
			}
		}
		b.StopTimer()
		lastN, lastReads = b.N, c.reads()-before
	})
	if failure != nil {
		return hitResult{}, failure
	}
	if r.N == 0 {
		return hitResult{}, errors.New("testing.Benchmark ran no iteration")
	}
	want := uint64(0)
	if queries {
		want = uint64(r.N)
	}
	if lastN != r.N || lastReads != want {
		return hitResult{}, fmt.Errorf("the timed run of %d checks read the database %d times, want %d: "+
			"the strategy is not answering as its name says", r.N, lastReads, want)
	}
	return hitResult{
		NsPerOp:     float64(r.T.Nanoseconds()) / float64(r.N),
		AllocsPerOp: r.AllocsPerOp(),
		BytesPerOp:  r.AllocedBytesPerOp(),
		N:           r.N,
	}, nil
}

// hitBreakdown times two parts of an orgperm hit on their own: one read
// of the clock (the local cache reads it on every lookup, for expiry) and
// PermissionSet.Has on a set in hand.
func hitBreakdown(ctx context.Context, store *membership.Store) (clock, has hitResult, err error) {
	set, err := store.Load(ctx, hotOrg, hotUser, time.Time{})
	if err != nil {
		return clock, has, err
	}
	var sink bool
	measure := func(f func()) hitResult {
		r := testing.Benchmark(func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				f()
			}
		})
		return hitResult{NsPerOp: float64(r.T.Nanoseconds()) / float64(r.N), AllocsPerOp: r.AllocsPerOp(), BytesPerOp: r.AllocedBytesPerOp(), N: r.N}
	}
	// The cache reads the monotonic clock only (time.Since its epoch).
	clock = measure(func() { sink = (time.Since(epoch) == 0) != sink })
	has = measure(func() { sink = set.Has(codename) != sink })
	runtime.KeepAlive(sink)
	return clock, has, nil
}

// benchMiss times n checks of (hotOrg, hotUser), each after prepare has
// made it a miss (prepare is not timed). prepare returns the context of the
// check. Every kept sample must have read the database exactly once (a
// prepare that leaves the key cached fails it), counted outside the timer.
func benchMiss(ctx context.Context, n int, c checker, prepare func() (context.Context, error)) (samples, error) {
	out := make(samples, 0, n)
	for i := range n + n/10 { // the first tenth warms up and is dropped
		cctx, err := prepare()
		if err != nil {
			return nil, err
		}
		before := c.reads()
		start := time.Now()
		ok, err := c.check(cctx, hotOrg, hotUser, codename)
		d := time.Since(start)
		if err != nil || !ok {
			return nil, fmt.Errorf("check: ok=%v err=%v", ok, err)
		}
		if r := c.reads() - before; r != 1 && i >= n/10 {
			return nil, fmt.Errorf("check %d read the database %d times, want 1: the prepared miss was not a miss", i+1, r)
		}
		if i >= n/10 {
			out = append(out, d)
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// newInstance opens a pool and a Client on url: one app instance. It waits
// until the client's listener has synced, so that checks use the cache.
func newInstance(ctx context.Context, url string, cfg membership.Config) (*membership.Client, *pgxpool.Pool, error) {
	pcfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, nil, err
	}
	pcfg.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, nil, err
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, nil, err
	}
	c, err := membership.New(ctx, pool, cfg)
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	select {
	case <-c.Ready():
	case <-time.After(10 * time.Second):
		closeInstance(c, pool)
		return nil, nil, errors.New("orgperm listener did not sync within 10s")
	case <-ctx.Done():
		closeInstance(c, pool)
		return nil, nil, ctx.Err()
	}
	return c, pool, nil
}

func closeInstance(c *membership.Client, pool *pgxpool.Pool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = c.Close(ctx)
	pool.Close()
}

// epoch is the monotonic origin of the invalidation timestamps.
var epoch = time.Now()

func sinceEpoch() int64 { return int64(time.Since(epoch)) }

// probe is the key one invalidation round waits for, and when each
// instance's listener applied a notification covering it.
type probe struct {
	org, user string
	got       []atomic.Int64 // per instance: sinceEpoch when applied; 0 not yet
	left      atomic.Int32
	done      chan struct{}
	// other is the first covering invalidation that the write's trigger
	// did not send (not a memberships payload, or one evicting everything):
	// a sample it ended would not time the write's delivery.
	other atomic.Pointer[listener.Invalidation]
}

// fromWrite reports whether inv is what the membership UPDATE's trigger
// sends for (org, user): a memberships payload naming the member, its org
// or its user, not a blanket eviction.
func fromWrite(inv listener.Invalidation, org, user string) bool {
	return inv.Source == "memberships" && !inv.All && covers(inv, org, user)
}

// covers reports whether inv evicts (org, user).
func covers(inv listener.Invalidation, org, user string) bool {
	if inv.All {
		return true
	}
	for _, m := range inv.Members {
		if m.Org == org && m.User == user {
			return true
		}
	}
	for _, o := range inv.Orgs {
		if o == org {
			return true
		}
	}
	for _, u := range inv.Users {
		if u == user {
			return true
		}
	}
	return false
}

// invalResult is the invalidation delay to k instances.
type invalResult struct {
	K int
	// Delivery holds one sample per (write, instance): from just before the
	// write's Exec to that instance's OnInvalidate for the key.
	Delivery samples
	// AllK holds one sample per write: until the last of the k instances.
	AllK samples
	// Write holds one sample per write: the write's own round trip (its
	// triggers and commit). The notification leaves at commit, so it
	// bounds Delivery from under.
	Write samples
	// Wrong counts checks after an invalidation that did not return the
	// database's new answer (must be 0).
	Wrong int
}

// setStatusSQL is the raw SQL write of the invalidation rows, made on a
// connection of its own, outside any orgperm API.
const setStatusSQL = `UPDATE orgperm.memberships SET status = $3 WHERE org_id = $1 AND user_id = $2`

// rotation is how many invalOrg members the invalidation rounds write in
// turn; the last member is kept for the outside-write demonstration.
const rotation = invalUsers - 10

// staleUser is the invalOrg member of the outside-write demonstration.
var staleUser = fmt.Sprintf("inval-%03d", invalUsers-1)

// measureInvalidation starts k instances and makes n raw SQL writes (after
// n/10 unrecorded ones), each toggling one membership between active and
// suspended, and times each instance's eviction. active tracks the
// membership states between calls.
func measureInvalidation(ctx context.Context, url string, writer *pgx.Conn, k, n int, active map[string]bool) (invalResult, error) {
	res := invalResult{K: k}
	var cur atomic.Pointer[probe]
	clients := make([]*membership.Client, 0, k)
	pools := make([]*pgxpool.Pool, 0, k)
	defer func() {
		for i, c := range clients {
			closeInstance(c, pools[i])
		}
	}()
	for i := range k {
		c, pool, err := newInstance(ctx, url, membership.Config{
			OnInvalidate: func(inv listener.Invalidation, err error) {
				p := cur.Load()
				if p == nil || err != nil || !covers(inv, p.org, p.user) {
					return
				}
				if !fromWrite(inv, p.org, p.user) {
					p.other.CompareAndSwap(nil, &inv)
				}
				if p.got[i].CompareAndSwap(0, sinceEpoch()) && p.left.Add(-1) == 0 {
					close(p.done)
				}
			},
		})
		if err != nil {
			return res, fmt.Errorf("instance %d: %w", i+1, err)
		}
		clients, pools = append(clients, c), append(pools, pool)
	}
	warm := n / 10
	for i := range warm + n {
		user := fmt.Sprintf("inval-%03d", i%rotation)
		// Every instance holds the key before the write.
		for _, c := range clients {
			if ok, err := c.HasPermission(ctx, invalOrg, user, codename); err != nil || ok != active[user] {
				return res, fmt.Errorf("before write: %s: ok=%v want %v err=%v", user, ok, active[user], err)
			}
		}
		p := &probe{org: invalOrg, user: user, got: make([]atomic.Int64, k), done: make(chan struct{})}
		p.left.Store(int32(k))
		cur.Store(p)
		status := "active"
		if active[user] {
			status = "suspended"
		}
		t0 := sinceEpoch()
		if _, err := writer.Exec(ctx, setStatusSQL, invalOrg, user, status); err != nil {
			return res, fmt.Errorf("write: %w", err)
		}
		wrote := sinceEpoch()
		active[user] = !active[user]
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			return res, fmt.Errorf("%d of %d instances did not see the write to %s within 5s", p.left.Load(), k, user)
		case <-ctx.Done():
			return res, ctx.Err()
		}
		cur.Store(nil)
		if inv := p.other.Load(); inv != nil {
			return res, fmt.Errorf("write to %s: an invalidation the write did not send covered the key (source %q, all %v): the sample would not time the write's delivery", user, inv.Source, inv.All)
		}
		if i >= warm {
			var last int64
			for j := range p.got {
				at := p.got[j].Load()
				res.Delivery = append(res.Delivery, time.Duration(at-t0))
				last = max(last, at)
			}
			res.AllK = append(res.AllK, time.Duration(last-t0))
			res.Write = append(res.Write, time.Duration(wrote-t0))
		}
		// Every instance now answers the database's new value.
		for _, c := range clients {
			if ok, err := c.HasPermission(ctx, invalOrg, user, codename); err != nil {
				return res, fmt.Errorf("after write: %w", err)
			} else if ok != active[user] {
				res.Wrong++
			}
		}
	}
	return res, nil
}

// redisInvalResult is the Redis strategy's invalidation: the writer DELs
// the key after its write commits.
type redisInvalResult struct {
	// Del is the DEL's round trip: from the commit's acknowledgement to the
	// DEL's, after which every instance's next GET misses.
	Del samples
	// WriteDel runs from just before the write's Exec to the DEL's
	// acknowledgement: the same span orgperm's delay is measured over.
	WriteDel samples
}

// measureRedisInvalidation makes n raw SQL writes (after n/10 unrecorded
// ones), each followed by the DEL the app's signal handler would send, and
// times them. The key is cached before each write.
func measureRedisInvalidation(ctx context.Context, rc *redisCache, writer *pgx.Conn, n int, active map[string]bool) (redisInvalResult, error) {
	var res redisInvalResult
	warm := n / 10
	for i := range warm + n {
		user := fmt.Sprintf("inval-%03d", i%rotation)
		if ok, err := rc.check(ctx, invalOrg, user, codename); err != nil || ok != active[user] {
			return res, fmt.Errorf("before write: %s: ok=%v want %v err=%v", user, ok, active[user], err)
		}
		status := "active"
		if active[user] {
			status = "suspended"
		}
		t0 := time.Now()
		if _, err := writer.Exec(ctx, setStatusSQL, invalOrg, user, status); err != nil {
			return res, fmt.Errorf("write: %w", err)
		}
		t1 := time.Now()
		if err := rc.invalidate(ctx, invalOrg, user); err != nil {
			return res, fmt.Errorf("DEL: %w", err)
		}
		t2 := time.Now()
		active[user] = !active[user]
		if i >= warm {
			res.Del = append(res.Del, t2.Sub(t1))
			res.WriteDel = append(res.WriteDel, t2.Sub(t0))
		}
		if ok, err := rc.check(ctx, invalOrg, user, codename); err != nil || ok != active[user] {
			return res, fmt.Errorf("after DEL: %s: ok=%v want %v err=%v", user, ok, active[user], err)
		}
	}
	return res, nil
}

// outsideWrite is what each strategy answered some time after a write made
// outside the app (raw SQL, no DEL) revoked the permission.
type outsideWrite struct {
	After          time.Duration // how long after the write the checks ran
	Truth          bool          // the database's answer then
	Redis          bool          // the Redis strategy's answer
	RedisTTL       time.Duration // what was left of the Redis key's TTL
	RequestSame    bool          // the request cache, in the request open across the write
	RequestNext    bool          // the request cache, in a new request
	Orgperm        bool          // orgperm's answer
	OrgpermEvicted time.Duration // orgperm's eviction delay for this write
	Write          time.Duration // the write's own round trip (triggers, commit)
}

// measureOutsideWrite suspends staleUser's membership with raw SQL, the
// way a script, a bulk UPDATE or psql would (no signal fires, so no DEL),
// waits wait, asks every strategy, then restores the membership.
func measureOutsideWrite(ctx context.Context, url string, writer *pgx.Conn, rc *redisCache, db noCache, reqc requestCache, wait time.Duration) (outsideWrite, error) {
	out := outsideWrite{After: wait}
	type eviction struct {
		at  time.Time
		inv listener.Invalidation
	}
	evicted := make(chan eviction, 1)
	c, pool, err := newInstance(ctx, url, membership.Config{
		OnInvalidate: func(inv listener.Invalidation, err error) {
			if err == nil && covers(inv, invalOrg, staleUser) {
				select {
				case evicted <- eviction{time.Now(), inv}:
				default:
				}
			}
		},
	})
	if err != nil {
		return out, err
	}
	defer closeInstance(c, pool)
	org := orgpermCache{c}
	reqCtx := membership.WithRequestCache(ctx)
	for _, s := range []struct {
		ctx context.Context
		c   checker
	}{{ctx, rc}, {ctx, org}, {reqCtx, reqc}} {
		if ok, err := s.c.check(s.ctx, invalOrg, staleUser, codename); err != nil || !ok {
			return out, fmt.Errorf("before write: ok=%v err=%v", ok, err)
		}
	}
	// The writer's backend has not run this statement yet: its first run
	// prepares it and compiles the trigger functions, tens of
	// milliseconds that would be timed as orgperm's eviction delay. The
	// same write, rolled back, does that and sends nothing.
	if err := rolledBack(ctx, writer, setStatusSQL, invalOrg, staleUser, "suspended"); err != nil {
		return out, fmt.Errorf("warm the writer: %w", err)
	}
	select {
	case e := <-evicted:
		return out, fmt.Errorf("an invalidation covering the key arrived before the write (source %q, all %v)", e.inv.Source, e.inv.All)
	default:
	}
	start := time.Now()
	if _, err := writer.Exec(ctx, setStatusSQL, invalOrg, staleUser, "suspended"); err != nil {
		return out, fmt.Errorf("write: %w", err)
	}
	out.Write = time.Since(start)
	defer func() {
		// Restore, and DEL as the app would after its own write.
		_, _ = writer.Exec(context.WithoutCancel(ctx), setStatusSQL, invalOrg, staleUser, "active")
		_ = rc.invalidate(context.WithoutCancel(ctx), invalOrg, staleUser)
	}()
	select {
	case e := <-evicted:
		if !fromWrite(e.inv, invalOrg, staleUser) || e.at.Before(start) {
			return out, fmt.Errorf("the key was evicted by an invalidation the write did not send (source %q, all %v, %v after the write began)", e.inv.Source, e.inv.All, e.at.Sub(start))
		}
		out.OrgpermEvicted = e.at.Sub(start)
	case <-time.After(5 * time.Second):
		return out, errors.New("orgperm did not see the outside write within 5s")
	}
	select {
	case <-time.After(time.Until(start.Add(wait))):
	case <-ctx.Done():
		return out, ctx.Err()
	}
	var errs [5]error
	out.Truth, errs[0] = db.check(ctx, invalOrg, staleUser, codename)
	out.Redis, errs[1] = rc.check(ctx, invalOrg, staleUser, codename)
	out.RequestSame, errs[2] = reqc.check(reqCtx, invalOrg, staleUser, codename)
	out.RequestNext, errs[3] = reqc.check(membership.WithRequestCache(ctx), invalOrg, staleUser, codename)
	out.Orgperm, errs[4] = org.check(ctx, invalOrg, staleUser, codename)
	if err := errors.Join(errs[:]...); err != nil {
		return out, err
	}
	out.RedisTTL, err = rc.rdb.TTL(ctx, rc.key(invalOrg, staleUser)).Result()
	return out, err
}

// writeResult is the throughput of one kind of membership UPDATE, with the
// orgperm triggers enabled and disabled.
type writeResult struct {
	Rows       int     // rows per statement
	On, Off    float64 // statements per second
	Statements [2]int  // statements run: on, off
}

// Ratio is the throughput with triggers over the throughput without.
func (w writeResult) Ratio() float64 { return w.On / w.Off }

// auditUpdateTrigger is the audit trail's trigger on the statement
// measureWrites times (migrations/00005_audit.sql). It is off on both sides:
// the ratio is the invalidation trigger's cost over a write with no trigger
// at all, as in the library's trigger benchmarks (docs/DECISIONS.md 47:
// audit rows on the "without" side flatter the ratio).
const auditUpdateTrigger = "memberships_audit_update"

// measureWrites runs UPDATE statements of rows membership rows (1: one
// member of bulkOrg; otherwise every member of bulkOrg) on writer for
// rounds × d with the update trigger enabled and as long disabled,
// alternating, while an instance's listener receives and applies the
// notifications. The audit trigger is off throughout. Before each round
// is timed, one such statement shows what the side sends (checkWriteSide).
// It leaves both triggers enabled.
func measureWrites(ctx context.Context, url string, writer *pgx.Conn, rows, rounds int, d time.Duration) (res writeResult, err error) {
	res.Rows = rows
	where, args := "org_id = $1 AND user_id = $2", []any{bulkOrg, "bulk-0000"}
	if rows != 1 {
		where, args = "org_id = $1", []any{bulkOrg}
	}
	update := sidecheck.FlipStatus + `
		WHERE ` + where
	alter := func(on bool, trigger string) error {
		verb := "DISABLE"
		if on {
			verb = "ENABLE"
		}
		_, err := writer.Exec(ctx, "ALTER TABLE orgperm.memberships "+verb+" TRIGGER "+trigger)
		return err
	}
	setTrigger := func(on bool) error { return alter(on, "memberships_notify_update") }
	defer func() {
		if e := setTrigger(true); e != nil && err == nil {
			err = fmt.Errorf("re-enable trigger: %w", e)
		}
		if e := alter(true, auditUpdateTrigger); e != nil && err == nil {
			err = fmt.Errorf("re-enable the audit trigger: %w", e)
		}
	}()
	if err := alter(false, auditUpdateTrigger); err != nil {
		return res, err
	}
	var elapsed [2]time.Duration
	for r := range rounds * 2 {
		mode := r % 2 // 0: triggers on, 1: off
		if err := setTrigger(mode == 0); err != nil {
			return res, err
		}
		if err := checkWriteSide(ctx, url, writer, update, args, rows, mode == 0); err != nil {
			return res, fmt.Errorf("triggers %s: %w", map[bool]string{true: "on", false: "off"}[mode == 0], err)
		}
		start := time.Now()
		for time.Since(start) < d {
			tag, err := writer.Exec(ctx, update, args...)
			if err != nil {
				return res, fmt.Errorf("update: %w", err)
			}
			if int(tag.RowsAffected()) != rows {
				return res, fmt.Errorf("update touched %d rows, want %d", tag.RowsAffected(), rows)
			}
			res.Statements[mode]++
		}
		elapsed[mode] += time.Since(start)
	}
	res.On = float64(res.Statements[0]) / elapsed[0].Seconds()
	res.Off = float64(res.Statements[1]) / elapsed[1].Seconds()
	return res, nil
}

// checkWriteSide runs update once on writer, committed, and fails unless
// the side is what it is named for (docs/DECISIONS.md 63): the audit
// trigger recorded nothing, and a listener got invalidations naming
// bulkOrg with the triggers on, none with them off.
func checkWriteSide(ctx context.Context, url string, writer *pgx.Conn, update string, args []any, rows int, on bool) error {
	audited := -1
	got, err := sidecheck.Notified(ctx, url, func(ctx context.Context) error {
		tx, err := writer.Begin(ctx)
		if err != nil {
			return err
		}
		defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
		tag, err := tx.Exec(ctx, update, args...)
		if err != nil {
			return err
		}
		if int(tag.RowsAffected()) != rows {
			return fmt.Errorf("update touched %d rows, want %d", tag.RowsAffected(), rows)
		}
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM orgperm.audit_log WHERE txid = txid_current()`).Scan(&audited); err != nil {
			return err
		}
		return tx.Commit(ctx)
	})
	if err != nil {
		return fmt.Errorf("side check: %w", err)
	}
	if audited != 0 {
		return fmt.Errorf("side check: the write left %d audit rows; the audit trigger must be off on both sides", audited)
	}
	if !on {
		if len(got) != 0 {
			return fmt.Errorf("side check: the write sent %d invalidations with the trigger off: %.200q", len(got), got)
		}
		return nil
	}
	if len(got) == 0 {
		return errors.New("side check: the write sent no invalidation with the trigger on")
	}
	for _, p := range got {
		inv, err := listener.ParsePayload(p)
		if err != nil || inv.Source != "memberships" || !covers(inv, bulkOrg, "bulk-0000") {
			return fmt.Errorf("side check: the write sent %.200q, not an invalidation of %s (err %v)", p, bulkOrg, err)
		}
	}
	return nil
}

// memResult is the memory one cached permission set takes.
type memResult struct {
	Entries         int
	OrgpermBytes    float64 // Go heap per entry (HeapAlloc delta / entries)
	RedisBytes      float64 // Redis used_memory delta / entries
	JSONBytes       float64 // mean size of a set's JSON (the Redis value)
	Codenames, Role int     // size of a typical set
}

// measureMemory caches the permission sets of every memKeys key in a fresh
// orgperm instance and, as JSON with the seed's TTL, in Redis, and divides
// each one's growth by the number of keys.
func measureMemory(ctx context.Context, url string, store *membership.Store, rc *redisCache) (memResult, error) {
	orgs, users := memKeys()
	keys := make([]membership.Key, len(orgs))
	for i := range orgs {
		keys[i] = membership.Key{Org: orgs[i], User: users[i]}
	}
	res := memResult{Entries: len(keys)}

	c, pool, err := newInstance(ctx, url, membership.Config{Capacity: 4 * len(keys)})
	if err != nil {
		return res, err
	}
	defer closeInstance(c, pool)
	before := heapAlloc()
	for i := 0; i < len(keys); i += 1000 {
		if err := c.Warm(ctx, keys[i:min(i+1000, len(keys))]); err != nil {
			return res, fmt.Errorf("warm: %w", err)
		}
	}
	after := heapAlloc()
	if n := c.Stats().Cache.Entries; n != len(keys) {
		return res, fmt.Errorf("orgperm cache holds %d entries after warming %d keys", n, len(keys))
	}
	res.OrgpermBytes = float64(int64(after)-int64(before)) / float64(len(keys))
	runtime.KeepAlive(c)

	set, err := store.Load(ctx, hotOrg, hotUser, time.Time{})
	if err != nil {
		return res, err
	}
	res.Codenames, res.Role = len(set.Permissions()), len(set.Roles())

	usedBefore, err := redisUsedMemory(ctx, rc.rdb)
	if err != nil {
		return res, err
	}
	var jsonBytes int
	for i := 0; i < len(keys); i += 1000 {
		batch := keys[i:min(i+1000, len(keys))]
		sets, err := store.LoadMany(ctx, batch, time.Time{})
		if err != nil {
			return res, fmt.Errorf("load: %w", err)
		}
		pipe := rc.rdb.Pipeline()
		for j, s := range sets {
			b, err := json.Marshal(s)
			if err != nil {
				return res, err
			}
			jsonBytes += len(b)
			pipe.Set(ctx, rc.key(batch[j].Org, batch[j].User), b, redisTTL)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return res, fmt.Errorf("redis SET: %w", err)
		}
	}
	usedAfter, err := redisUsedMemory(ctx, rc.rdb)
	if err != nil {
		return res, err
	}
	res.RedisBytes = float64(usedAfter-usedBefore) / float64(len(keys))
	res.JSONBytes = float64(jsonBytes) / float64(len(keys))
	return res, nil
}

// rolledBack runs sql on conn in a transaction that it rolls back: the
// statement's triggers run and are compiled in conn's backend, and nothing
// is committed or sent.
func rolledBack(ctx context.Context, conn *pgx.Conn, sql string, args ...any) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	_, err = tx.Exec(ctx, sql, args...)
	return err
}

// heapAlloc returns the live heap after two garbage collections.
func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func redisUsedMemory(ctx context.Context, rdb *redis.Client) (int64, error) {
	info, err := rdb.Info(ctx, "memory").Result()
	if err != nil {
		return 0, fmt.Errorf("redis: INFO memory: %w", err)
	}
	var n int64
	if _, err := fmt.Sscan(infoField(info, "used_memory"), &n); err != nil {
		return 0, fmt.Errorf("redis: used_memory: %w", err)
	}
	return n, nil
}

// deleteKeys removes every Redis key under prefix.
func deleteKeys(ctx context.Context, rdb *redis.Client, prefix string) error {
	iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	var batch []string
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 1000 {
			if err := rdb.Unlink(ctx, batch...).Err(); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	if len(batch) > 0 {
		return rdb.Unlink(ctx, batch...).Err()
	}
	return nil
}
