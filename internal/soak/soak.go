package soak

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orgperm/orgperm/internal/faultproxy"
	"github.com/orgperm/orgperm/internal/pgcluster"
	"github.com/orgperm/orgperm/internal/sidecheck"
	"github.com/orgperm/orgperm/pkg/listener"
	"github.com/orgperm/orgperm/pkg/membership"
	"github.com/orgperm/orgperm/pkg/relay"
)

// Bounds of the soak's own waits; reaching one is an error, never a way to
// let time pass.
const (
	startTimeout  = time.Minute     // an instance's first sync
	resyncTimeout = time.Minute     // every instance synced again after a fault
	sentinelRetry = 5 * time.Second // before a sentinel is considered lost, and another sent
	// connectTimeout bounds the instances' connection attempts (unless
	// their URL sets connect_timeout).
	connectTimeout = 5 * time.Second
	verifyTimeout  = 3 * time.Minute // a whole verification round
)

// maxSamples bounds Report.Samples per kind of finding (the first word of
// the sample: STALE, BELOW, INCONSISTENT, MISMATCH).
const maxSamples = 4

// soak is one run.
type soak struct {
	cfg   Config
	l     *layout
	vs    *versions
	tl    *timeline
	raw   *pgxpool.Pool
	clk   *clock
	hub   *hub
	ins   []*instance
	pause sync.RWMutex // writers and readers hold it for reading; a verification locks it
	start time.Time

	// poolProxy and listenerProxy carry the instances' pool and listener
	// connections when a black-hole fault is configured; storm sends the
	// NOTIFY storm when that one is.
	poolProxy, listenerProxy *faultproxy.Proxy
	storm                    *stormer

	permChecks, userChecks, belowWatermark, inconsistent, failed atomic.Uint64
	stale, beyondBound, wronglyAllowed, wronglyDenied            atomic.Uint64
	staleness                                                    staleStats
	writes, writeErrors                                          atomic.Uint64
	terminations, restarts, blackholes, storms, stormSent        atomic.Uint64
	verifications, verified, mismatches, verifiedByBound         atomic.Uint64

	phase    atomic.Pointer[phase] // the fault the reads are attributed to
	phasesMu sync.Mutex
	phases   []*phase // in the order they first occurred

	samplesMu sync.Mutex
	samples   []string
	sampled   map[string]int // samples taken per kind
}

