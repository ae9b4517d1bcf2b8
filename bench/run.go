package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/orgperm/orgperm/pkg/membership"
)

// results is everything one run measured.
type results struct {
	Machine      machine
	RedisAddr    string
	RedisStarted bool
	ExternalPG   bool
	Command      string
	LoadBefore   string // /proc/loadavg's 1-minute average at the start
	LoadAfter    string // and at the end
	Elapsed      time.Duration

	Hit        map[string]hitResult
	Clock      hitResult // one time.Now()
	Has        hitResult // PermissionSet.Has on a set in hand
	Miss       map[string]samples
	Inval      []invalResult
	RedisInval redisInvalResult
	Outside    outsideWrite
	Writes     []writeResult
	Mem        memResult
}

// instanceCounts are the numbers of instances of the invalidation rows.
var instanceCounts = []int{1, 4, 8}

// run sets up the database and Redis, measures every row and cleans up,
// logging its progress to logw.
func run(ctx context.Context, o options, logw io.Writer) (res results, err error) {
	logf := func(format string, args ...any) { fmt.Fprintf(logw, "bench: "+format+"\n", args...) }
	keep := func(e error) {
		if e != nil && err == nil {
			err = e
		}
	}

	res.LoadBefore = loadAverage()
	if l, err := strconv.ParseFloat(res.LoadBefore, 64); err == nil && l > float64(runtime.NumCPU())/2 {
		logf("warning: load average %s on %d CPUs: other work is running, and the timings will show it", res.LoadBefore, runtime.NumCPU())
	}
	defer func() { res.LoadAfter = loadAverage() }()
	rs, err := openRedis(ctx, o.Redis)
	if err != nil {
		return res, err
	}
	defer func() { keep(rs.Close()) }()
	res.RedisAddr, res.RedisStarted = rs.Addr, rs.Started
	if rs.Started {
		logf("started redis-server on %s (nothing answered at %s)", rs.Addr, o.Redis)
	}
	logf("starting PostgreSQL (or using DATABASE_URL) and creating a database")
	db, err := openDatabase(ctx)
	if err != nil {
		return res, err
	}
	defer func() { keep(db.Close()) }()
	res.ExternalPG = db.cluster == nil

	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr})
	defer rdb.Close()
	prefix := fmt.Sprintf("orgperm-bench:%d:", time.Now().UnixNano())
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if e := deleteKeys(ctx, rdb, prefix); e != nil {
			keep(fmt.Errorf("redis: delete the run's keys: %w", e))
		}
	}()

	pool, err := pgxpool.New(ctx, db.URL)
	if err != nil {
		return res, fmt.Errorf("postgres: %w", err)
	}
	defer pool.Close()
	logf("seeding %d orgs, %d memberships", memOrgs+2, memOrgs*memUsers+bulkUsers+invalUsers)
	if err := seed(ctx, pool); err != nil {
		return res, err
	}
	if res.Machine, err = describeMachine(ctx, db.URL, rdb); err != nil {
		return res, err
	}

	store := membership.NewStore(pool)
	none := newNoCache(pool)
	rc := &redisCache{rdb: rdb, store: store, prefix: prefix}
	rb := &redisBool{rdb: rdb, db: newNoCache(pool), prefix: prefix}
	reqClient, reqPool, err := newInstance(ctx, db.URL, membership.Config{TTL: time.Nanosecond})
	if err != nil {
		return res, fmt.Errorf("request cache instance: %w", err)
	}
	defer closeInstance(reqClient, reqPool)
	reqc := requestCache{reqClient}
	orgClient, orgPool, err := newInstance(ctx, db.URL, membership.Config{})
	if err != nil {
		return res, fmt.Errorf("orgperm instance: %w", err)
	}
	defer closeInstance(orgClient, orgPool)
	org := orgpermCache{orgClient}

	if err := agree(ctx, none, rc, rb, reqc, org); err != nil {
		return res, err
	}

	logf("hit latency, %d interleaved rounds", o.Rounds)
	hits := map[string][]hitResult{}
	for r := range o.Rounds {
		for _, s := range []struct {
			name string
			ctx  context.Context
			c    checker
		}{
			{nameNoCache, ctx, none},
			{nameRedis, ctx, rc},
			{nameRedisBool, ctx, rb},
			{nameRequest, membership.WithRequestCache(ctx), reqc},
			{nameOrgperm, ctx, org},
		} {
			// Only the no-cache strategy reads the database on a hit.
			h, err := benchHit(s.ctx, s.c, s.name == nameNoCache)
			if err != nil {
				return res, fmt.Errorf("hit latency, %s: %w", s.name, err)
			}
			hits[s.name] = append(hits[s.name], h)
			logf("  round %d %-32s %s/op, %d allocs/op", r+1, s.name, fmtNs(h.NsPerOp), h.AllocsPerOp)
		}
	}
	res.Hit = map[string]hitResult{}
	for name, hs := range hits {
		res.Hit[name] = medianHit(hs)
	}

	if res.Clock, res.Has, err = hitBreakdown(ctx, store); err != nil {
		return res, err
	}

	logf("miss latency, %d samples each, in %d interleaved rounds", o.MissN, o.Rounds)
	res.Miss = map[string]samples{}
	for range o.Rounds {
		for _, s := range []struct {
			name    string
			c       checker
			prepare func() (context.Context, error)
		}{
			{nameNoCache, none, func() (context.Context, error) { return ctx, nil }},
			{nameRedis, rc, func() (context.Context, error) { return ctx, rc.invalidate(ctx, hotOrg, hotUser) }},
			{nameRequest, reqc, func() (context.Context, error) { return membership.WithRequestCache(ctx), nil }},
			{nameOrgperm, org, func() (context.Context, error) { orgClient.EvictMember(hotOrg, hotUser); return ctx, nil }},
		} {
			m, err := benchMiss(ctx, perRound(o.MissN, o.Rounds), s.c, s.prepare)
			if err != nil {
				return res, fmt.Errorf("miss latency, %s: %w", s.name, err)
			}
			res.Miss[s.name] = append(res.Miss[s.name], m...)
		}
	}
	for _, name := range []string{nameNoCache, nameRedis, nameRequest, nameOrgperm} {
		m := res.Miss[name]
		logf("  %-32s mean %s, p99 %s", name, fmtDur(m.mean()), fmtDur(m.pct(99)))
	}

	writer, err := pgx.Connect(ctx, db.URL)
	if err != nil {
		return res, fmt.Errorf("postgres: writer connection: %w", err)
	}
	defer writer.Close(context.WithoutCancel(ctx))

	logf("a write made outside the app, asked again after %v", o.StaleWait)
	if res.Outside, err = measureOutsideWrite(ctx, db.URL, writer, rc, none, reqc, o.StaleWait); err != nil {
		return res, fmt.Errorf("outside write: %w", err)
	}
	logf("  the write took %s; orgperm evicted the key %s after it began", fmtDur(res.Outside.Write), fmtDur(res.Outside.OrgpermEvicted))
	// The invalidation rows time k instances and nothing else listening.
	closeInstance(reqClient, reqPool)
	closeInstance(orgClient, orgPool)

	active := map[string]bool{}
	for u := range invalUsers {
		active[fmt.Sprintf("inval-%03d", u)] = true
	}
	res.Inval = make([]invalResult, len(instanceCounts))
	for r := range o.Rounds {
		for i, k := range instanceCounts {
			n := perRound(o.InvalN, o.Rounds)
			logf("invalidation delay to %d instance(s), round %d: %d raw SQL writes", k, r+1, n)
			got, err := measureInvalidation(ctx, db.URL, writer, k, n, active)
			if err != nil {
				return res, fmt.Errorf("invalidation, %d instances: %w", k, err)
			}
			acc := &res.Inval[i]
			acc.K = k
			acc.Delivery = append(acc.Delivery, got.Delivery...)
			acc.AllK = append(acc.AllK, got.AllK...)
			acc.Write = append(acc.Write, got.Write...)
			acc.Wrong += got.Wrong
		}
	}
	for _, r := range res.Inval {
		logf("  %d instance(s): per instance p50 %s, p99 %s; all %d p99 %s; wrong answers %d",
			r.K, fmtDur(r.Delivery.pct(50)), fmtDur(r.Delivery.pct(99)), r.K, fmtDur(r.AllK.pct(99)), r.Wrong)
	}
	logf("Redis: write, then DEL, %d times", o.InvalN)
	if res.RedisInval, err = measureRedisInvalidation(ctx, rc, writer, o.InvalN, active); err != nil {
		return res, fmt.Errorf("redis invalidation: %w", err)
	}

	logf("memory per cached entry (%d keys)", memOrgs*memUsers)
	if res.Mem, err = measureMemory(ctx, db.URL, store, rc); err != nil {
		return res, fmt.Errorf("memory: %w", err)
	}

	logf("write throughput, triggers on and off (%d × %v each)", o.WriteRounds, o.WriteTime)
	drain, drainPool, err := newInstance(ctx, db.URL, membership.Config{})
	if err != nil {
		return res, fmt.Errorf("write throughput: listening instance: %w", err)
	}
	defer closeInstance(drain, drainPool)
	for _, rows := range []int{1, bulkUsers} {
		w, err := measureWrites(ctx, db.URL, writer, rows, o.WriteRounds, o.WriteTime)
		if err != nil {
			return res, fmt.Errorf("write throughput, %d-row UPDATE: %w", rows, err)
		}
		res.Writes = append(res.Writes, w)
	}
	if n := drain.Stats().Listener.Notifications; n == 0 {
		return res, errors.New("write throughput: the listening instance received no notification")
	}
	return res, nil
}

