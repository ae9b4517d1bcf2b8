package soak

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orgperm/orgperm/pkg/listener"
	"github.com/orgperm/orgperm/pkg/membership"
)

// Bounds of the soak's own waits; reaching one is an error, never a way to
// let time pass.
const (
	startTimeout  = time.Minute     // an instance's first sync
	resyncTimeout = time.Minute     // every instance synced again after a fault
	syncTimeout   = time.Minute     // every instance has applied a sentinel
	sentinelRetry = 5 * time.Second // before a sentinel is considered lost, and another sent
	verifyTimeout = 3 * time.Minute // a whole verification round
)

// maxSamples bounds Report.Samples.
const maxSamples = 10

// soak is one run.
type soak struct {
	cfg   Config
	l     *layout
	vs    *versions
	raw   *pgxpool.Pool
	clk   *clock
	hub   *hub
	ins   []*instance
	pause sync.RWMutex // writers and readers hold it for reading; a verification locks it
	start time.Time

	permChecks, userChecks, stale, inconsistent, failed atomic.Uint64
	writes, writeErrors                                 atomic.Uint64
	terminations, restarts                              atomic.Uint64
	verifications, verified, mismatches                 atomic.Uint64

	samplesMu sync.Mutex
	samples   []string
}

// Run runs a soak as cfg says and returns its report. The error is for a
// soak that could not run as configured (no database, a fault that could
// not be injected, instances that never resynced); what the soak found is
// in the report (see [Report.OK]). Cancelling ctx ends the load early; the
// final verification still runs.
func Run(ctx context.Context, cfg Config) (Report, error) {
	cfg, err := cfg.resolve()
	if err != nil {
		return Report{}, err
	}
	s := &soak{cfg: cfg, l: newLayout(cfg.Orgs, cfg.UsersPerOrg), hub: newHub()}
	s.vs = newVersions(s.l.components())

	pcfg, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return Report{}, fmt.Errorf("soak: %w", err)
	}
	pcfg.MaxConns = int32(cfg.Writers + 4)
	if s.raw, err = pgxpool.NewWithConfig(ctx, pcfg); err != nil {
		return Report{}, fmt.Errorf("soak: %w", err)
	}
	defer s.raw.Close()
	if err := seed(ctx, s.raw, s.l); err != nil {
		return Report{}, fmt.Errorf("soak: %w", err)
	}
	s.clk = newClock(s.raw, s.vs)

	zero := &snapshot{v: make([]int64, s.l.components())}
	defer func() {
		for _, in := range s.ins {
			in.close()
		}
	}()
	sctx, cancel := context.WithTimeout(ctx, startTimeout)
	for i := range cfg.Instances {
		in, err := newInstance(sctx, i, cfg.DatabaseURL, s.hub, s.clk, zero, cfg.ClientLogger)
		if err != nil {
			cancel()
			return Report{}, fmt.Errorf("soak: instance %d: %w", i, err)
		}
		if cfg.wrap != nil {
			in.read = cfg.wrap(i, in.client)
		}
		s.ins = append(s.ins, in)
	}
	cancel()

	cfg.Logger.Info("soak: load starting", "duration", cfg.Duration, "writers", cfg.Writers, "readers", cfg.Readers,
		"instances", cfg.Instances, "keys", s.l.keys(), "components", s.l.components())
	s.start = time.Now()
	lctx, stopLoad := context.WithTimeout(ctx, cfg.Duration)
	defer stopLoad()
	var (
		wg       sync.WaitGroup
		faultErr error
	)
	wg.Go(func() { s.runClock(lctx) })
	for w := range cfg.Writers {
		wr := &writer{l: s.l, raw: s.raw, vs: s.vs, rng: rand.New(rand.NewPCG(uint64(w), 1)), pause: &s.pause,
			writes: &s.writes, errors: &s.writeErrors}
		for o := w; o < cfg.Orgs; o += cfg.Writers {
			wr.orgs = append(wr.orgs, o)
		}
		wg.Go(func() { wr.run(lctx, cfg.WriteEvery) })
	}
	for r := range cfg.Readers {
		wg.Go(func() { s.runReader(lctx, rand.New(rand.NewPCG(uint64(r), 2))) })
	}
	if cfg.Progress != nil {
		wg.Go(func() { s.runProgress(lctx) })
	}
	wg.Go(func() { faultErr = s.runFaults(lctx) })
	wg.Wait()
	stopLoad()

	vctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), verifyTimeout)
	defer cancel()
	verr := s.verify(vctx, "final")
	rep := s.report()
	cfg.Logger.Info("soak: done", "checks", rep.Checks, "stale", rep.Stale, "ok", rep.OK())
	return rep, errors.Join(faultErr, verr)
}