// phase is a stretch of the soak named after the last fault injected:
// "terminate-one", "blackhole-listener (held)", "blackhole-listener
// (after)"... Reads are attributed to the phase current when they began.
type phase struct {
	name                 string
	reads, stale, beyond atomic.Uint64
	max                  atomic.Int64 // the largest staleness, in ns
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
	s := &soak{cfg: cfg, l: newLayout(cfg.Orgs, cfg.UsersPerOrg), hub: newHub(), sampled: map[string]int{}}
	s.vs = newVersions(s.l.components())
	s.setPhase("before any fault")

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
	s.tl = newTimeline(s.l.components()) // after the seed: version 0 committed before every instant
	s.clk = newClock(s.raw, s.vs)

	if cfg.Queue {
		var mode string
		if err := s.raw.QueryRow(ctx, `SELECT orgperm.set_transport('queue')`).Scan(&mode); err != nil {
			return Report{}, fmt.Errorf("soak: queue mode: %w", err)
		}
		// The switch's own "ddl" payload, relayed now, before any instance
		// listens.
		if _, err := s.raw.Exec(ctx, `SELECT orgperm.relay()`); err != nil {
			return Report{}, fmt.Errorf("soak: queue mode: %w", err)
		}
		// A soak "in queue mode" that still notified directly, or whose
		// triggers were off, would pass without testing the queue path.
		if n, err := sidecheck.QueuedRows(ctx, s.raw, s.l.orgID(0), s.l.userID(0, 0)); err != nil || n == 0 {
			return Report{}, fmt.Errorf("soak: queue mode: a membership write queued %d rows (%v)", n, err)
		}
	}
	if cfg.WAL {
		var mode string
		if err := s.raw.QueryRow(ctx, `SELECT orgperm.set_transport('wal'), orgperm.relay()`).Scan(&mode, new(int)); err != nil {
			return Report{}, fmt.Errorf("soak: wal mode: %w", err)
		}
		// A soak "in wal mode" whose triggers still notified would pass
		// without testing the WAL path. (No write here: the writers'
		// timeline starts at the seed.)
		if on, err := sidecheck.NotifyTriggersOn(ctx, s.raw); err != nil || on != 0 {
			return Report{}, fmt.Errorf("soak: wal mode: %d notify triggers still enabled (%v)", on, err)
		}
		defer func() { // after the instances (and their relays) closed: a database with a slot cannot be dropped
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			if err := pgcluster.DropSlots(dctx, cfg.DatabaseURL, ""); err != nil {
				cfg.Logger.Warn("soak: " + err.Error())
			}
		}()
	}
	rt := route{url: cfg.DatabaseURL, waitReady: cfg.PoolerURL == "", relays: cfg.Relays}
	if cfg.PoolerURL != "" {
		rt.url = cfg.PoolerURL
	}
	if slices.ContainsFunc(cfg.Faults, Fault.blackhole) && cfg.FaultEvery > 0 {
		if err := s.startProxies(&rt); err != nil {
			return Report{}, err
		}
		defer s.poolProxy.Close()
		defer s.listenerProxy.Close()
	}
	if slices.Contains(cfg.Faults, FaultStorm) && cfg.FaultEvery > 0 {
		if s.storm, err = newStormer(ctx, s.raw, cfg.DatabaseURL); err != nil {
			return Report{}, fmt.Errorf("soak: %w", err)
		}
		defer func() {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			if err := s.storm.close(dctx, s.raw); err != nil {
				cfg.Logger.Warn("soak: " + err.Error())
			}
		}()
	}

	zero := &snapshot{v: make([]int64, s.l.components())}
	defer func() {
		if s.poolProxy != nil {
			// Connections a black hole killed would each take pgx 15 s to
			// give up on: cut them.
			s.poolProxy.CutAll()
			s.listenerProxy.CutAll()
		}
		var wg sync.WaitGroup
		for _, in := range s.ins {
			wg.Go(in.close)
		}
		wg.Wait()
	}()
	sctx, cancel := context.WithTimeout(ctx, startTimeout)
	for i := range cfg.Instances {
		in, err := newInstance(sctx, i, rt, s.hub, s.clk, zero, cfg.ClientLogger)
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
		"instances", cfg.Instances, "keys", s.l.keys(), "components", s.l.components(), "faults", cfg.Faults,
		"bound", cfg.Bound, "through pooler", cfg.PoolerURL != "")
	s.start = time.Now()
	lctx, stopLoad := context.WithTimeout(ctx, cfg.Duration)
	defer stopLoad()
	var (
		wg       sync.WaitGroup
		faultErr error
	)
	wg.Go(func() { s.runClock(lctx) })
	for w := range cfg.Writers {
		wr := &writer{l: s.l, raw: s.raw, vs: s.vs, tl: s.tl, rng: rand.New(rand.NewPCG(uint64(w), 1)), pause: &s.pause,
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
	wg.Go(func() { faultErr = s.runFaults(lctx, stopLoad) })
	wg.Wait()
	stopLoad()

	vctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), verifyTimeout)
	defer cancel()
	// The last fault may have ended just before the load: the final
	// verification compares caches in service again (a cache that never
	// comes back is an error, even though it bypasses itself correctly).
	// Synced is not enough: an instance whose connection went silent just
	// before the load ended still says synced until a proof fails, so each
	// must have had a proof back since.
	var serr error
	if cfg.FaultEvery > 0 {
		if serr = s.waitRecovered(vctx); serr != nil {
			serr = fmt.Errorf("soak: instances not back in service after the load: %w", serr)
		}
	}
	verr := errors.Join(serr, s.verify(vctx, "final"))
	rep := s.report()
	rep.Health = s.health(vctx)
	cfg.Logger.Info("soak: done", "checks", rep.Checks, "stale", rep.Stale, "beyond bound", rep.BeyondBound, "ok", rep.OK())
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
// against the writers' commit timeline and against the watermark in had
// reached before the read. It reports whether the read failed.
func (s *soak) checkPermissions(ctx context.Context, in *instance, o, u int) (failed bool) {
	wm := in.wm.Load()
	ph := s.phase.Load()
	rs := s.tl.now()
	rctx, cancel := context.WithTimeout(ctx, s.cfg.ReadTimeout)
	set, err := in.read.Permissions(rctx, s.l.orgID(o), s.l.userID(o, u))
	cancel()
	if err != nil && ctx.Err() != nil {
		return true // the load is over: not a check
	}
	s.permChecks.Add(1)
	ph.reads.Add(1)
	if err != nil {
		s.failed.Add(1)
		if set != nil {
			s.inconsistentRead(in, fmt.Sprintf("Permissions(%s, %s) returned a set with its error %v", s.l.orgID(o), s.l.userID(o, u), err))
		}
		return true
	}
	saw, err := s.l.decode(o, u, set)
	if err == nil {
		var below []string
		below, err = s.l.judge(saw, wm.v, s.vs.high)
		if len(below) > 0 {
			s.belowWatermark.Add(1)
			s.sample(fmt.Sprintf("BELOW WATERMARK on instance %d after sentinel %d: %v", in.idx, wm.n, below))
		}
	}
	if err != nil {
		s.inconsistentRead(in, err.Error())
		return false
	}
	var (
		worst time.Duration
		what  string
	)
	for _, sn := range saw {
		if d := s.tl.staleness(sn.comp, sn.version, rs); d > worst {
			worst, what = d, fmt.Sprintf("%s at version %d", s.l.compName(sn.comp), sn.version)
		}
	}
	if worst > 0 {
		cur := func(c int) int64 { return s.tl.current(c, rs) }
		allowed, denied := wrongly(grantsOf(set), s.l.grantsAt(o, u, cur))
		s.staleRead(in, ph, worst, allowed, denied, what)
	}
	return false
}

// checkUserWide reads the user-wide answer of the user of (o, u) on in and
// judges it against the commit timeline and the watermark in had reached
// before the read.
func (s *soak) checkUserWide(ctx context.Context, in *instance, o, u int) (failed bool) {
	wm := in.wm.Load()
	ph := s.phase.Load()
	rs := s.tl.now()
	rctx, cancel := context.WithTimeout(ctx, s.cfg.ReadTimeout)
	active, err := in.read.UserHasActiveMembership(rctx, s.l.userID(o, u))
	cancel()
	if err != nil && ctx.Err() != nil {
		return true
	}
	s.userChecks.Add(1)
	ph.reads.Add(1)
	if err != nil {
		s.failed.Add(1)
		if active {
			s.inconsistentRead(in, fmt.Sprintf("UserHasActiveMembership(%s) returned true with its error %v", s.l.userID(o, u), err))
		}
		return true
	}
	k := s.l.key(o, u)
	if below := s.l.judgeUserActive(k, active, wm.v, s.vs.high); below != "" {
		s.belowWatermark.Add(1)
		s.sample(fmt.Sprintf("BELOW WATERMARK on instance %d after sentinel %d: %s", in.idx, wm.n, below))
	}
	// The answer is the status of some membership version; the freshest
	// that fits is the highest begun that gives it (staleness only grows
	// as versions go down).
	c := s.l.memComp(k)
	for v := s.vs.high(c); v >= 0; v-- {
		if (memberStatus(v) == membership.StatusActive) != active {
			continue
		}
		if d := s.tl.staleness(c, v, rs); d > 0 {
			// Stale: the answer is the opposite of the current status.
			s.staleRead(in, ph, d, active, !active, fmt.Sprintf("user-wide answer %v, as at %s version %d", active, s.l.compName(c), v))
		}
		return false
	}
	s.inconsistentRead(in, fmt.Sprintf("user-wide answer %v for %s matches no membership version", active, s.l.compName(c)))
	return false
}

// staleRead counts a read stale by d (against the commit timeline) on in,
// in phase ph.
func (s *soak) staleRead(in *instance, ph *phase, d time.Duration, allowed, denied bool, what string) {
	s.stale.Add(1)
	ph.stale.Add(1)
	s.staleness.add(d)
	for {
		m := ph.max.Load()
		if int64(d) <= m || ph.max.CompareAndSwap(m, int64(d)) {
			break
		}
	}
	if allowed {
		s.wronglyAllowed.Add(1)
	}
	if denied {
		s.wronglyDenied.Add(1)
	}
	if d > s.cfg.Bound {
		s.beyondBound.Add(1)
		ph.beyond.Add(1)
		s.sample(fmt.Sprintf("STALE by %v (beyond the bound %v) on instance %d during %s: %s", d.Round(time.Microsecond), s.cfg.Bound, in.idx, ph.name, what))
	}
}

// setPhase makes name the current phase.
func (s *soak) setPhase(name string) {
	s.phasesMu.Lock()
	defer s.phasesMu.Unlock()
	for _, p := range s.phases {
		if p.name == name {
			s.phase.Store(p)
			return
		}
	}
	p := &phase{name: name}
	s.phases = append(s.phases, p)
	s.phase.Store(p)
}

func (s *soak) inconsistentRead(in *instance, what string) {
	s.inconsistent.Add(1)
	s.sample(fmt.Sprintf("INCONSISTENT on instance %d: %s", in.idx, what))
}

func (s *soak) sample(what string) {
	kind, _, _ := strings.Cut(what, " ")
	s.samplesMu.Lock()
	defer s.samplesMu.Unlock()
	if s.sampled[kind] < maxSamples {
		s.sampled[kind]++
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

// runFaults injects a fault every FaultEvery until ctx is done, cycling
// through Config.Faults; after each it verifies every key on every
// instance. A fault or a verification cut short by the end of the load is
// not an error: the final verification follows.
//
// With FaultRounds set, it ends the load (stop) once that many faults have
// been injected and verified.
func (s *soak) runFaults(ctx context.Context, stop context.CancelFunc) error {
	if s.cfg.FaultEvery < 0 {
		return nil
	}
	t := time.NewTicker(s.cfg.FaultEvery)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		f := s.cfg.Faults[i%len(s.cfg.Faults)]
		err := s.inject(ctx, f)
		if err == nil {
			err = s.verify(ctx, "after fault "+string(f))
		}
		if err != nil {
			if ended(ctx) {
				return nil
			}
			return err
		}
		if s.cfg.FaultRounds > 0 && i+1 >= s.cfg.FaultRounds {
			stop()
			return nil
		}
	}
}

// ended reports whether ctx is done or past its deadline. A dial or a
// read fails at the deadline itself (pgx and net use ctx.Deadline), while
// ctx.Err() is set by a timer that a loaded machine may run later: an
// error in between is the end of the load, not a failure.
func ended(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}

// inject causes fault f. Unless the instances go through a pooler (where
// no listener is expected to sync), it first waits until every instance is
// synced, so that each fault strikes healthy instances. A loud fault
// returns once the instances it cut off have synced again (not through a
// pooler); a lasting one once it has been held for FaultHold and the
// network restored, or the storm ended.
func (s *soak) inject(ctx context.Context, f Fault) error {
	if err := s.waitSynced(ctx); err != nil {
		return fmt.Errorf("soak: instances not synced before %s: %w", f, err)
	}
	switch f {
	case FaultBlackholeListener, FaultBlackholeAll:
		s.setPhase(string(f) + " (held)")
		s.listenerProxy.Blackhole()
		if f == FaultBlackholeAll {
			s.poolProxy.Blackhole()
		}
		s.blackholes.Add(1)
		s.cfg.Logger.Info("soak: fault injected", "fault", f, "hold", s.cfg.FaultHold)
		t := time.NewTimer(s.cfg.FaultHold)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		s.listenerProxy.Restore()
		s.poolProxy.Restore()
		s.setPhase(string(f) + " (after)")
		s.cfg.Logger.Info("soak: network restored", "fault", f)
		return nil
	case FaultStorm:
		s.setPhase(string(f) + " (held)")
		s.storms.Add(1)
		s.cfg.Logger.Info("soak: fault injected", "fault", f, "hold", s.cfg.FaultHold, "payloads/s", s.cfg.StormRate)
		sent, err := s.storm.run(ctx, s.cfg.FaultHold, s.cfg.StormRate)
		s.stormSent.Add(sent)
		s.setPhase(string(f) + " (after)")
		s.cfg.Logger.Info("soak: storm over", "payloads", sent)
		return err
	}

	s.setPhase(string(f))
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
	case FaultTerminateOne, FaultTerminateAll:
		var limit *int64
		if f == FaultTerminateOne {
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
		all = f == FaultTerminateAll && n > 0
	case FaultTerminateRelay:
		// The leader: the relay backend holding the advisory lock (a
		// bigint key is classid, objid = its high and low halves).
		var cut int
		if err := retry(ctx, func() error {
			return s.raw.QueryRow(ctx, `SELECT count(pg_terminate_backend(a.pid)) FROM pg_stat_activity a
				JOIN pg_locks l ON l.pid = a.pid AND l.locktype = 'advisory' AND l.granted
				 AND l.classid::bigint = ($2::bigint >> 32) AND l.objid::bigint = ($2::bigint & 4294967295) AND l.objsubid = 1
				WHERE a.application_name = $1 AND a.datname = current_database()`, relay.ApplicationName, relay.LockID).Scan(&cut)
		}); err != nil {
			return fmt.Errorf("soak: %s: %w", f, err)
		}
		s.terminations.Add(uint64(cut))
		s.cfg.Logger.Info("soak: fault injected", "fault", f, "relays cut", cut)
		return nil
	case FaultRestart:
		if err := s.cfg.Restart(); err != nil {
			return fmt.Errorf("soak: %s: %w", f, err)
		}
		s.restarts.Add(1)
		n, all = len(s.ins), true
	}
	s.cfg.Logger.Info("soak: fault injected", "fault", f, "listeners cut", n)
	if s.cfg.PoolerURL != "" {
		return nil // no listener syncs through a pooler, or should
	}
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

// waitSynced waits until every instance is synced, for at most
// resyncTimeout; through a pooler, where no listener is expected to sync,
// it returns at once.
func (s *soak) waitSynced(ctx context.Context) error {
	if s.cfg.PoolerURL != "" {
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, resyncTimeout)
	defer cancel()
	return s.hub.wait(rctx, func() bool {
		for _, in := range s.ins {
			if in.state != listener.Synced {
				return false
			}
		}
		return true
	})
}

// waitRecovered waits, for at most resyncTimeout, until every instance has
// proven delivery since the call (Client.Sync) and is in service (Check):
// its listening path works now, not only when it last looked (an instance
// whose connection went silent just before the load ended still says
// synced until a proof fails). Through a pooler, where no listener is
// expected to sync, it returns at once.
func (s *soak) waitRecovered(ctx context.Context) error {
	if s.cfg.PoolerURL != "" {
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, resyncTimeout)
	defer cancel()
	for _, in := range s.ins {
		for {
			sctx, scancel := context.WithTimeout(rctx, 3*time.Second)
			err := in.client.Sync(sctx)
			if err == nil {
				err = in.client.Check(sctx)
			}
			scancel()
			if err == nil {
				break
			}
			if rctx.Err() != nil {
				return fmt.Errorf("instance %d: %w", in.idx, err)
			}
			select { // a failed proof: the listener reconnects meanwhile
			case <-rctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}

// startProxies starts the TCP proxies the black-hole faults cut, in front
// of the host and port of rt's URL, and routes the instances through them.
func (s *soak) startProxies(rt *route) error {
	cc, err := pgx.ParseConfig(rt.url)
	if err != nil {
		return fmt.Errorf("soak: %w", err)
	}
	if strings.HasPrefix(cc.Host, "/") {
		return configError("Faults", fmt.Sprintf("holds a black hole, which needs a TCP server; the instances' URL names the socket directory %s", cc.Host))
	}
	target := net.JoinHostPort(cc.Host, strconv.Itoa(int(cc.Port)))
	if s.poolProxy, err = faultproxy.Start(target); err != nil {
		return fmt.Errorf("soak: %w", err)
	}
	if s.listenerProxy, err = faultproxy.Start(target); err != nil {
		s.poolProxy.Close()
		return fmt.Errorf("soak: %w", err)
	}
	rt.poolAddr, rt.listenerAddr = s.poolProxy.Addr(), s.listenerProxy.Addr()
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
// unsynced when it was sent), for at most timeout.
func (s *soak) syncAll(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
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

// verify quiesces the writers and readers, then reads every key on every
// instance through the cache and compares it with a FullyConsistent read:
// they must be identical. It compares as soon as every instance has
// applied a sentinel sent after the quiesce (so has applied every write),
// or, if that does not happen within the bound (notifications lost, a
// pooler), once the bound has passed since the quiesce: from then on no
// answer may miss a write committed before it.
func (s *soak) verify(ctx context.Context, why string) error {
	s.pause.Lock()
	defer s.pause.Unlock()
	quiesced := time.Now()
	byBound := false
	if err := s.syncAll(ctx, s.cfg.Bound); err != nil {
		byBound = true
		t := time.NewTimer(time.Until(quiesced.Add(s.cfg.Bound)))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
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
				rctx, cancel := context.WithTimeout(truthCtx, s.cfg.ReadTimeout)
				defer cancel()
				if want, err = s.ins[0].client.Permissions(rctx, org, user); err != nil {
					return err
				}
				wantActive, err = s.ins[0].client.UserHasActiveMembership(rctx, user)
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
					rctx, cancel := context.WithTimeout(ctx, s.cfg.ReadTimeout)
					defer cancel()
					if got, err = in.read.Permissions(rctx, org, user); err != nil {
						return err
					}
					gotActive, err = in.read.UserHasActiveMembership(rctx, user)
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
	if byBound {
		s.verifiedByBound.Add(1)
	}
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

// health asks every instance's health check (Client.Check) whether its
// cache is in service (nil), and why not.
func (s *soak) health(ctx context.Context) []error {
	out := make([]error, len(s.ins))
	for i, in := range s.ins {
		cctx, cancel := context.WithTimeout(ctx, s.cfg.ReadTimeout)
		out[i] = in.client.Check(cctx)
		cancel()
	}
	return out
}

// report returns the totals so far.
func (s *soak) report() Report {
	r := Report{
		Elapsed:          time.Since(s.start),
		PermissionChecks: s.permChecks.Load(),
		UserWideChecks:   s.userChecks.Load(),
		Stale:            s.stale.Load(),
		BeyondBound:      s.beyondBound.Load(),
		Bound:            s.cfg.Bound,
		WronglyAllowed:   s.wronglyAllowed.Load(),
		WronglyDenied:    s.wronglyDenied.Load(),
		BelowWatermark:   s.belowWatermark.Load(),
		Inconsistent:     s.inconsistent.Load(),
		FailedClosed:     s.failed.Load(),
		Writes:           s.writes.Load(),
		WriteErrors:      s.writeErrors.Load(),
		Sentinels:        s.clk.sent.Load(),
		Faults:           s.cfg.Faults,
		Terminations:     s.terminations.Load(),
		Restarts:         s.restarts.Load(),
		Blackholes:       s.blackholes.Load(),
		Storms:           s.storms.Load(),
		StormPayloads:    s.stormSent.Load(),
		ThroughPooler:    s.cfg.PoolerURL != "",
		Verifications:    s.verifications.Load(),
		VerifiedByBound:  s.verifiedByBound.Load(),
		VerifiedReads:    s.verified.Load(),
		Mismatches:       s.mismatches.Load(),
	}
	r.StalenessP50, r.StalenessP99, r.StalenessMax = s.staleness.quantiles()
	r.Checks = r.PermissionChecks + r.UserWideChecks
	if s.cfg.FaultEvery < 0 {
		r.Faults = nil
	}
	s.phasesMu.Lock()
	for _, p := range s.phases {
		r.Phases = append(r.Phases, PhaseReport{Name: p.name, Reads: p.reads.Load(), Stale: p.stale.Load(),
			BeyondBound: p.beyond.Load(), MaxStaleness: time.Duration(p.max.Load())})
	}
	s.phasesMu.Unlock()
	for _, in := range s.ins {
		st := in.client.Stats()
		r.Reconnects += st.Listener.Reconnects
		r.Bypassed += st.Cache.Bypassed
		r.Hits += st.Cache.Hits
		r.Misses += st.Cache.Misses
		if in.idx < s.cfg.Relays {
			r.Relays++
			if st.Relay.Leading {
				r.RelaysLeading++
			}
			r.RelayRounds += st.Relay.Rounds
			r.RelayErrors += st.Relay.Errors
		}
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