// perRound splits n samples over rounds (rounding up).
func perRound(n, rounds int) int { return (n + rounds - 1) / rounds }

// medianHit returns the round with the median ns/op, with the range of all
// rounds.
func medianHit(hs []hitResult) hitResult {
	sorted := slices.Clone(hs)
	slices.SortFunc(sorted, func(a, b hitResult) int { return cmp.Compare(a.NsPerOp, b.NsPerOp) })
	m := sorted[len(sorted)/2]
	m.Min, m.Max, m.Rounds = sorted[0].NsPerOp, sorted[len(sorted)-1].NsPerOp, len(sorted)
	return m
}

// agree checks that every strategy gives the database's answers, before
// anything is timed: a granted codename, one no role grants, and a user
// with no membership.
func agree(ctx context.Context, truth checker, others ...checker) error {
	cases := []struct {
		org, user, codename string
		want                bool
	}{
		{hotOrg, hotUser, codename, true},
		{hotOrg, "user-001", "admin.delete_org", false},
		{hotOrg, "nobody", codename, false},
	}
	for _, tc := range cases {
		got, err := truth.check(ctx, tc.org, tc.user, tc.codename)
		if err != nil {
			return fmt.Errorf("sanity check: %w", err)
		}
		if got != tc.want {
			return fmt.Errorf("sanity check: the query says %v for (%s, %s, %s), want %v", got, tc.org, tc.user, tc.codename, tc.want)
		}
		for i, c := range others {
			rctx := membership.WithRequestCache(ctx)
			if got, err := c.check(rctx, tc.org, tc.user, tc.codename); err != nil || got != tc.want {
				return fmt.Errorf("sanity check: strategy %d says %v (err %v) for (%s, %s, %s), want %v", i+2, got, err, tc.org, tc.user, tc.codename, tc.want)
			}
		}
	}
	return nil
}