// runClock ticks the clock every 20 to 50 milliseconds until ctx is done.
func (s *soak) runClock(ctx context.Context) {
	rng := rand.New(rand.NewPCG(7, 7))
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_, _ = s.clk.tick(ctx) // a sentinel lost during a fault only delays the watermarks
		low := int64(-1)
		for _, in := range s.ins {
			if n := in.wm.Load().n; low < 0 || n < low {
				low = n
			}
		}
		s.clk.prune(low)
		t.Reset(time.Duration(20+rng.IntN(31)) * time.Millisecond)
	}
}

// runReader checks random keys on random instances until ctx is done.
func (s *soak) runReader(ctx context.Context, rng *rand.Rand) {
	for ctx.Err() == nil {
		in := s.ins[rng.IntN(len(s.ins))]
		o, u := rng.IntN(s.l.orgs), rng.IntN(s.l.users)
		var failed bool
		s.pause.RLock() // a verification pauses the readers too: it owns the instances meanwhile
		if rng.IntN(5) == 0 {
			failed = s.checkUserWide(ctx, in, o, u)
		} else {
			failed = s.checkPermissions(ctx, in, o, u)
		}
		s.pause.RUnlock()
		if failed { // the server is likely down: do not spin
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
}

// checkPermissions reads the permission set of (o, u) on in and judges it
// against the watermark in had reached before the read. It reports
// whether the read failed.
func (s *soak) checkPermissions(ctx context.Context, in *instance, o, u int) (failed bool) {
	wm := in.wm.Load()
	set, err := in.read.Permissions(ctx, s.l.orgID(o), s.l.userID(o, u))
	if err != nil && ctx.Err() != nil {
		return true // the load is over: not a check
	}
	s.permChecks.Add(1)
	if err != nil {
		s.failed.Add(1)
		if set != nil {
			s.inconsistentRead(in, fmt.Sprintf("Permissions(%s, %s) returned a set with its error %v", s.l.orgID(o), s.l.userID(o, u), err))
		}
		return true
	}
	saw, err := s.l.decode(o, u, set)
	if err == nil {
		var stale []string
		stale, err = s.l.judge(saw, wm.v, s.vs.high)
		if len(stale) > 0 {
			s.stale.Add(1)
			s.sample(fmt.Sprintf("STALE on instance %d after sentinel %d: %v", in.idx, wm.n, stale))
		}
	}
	if err != nil {
		s.inconsistentRead(in, err.Error())
	}
	return false
}

// checkUserWide reads the user-wide answer of the user of (o, u) on in and
// judges it against the watermark in had reached before the read.
func (s *soak) checkUserWide(ctx context.Context, in *instance, o, u int) (failed bool) {
	wm := in.wm.Load()
	active, err := in.read.UserHasActiveMembership(ctx, s.l.userID(o, u))
	if err != nil && ctx.Err() != nil {
		return true
	}
	s.userChecks.Add(1)
	if err != nil {
		s.failed.Add(1)
		if active {
			s.inconsistentRead(in, fmt.Sprintf("UserHasActiveMembership(%s) returned true with its error %v", s.l.userID(o, u), err))
		}
		return true
	}
	if stale := s.l.judgeUserActive(s.l.key(o, u), active, wm.v, s.vs.high); stale != "" {
		s.stale.Add(1)
		s.sample(fmt.Sprintf("STALE on instance %d after sentinel %d: %s", in.idx, wm.n, stale))
	}
	return false
}

func (s *soak) inconsistentRead(in *instance, what string) {
	s.inconsistent.Add(1)
	s.sample(fmt.Sprintf("INCONSISTENT on instance %d: %s", in.idx, what))
}

func (s *soak) sample(what string) {
	s.samplesMu.Lock()
	defer s.samplesMu.Unlock()
	if len(s.samples) < maxSamples {
		s.samples = append(s.samples, what)
	}
}

func (s *soak) runProgress(ctx context.Context) {
	t := time.NewTicker(s.cfg.ProgressEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.cfg.Progress(s.report())
		}
	}
}

// fault is a kind of fault.
type fault int

const (
	terminateOne fault = iota // one listener backend terminated
	restart                   // the server restarted
	terminateAll              // every listener backend terminated
)

func (f fault) String() string {
	return [...]string{"terminate one listener backend", "restart the server", "terminate every listener backend"}[f]
}

// runFaults injects a fault every FaultEvery until ctx is done; after each
// it waits for the instances to resync and verifies every key on every
// instance. A fault or a verification cut short by the end of the load is
// not an error: the final verification follows.
func (s *soak) runFaults(ctx context.Context) error {
	if s.cfg.FaultEvery < 0 {
		return nil
	}
	kinds := []fault{terminateOne, terminateAll}
	if s.cfg.Restart != nil {
		kinds = []fault{terminateOne, restart, terminateAll}
	}
	t := time.NewTicker(s.cfg.FaultEvery)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		err := s.inject(ctx, kinds[i%len(kinds)])
		if err == nil {
			err = s.verify(ctx, "after fault "+kinds[i%len(kinds)].String())
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// inject causes fault f and waits until the instances it cut off have
// synced again.
func (s *soak) inject(ctx context.Context, f fault) error {
	before := make([]int, len(s.ins))
	s.hub.mu.Lock()
	for i, in := range s.ins {
		before[i] = in.syncs
	}
	s.hub.mu.Unlock()
	var (
		n   int  // resyncs to wait for
		all bool // from every instance
	)
	switch f {
	case terminateOne, terminateAll:
		var limit *int64
		if f == terminateOne {
			one := int64(1)
			limit = &one
		}
		if err := retry(ctx, func() error {
			return s.raw.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM (
				SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()
				ORDER BY random() LIMIT $2) AS x`, listener.ApplicationName, limit).Scan(&n)
		}); err != nil {
			return fmt.Errorf("soak: %s: %w", f, err)
		}
		s.terminations.Add(uint64(n))
		all = f == terminateAll
	case restart:
		if err := s.cfg.Restart(); err != nil {
			return fmt.Errorf("soak: %s: %w", f, err)
		}
		s.restarts.Add(1)
		n, all = len(s.ins), true
	}
	s.cfg.Logger.Info("soak: fault injected", "fault", f.String(), "listeners cut", n)
	rctx, cancel := context.WithTimeout(ctx, resyncTimeout)
	defer cancel()
	// After a restart or every backend terminated, every instance resyncs;
	// after one backend terminated, some instance (which one is not known)
	// does: the sum of resyncs grows by n.
	err := s.hub.wait(rctx, func() bool {
		sum := 0
		for i, in := range s.ins {
			if in.state != listener.Synced || (all && in.syncs == before[i]) {
				return false
			}
			sum += in.syncs - before[i]
		}
		return sum >= n
	})
	if err != nil {
		return fmt.Errorf("soak: instances did not resync after %s: %w", f, err)
	}
	return nil
}

// retry runs fn until it succeeds, up to 10 times 100 ms apart: the first
// use of a pooled connection that died with a restarted server fails.
func retry(ctx context.Context, fn func() error) error {
	var err error
	for range 10 {
		if err = fn(); err == nil || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return err
}

// syncAll commits a sentinel and waits until every instance has applied
// it, sending another if one may have been lost (an instance that was
// unsynced when it was sent).
func (s *soak) syncAll(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	for {
		if n, err := s.clk.tick(ctx); err == nil {
			tctx, tcancel := context.WithTimeout(ctx, sentinelRetry)
			err = s.hub.wait(tctx, func() bool {
				for _, in := range s.ins {
					if in.wm.Load().n < n {
						return false
					}
				}
				return true
			})
			tcancel()
			if err == nil {
				return nil
			}
		} else {
			select { // the server may be restarting
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("soak: instances never applied a sentinel: %w", ctx.Err())
		}
	}
}

// verify quiesces the writers and readers, waits until every instance has applied
// every write, then reads every key on every instance through the cache
// and compares it with a FullyConsistent read: they must be identical.
func (s *soak) verify(ctx context.Context, why string) error {
	s.pause.Lock()
	defer s.pause.Unlock()
	if err := s.syncAll(ctx); err != nil {
		return err
	}
	low := make([]int64, len(s.vs.committed))
	for i := range low {
		low[i] = s.vs.committed[i].Load()
	}
	truthCtx := membership.FullyConsistent(ctx)
	mismatches := 0
	for o := range s.l.orgs {
		for u := range s.l.users {
			org, user := s.l.orgID(o), s.l.userID(o, u)
			var (
				want       *membership.PermissionSet
				wantActive bool
			)
			if err := retry(ctx, func() (err error) {
				if want, err = s.ins[0].client.Permissions(truthCtx, org, user); err != nil {
					return err
				}
				wantActive, err = s.ins[0].client.UserHasActiveMembership(truthCtx, user)
				return err
			}); err != nil {
				return fmt.Errorf("soak: verify %s/%s: %w", org, user, err)
			}
			// The database itself must hold every committed write.
			if saw, err := s.l.decode(o, u, want); err != nil {
				s.inconsistentRead(s.ins[0], "fully consistent read: "+err.Error())
			} else if stale, err := s.l.judge(saw, low, s.vs.high); err != nil || len(stale) > 0 {
				s.inconsistentRead(s.ins[0], fmt.Sprintf("fully consistent read misses committed writes: %v %v", stale, err))
			}
			for _, in := range s.ins {
				var (
					got       *membership.PermissionSet
					gotActive bool
				)
				if err := retry(ctx, func() (err error) {
					if got, err = in.read.Permissions(ctx, org, user); err != nil {
						return err
					}
					gotActive, err = in.read.UserHasActiveMembership(ctx, user)
					return err
				}); err != nil {
					return fmt.Errorf("soak: verify %s/%s on instance %d: %w", org, user, in.idx, err)
				}
				s.verified.Add(2)
				if g, w := fingerprint(got), fingerprint(want); g != w {
					mismatches++
					s.sample(fmt.Sprintf("MISMATCH %s on instance %d:\n    got  %s\n    want %s", why, in.idx, g, w))
				}
				if gotActive != wantActive {
					mismatches++
					s.sample(fmt.Sprintf("MISMATCH %s on instance %d: user-wide %s got %v, want %v", why, in.idx, user, gotActive, wantActive))
				}
			}
		}
	}
	s.mismatches.Add(uint64(mismatches))
	s.verifications.Add(1)
	s.cfg.Logger.Info("soak: verified", "when", why, "keys", s.l.keys(), "instances", len(s.ins), "mismatches", mismatches)
	return nil
}

// fingerprint is everything a permission set says except when it was
// computed.
func fingerprint(s *membership.PermissionSet) string {
	if s == nil {
		return "<nil>"
	}
	from, until := s.Window()
	fp := fmt.Sprintf("%s/%s status=%s active=%v window=[%v,%v) valid_until=%v roles=%v perms=%v",
		s.Org(), s.User(), s.Status(), s.Active(), from, until, s.ValidUntil(), s.Roles(), s.Permissions())
	for _, rt := range s.ResourceTypes() {
		all, ids := s.AccessibleIDs(rt)
		fp += fmt.Sprintf(" %s:all=%v,ids=%v", rt, all, ids)
	}
	return fp
}

// report returns the totals so far.
func (s *soak) report() Report {
	r := Report{
		Elapsed:          time.Since(s.start),
		PermissionChecks: s.permChecks.Load(),
		UserWideChecks:   s.userChecks.Load(),
		Stale:            s.stale.Load(),
		Inconsistent:     s.inconsistent.Load(),
		FailedClosed:     s.failed.Load(),
		Writes:           s.writes.Load(),
		WriteErrors:      s.writeErrors.Load(),
		Sentinels:        s.clk.sent.Load(),
		Terminations:     s.terminations.Load(),
		Restarts:         s.restarts.Load(),
		Verifications:    s.verifications.Load(),
		VerifiedReads:    s.verified.Load(),
		Mismatches:       s.mismatches.Load(),
	}
	r.Checks = r.PermissionChecks + r.UserWideChecks
	if s.cfg.Restart == nil {
		r.RestartsSkipped = "no restartable server (Config.Restart is nil)"
	}
	if s.cfg.FaultEvery < 0 {
		r.RestartsSkipped = "faults off"
	}
	for _, in := range s.ins {
		st := in.client.Stats()
		r.Reconnects += st.Listener.Reconnects
		r.Bypassed += st.Cache.Bypassed
		r.Hits += st.Cache.Hits
		r.Misses += st.Cache.Misses
	}
	s.samplesMu.Lock()
	r.Samples = append([]string(nil), s.samples...)
	s.samplesMu.Unlock()
	return r
}

// minLevel drops records below min.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(attrs []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(attrs), h.min}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h.Handler.WithGroup(name), h.min}
}
