package listener

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgxlisten"
)

// Target is what the listener drives; the cache wiring implements it.
//
// Invalidate and Resync are called from the listening goroutine, one at a
// time. MarkUnsynced and Resync are serialized with each other (under one
// lock), but MarkUnsynced may run on another goroutine concurrently with
// Invalidate. None of them may block for long: the listening connection
// reads no notification meanwhile.
type Target interface {
	// Invalidate evicts what inv names.
	Invalidate(inv Invalidation)
	// MarkUnsynced says notifications may be lost from now on: bypass the
	// cache until Resync.
	MarkUnsynced()
	// Resync says notifications are proven to flow (LISTEN is in place and
	// a proof sent after it came back) and the database side is verified:
	// purge everything, then mark the cache synced.
	Resync()
	// Prove says every invalidation committed before the instant at has
	// been applied (a proof of delivery): the cache may answer for its
	// lease after at. It is called from the listener's goroutines, with
	// the sync lock held, only while synced.
	Prove(at time.Time)
}

// Listener keeps a Target coherent with the database: it LISTENs on the
// invalidation channel over a dedicated connection, hands every payload to
// the Target, and tells it when notifications may have been lost. See the
// package documentation for the state machine.
type Listener struct {
	pool       *pgxpool.Pool
	target     Target
	cfg        Config // defaults filled
	log        *slog.Logger
	pl         pgxlisten.Listener
	ownArrived chan ownArrival // own proofs received on the listening connection
	proofReq   chan struct{}   // RequestProof: cap 1, coalesced
	syncReq    chan struct{}   // requestSync: cap 1, coalesced
	seq        uint64          // own proof sequence, owned by the prover goroutine
	ps         proofState

	// Lifecycle, guarded by mu.
	mu      sync.Mutex
	started bool
	stopped bool
	cancel  context.CancelFunc // cancels the context of the goroutines; nil before Start
	done    chan struct{}      // closed when every goroutine has exited; nil before Start

	// Sync state, guarded by syncMu. Every call of target.MarkUnsynced and
	// target.Resync happens under it, so the Target and state never disagree.
	syncMu        sync.Mutex
	sessionCancel context.CancelCauseFunc // cancels the current pgxlisten.Listen call
	syncEpoch     uint64                  // bumped by every Resync: a proof acts only on the sync it refreshes
	connEpoch     uint64                  // bumped by every LISTEN in place: syncUp acts only on its connection
	fingerprint   string                  // the schema fingerprint verified at the last Resync
	readyClosed   bool
	ready         chan struct{}
	state         atomic.Int32          // written under syncMu, read anywhere
	reason        atomic.Pointer[error] // why not synced; nil when synced

	// Owned by the listening goroutine (pgxlisten calls Connect and the
	// handlers on it, one at a time).
	firstConn *pgx.Conn // the connection made by Start, handed to the first Connect
	listened  int       // channels LISTENed on the current connection
	wd        *watchdog // bounds the current attempt, nil if none

	// onAttemptTimeout, if set (by tests, before Start), is called when a
	// connection attempt is abandoned after Config.ConnectTimeout.
	onAttemptTimeout func()
	// onClockTick, if set (by tests, before Start), is called after each
	// tick of watchClock.
	onClockTick func()

	// backoffStep counts reconnects since a connection last proved healthy.
	backoffStep atomic.Int32

	notifications, malformed, reconnects atomic.Uint64
	proofsSent, proofFailures            atomic.Uint64
	poolerRefusals                       atomic.Uint64
	foreignProofs, malformedProofs       atomic.Uint64
	lastRTT, lastSync, lastProof         atomic.Int64 // nanoseconds; Unix nanoseconds
	clockJumps                           atomic.Uint64
	// clockEpoch is bumped by clockStopped: a proof sent before it
	// neither syncs, refreshes the lease, nor calibrates.
	clockEpoch atomic.Uint64
}

// New returns a Listener that will drive target with the notifications of
// the database pool connects to. It fills the defaults of cfg and validates
// it; the error is a *ConfigError naming the field. Nothing is connected
// before Start.
func New(pool *pgxpool.Pool, target Target, cfg Config) (*Listener, error) {
	if pool == nil {
		return nil, errors.New("listener: New: pool is nil")
	}
	if target == nil {
		return nil, errors.New("listener: New: target is nil")
	}
	cfg, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	if cfg.Connect == nil {
		cfg.Connect = defaultConnect(pool)
	}
	l := &Listener{
		pool:       pool,
		target:     target,
		cfg:        cfg,
		log:        cfg.Logger,
		ownArrived: make(chan ownArrival, 8),
		proofReq:   make(chan struct{}, 1),
		syncReq:    make(chan struct{}, 1),
		ready:      make(chan struct{}),
	}
	l.ps.changed = make(chan struct{})
	l.setReason(ErrNotSynced)
	l.pl = pgxlisten.Listener{
		Connect:  l.connect,
		LogError: l.logError,
		// pgxlisten waits this long between a lost connection and the next
		// Connect: not at all, since connect does its own backoff with
		// jitter (pgxlisten's default is a fixed minute).
		ReconnectDelay: -1,
	}
	l.pl.Handle(cfg.Channel, invalidationHandler{l})
	l.pl.Handle(cfg.ProofChannel, proofHandler{l})
	return l, nil
}

// defaultConnect connects with a copy of the pool's ConnConfig under
// application_name ApplicationName.
func defaultConnect(pool *pgxpool.Pool) func(context.Context) (*pgx.Conn, error) {
	base := pool.Config().ConnConfig
	return func(ctx context.Context) (*pgx.Conn, error) {
		cc := base.Copy()
		if cc.RuntimeParams == nil {
			cc.RuntimeParams = map[string]string{}
		}
		cc.RuntimeParams["application_name"] = ApplicationName
		return pgx.ConnectConfig(ctx, cc)
	}
}

// Start marks the Target unsynced, connects once synchronously (so that a
// bad DSN or missing rights fail here, within ctx and Config.ConnectTimeout),
// then listens in the background, reconnecting with backoff whenever the
// connection is lost. ctx bounds only this first connect. Wait on Ready for
// the Target to be first synced. Start returns ErrAlreadyStarted if called
// twice, ErrStopped after Stop; a Start that failed to connect may be
// retried.
func (l *Listener) Start(ctx context.Context) error {
	l.mu.Lock()
	switch {
	case l.stopped:
		l.mu.Unlock()
		return ErrStopped
	case l.started:
		l.mu.Unlock()
		return ErrAlreadyStarted
	}
	l.started = true
	l.mu.Unlock()

	l.syncMu.Lock()
	l.target.MarkUnsynced()
	l.syncMu.Unlock()

	cctx, cancel := context.WithTimeout(ctx, l.cfg.ConnectTimeout)
	conn, err := l.cfg.Connect(cctx)
	cancel()
	if err == nil && conn == nil {
		err = errors.New("Config.Connect returned no connection")
	}
	if err != nil {
		l.mu.Lock()
		l.started = false
		l.mu.Unlock()
		return fmt.Errorf("listener: connect: %w", err)
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped { // Stop ran while we connected
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		conn.Close(cctx)
		return ErrStopped
	}
	l.firstConn = conn
	runCtx, cancelRun := context.WithCancel(context.Background())
	l.cancel = cancelRun
	l.done = make(chan struct{})
	go l.run(runCtx)
	return nil
}

// Stop stops listening, waits (within ctx) for every goroutine of the
// listener to exit, and leaves the Target unsynced: without a listener its
// cache cannot be trusted. It is idempotent and safe before Start; it
// returns ctx.Err() if ctx ends first (the goroutines still exit).
func (l *Listener) Stop(ctx context.Context) error {
	l.mu.Lock()
	l.stopped = true
	cancel, done := l.cancel, l.done
	l.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Ready returns a channel closed the first time the Target is synced.
func (l *Listener) Ready() <-chan struct{} { return l.ready }

// State returns the current state.
func (l *Listener) State() State { return State(l.state.Load()) }

// Stats returns the listener's counters.
func (l *Listener) Stats() Stats {
	s := Stats{
		Notifications:   l.notifications.Load(),
		Malformed:       l.malformed.Load(),
		Reconnects:      l.reconnects.Load(),
		ProofsSent:      l.proofsSent.Load(),
		ProofFailures:   l.proofFailures.Load(),
		PoolerRefusals:  l.poolerRefusals.Load(),
		ForeignProofs:   l.foreignProofs.Load(),
		MalformedProofs: l.malformedProofs.Load(),
		ClockJumps:      l.clockJumps.Load(),
		LastProofRTT:    time.Duration(l.lastRTT.Load()),
		State:           l.State(),
		Reason:          l.Err(),
	}
	if ns := l.lastSync.Load(); ns != 0 {
		s.LastSync = time.Unix(0, ns)
	}
	if ns := l.lastProof.Load(); ns != 0 {
		s.LastProof = time.Unix(0, ns)
	}
	l.ps.mu.Lock()
	s.ProvenLSN, s.ProvenTimeline = l.ps.lsn, l.ps.tli
	l.ps.mu.Unlock()
	return s
}

// Err returns nil while the Target is synced, and otherwise why it is not:
// ErrNotSynced before the first sync, a connection error, an error matching
// ErrNoProof (notifications do not come back: a transaction pooler, a
// silent network), the error of Config.Verify (the database side cannot
// be trusted), ErrSchemaChanged while re-verifying, or ErrStopped.
func (l *Listener) Err() error {
	if p := l.reason.Load(); p != nil {
		return *p
	}
	return nil
}

func (l *Listener) setReason(err error) {
	if err == nil {
		l.reason.Store(nil)
		return
	}
	l.reason.Store(&err)
}

// setReasonLocked is setReason; it must be called with syncMu held, so that
// Err and State agree.
func (l *Listener) setReasonLocked(err error) { l.setReason(err) }

// run owns the background goroutines: the heartbeat, and the listening
// loop, which runs pgxlisten.Listen in sessions. A session ends when its
// context is cancelled: by Stop, or by a failed heartbeat or watchdog that
// wants the connection replaced even if its peer is silent (cancelling
// makes pgx close the socket); the next session connects again.
func (l *Listener) run(ctx context.Context) {
	defer close(l.done)
	proverDone := make(chan struct{})
	go func() {
		defer close(proverDone)
		l.prover(ctx)
	}()
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		l.watchClock(ctx)
	}()

	for ctx.Err() == nil {
		sctx, cancel := context.WithCancelCause(ctx)
		l.syncMu.Lock()
		l.sessionCancel = cancel
		l.syncMu.Unlock()
		err := l.pl.Listen(sctx) // returns only when sctx is done, or on misuse
		cause := context.Cause(sctx)
		cancel(nil)
		l.stopWatchdog()
		if sctx.Err() == nil { // cannot happen with our Connect and handlers
			l.log.Error("listener: pgxlisten stopped", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(l.cfg.MaxReconnectDelay):
			}
		} else if ctx.Err() == nil {
			l.log.Info("listener: replacing the connection", "cause", cause)
		}
	}
	<-proverDone
	<-watchDone

	// Cleanup after cancellation: a connection Start made that no session
	// took, and the final state.
	if l.firstConn != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		l.firstConn.Close(cctx)
		cancel()
		l.firstConn = nil
	}
	l.syncMu.Lock()
	l.markUnsyncedLocked(ErrStopped)
	l.setReasonLocked(ErrStopped)
	l.setStateLocked(Unsynced)
	l.sessionCancel = nil
	l.syncMu.Unlock()
	l.log.Info("listener: stopped")
}

// connect is pgxlisten's Connect: it makes sure the Target is unsynced,
// waits out the backoff, and connects under a watchdog.
func (l *Listener) connect(ctx context.Context) (*pgx.Conn, error) {
	l.markUnsynced(ErrReconnecting) // normally done already by logError
	l.listened = 0
	l.stopWatchdog()
	if c := l.firstConn; c != nil {
		l.firstConn = nil
		l.startWatchdog()
		return l.admit(ctx, c)
	}

	step := l.backoffStep.Add(1)
	delay := l.backoff(step)
	l.log.Info("listener: reconnecting", "attempt", step, "delay", delay)
	t := time.NewTimer(delay)
	select {
	case <-ctx.Done():
		t.Stop()
		return nil, context.Cause(ctx)
	case <-t.C:
	}

	l.startWatchdog()
	conn, err := l.cfg.Connect(ctx)
	if err == nil && conn == nil {
		err = errors.New("Config.Connect returned no connection")
	}
	if err != nil {
		return nil, err
	}
	l.reconnects.Add(1)
	return l.admit(ctx, conn)
}

// noIdleTimeoutSQL turns idle_session_timeout (PostgreSQL 14+; 13 has
// none, and the statement then sets nothing) off for the session. The
// listening session runs no query while it waits for notifications, so a
// database or role that sets the timeout would end it every time, and
// every end replaces the connection and purges the cache.
const noIdleTimeoutSQL = `SELECT pg_catalog.set_config(s.name, '0', false) FROM pg_catalog.pg_settings s WHERE s.name = 'idle_session_timeout'`

// admit hands conn to pgxlisten to LISTEN on, unless checkPooler refuses
// it: then conn is closed, Err says why, and the error makes pgxlisten
// connect again (after the backoff).
func (l *Listener) admit(ctx context.Context, conn *pgx.Conn) (*pgx.Conn, error) {
	err := l.checkPooler(ctx, conn)
	if err == nil {
		if _, err = conn.Exec(ctx, noIdleTimeoutSQL); err == nil {
			return conn, nil
		}
		err = fmt.Errorf("listener: turning idle_session_timeout off: %w", err)
	}
	conn.Close(context.WithoutCancel(ctx))
	if pe := (*PoolerError)(nil); errors.As(err, &pe) {
		l.poolerRefusals.Add(1)
		l.syncMu.Lock()
		if l.State() != Synced { // always: connect unsynced it
			l.setReasonLocked(err)
		}
		l.syncMu.Unlock()
		l.log.Warn("listener: refusing to LISTEN through a transaction pooler; the cache stays bypassed", "err", err)
	}
	return nil, err
}

// backoff returns the wait before reconnect attempt step (1 for the
// first): ReconnectDelay doubled step-1 times, capped at MaxReconnectDelay,
// drawn at random from [d/2, d] so that instances cut off together do not
// reconnect together.
func (l *Listener) backoff(step int32) time.Duration {
	d := l.cfg.ReconnectDelay
	for i := int32(1); i < step && d < l.cfg.MaxReconnectDelay; i++ {
		d *= 2
	}
	d = min(d, l.cfg.MaxReconnectDelay)
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// logError is pgxlisten's LogError: any error of the listening connection
// means notifications may be lost.
func (l *Listener) logError(ctx context.Context, err error) {
	if ctx.Err() != nil {
		// The session is ending on purpose (Stop, heartbeat, watchdog): the
		// reason was logged where it was decided.
		cause := context.Cause(ctx)
		l.log.Debug("listener: session ended", "err", err, "cause", cause)
		if cause == nil {
			cause = ErrReconnecting
		}
		l.markUnsynced(cause) // a proof or watchdog marked it already
		return
	}
	l.log.Warn("listener: connection error", "err", err)
	l.markUnsynced(fmt.Errorf("listener: connection error: %w", err))
}

// markUnsynced moves a Synced listener (and its Target) to Unsynced, with
// reason as what Err says; in any other state the Target is unsynced
// already.
func (l *Listener) markUnsynced(reason error) {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.markUnsyncedLocked(reason)
}

// markUnsyncedLocked is markUnsynced; it must be called with syncMu held.
func (l *Listener) markUnsyncedLocked(reason error) {
	if l.State() != Synced {
		return
	}
	l.target.MarkUnsynced()
	l.setReasonLocked(reason)
	l.setStateLocked(Unsynced)
	l.ps.mu.Lock()
	l.ps.tli, l.ps.lsn, l.ps.provenAt = 0, 0, time.Time{}
	l.ps.notifyLocked()
	l.ps.mu.Unlock()
	level := slog.LevelWarn
	if errors.Is(reason, context.Canceled) || errors.Is(reason, ErrStopped) {
		level = slog.LevelInfo // Stop: nothing wrong
	}
	l.log.Log(context.Background(), level, "listener: unsynced", "reason", reason)
}

// setStateLocked records s and calls the hook; it must be called with
// syncMu held.
func (l *Listener) setStateLocked(s State) {
	if l.State() == s {
		return
	}
	l.state.Store(int32(s))
	l.cfg.OnStateChange(s)
}

// listenedOne is called after LISTEN on each channel (pgxlisten's
// HandleBacklog, on the listening goroutine). Once both channels listen on
// this connection, the prover is asked to prove delivery on it (syncUp):
// LISTEN succeeding proves nothing, since a transaction pooler accepts it
// and delivers nothing.
func (l *Listener) listenedOne(ctx context.Context) {
	l.listened++
	if l.listened < 2 {
		return
	}
	l.stopWatchdog() // from here on, syncUp bounds the attempt
	l.syncMu.Lock()
	if ctx.Err() != nil { // the session is being torn down: stay unsynced
		l.syncMu.Unlock()
		return
	}
	l.connEpoch++
	l.syncMu.Unlock()
	l.requestSync()
}

// handleInvalidation hands one payload to the Target. A payload that does
// not parse evicts everything: it was meant to evict something, and what is
// unknown. A "ddl" payload (orgperm's tables, triggers or functions were
// altered) also marks the Target unsynced until Config.Verify passes again.
func (l *Listener) handleInvalidation(payload string) {
	l.notifications.Add(1)
	if ignoreInvalidations { // the orgperm_broken build: see broken_on.go
		return
	}
	inv, err := ParsePayload(payload)
	if err != nil {
		l.malformed.Add(1)
		if len(payload) > 256 {
			payload = payload[:256] + "..."
		}
		l.log.Warn("listener: malformed payload, evicting everything", "err", err, "payload", payload)
		inv = Invalidation{Source: SourceMalformed, All: true}
	}
	l.target.Invalidate(inv)
	if inv.Source == SourceDDL {
		l.markUnsynced(ErrSchemaChanged)
		l.requestSync()
	}
	l.cfg.OnNotification(inv, err)
}

type invalidationHandler struct{ l *Listener }

// HandleNotification implements pgxlisten.Handler.
func (h invalidationHandler) HandleNotification(_ context.Context, n *pgconn.Notification, _ *pgx.Conn) error {
	h.l.handleInvalidation(n.Payload)
	return nil
}

// HandleBacklog implements pgxlisten.BacklogHandler.
func (h invalidationHandler) HandleBacklog(ctx context.Context, _ string, _ *pgx.Conn) error {
	h.l.listenedOne(ctx)
	return nil
}

// watchdog bounds one connection attempt: if the attempt has not synced
// within Config.ConnectTimeout, it cancels the session. It runs in a
// goroutine owned by the listening goroutine, which stops and joins it.
type watchdog struct {
	stop, exited chan struct{}
}

// startWatchdog starts a watchdog for the current attempt. It must be
// called on the listening goroutine.
func (l *Listener) startWatchdog() {
	wd := &watchdog{stop: make(chan struct{}), exited: make(chan struct{})}
	l.wd = wd
	go func() {
		defer close(wd.exited)
		t := time.NewTimer(l.cfg.ConnectTimeout)
		defer t.Stop()
		select {
		case <-wd.stop:
		case <-t.C:
			l.syncMu.Lock()
			defer l.syncMu.Unlock()
			if l.State() != Synced && l.sessionCancel != nil {
				l.log.Warn("listener: connection attempt timed out", "timeout", l.cfg.ConnectTimeout)
				l.sessionCancel(ErrConnectTimeout)
				if l.onAttemptTimeout != nil {
					l.onAttemptTimeout()
				}
			}
		}
	}()
}

// stopWatchdog stops and joins the current watchdog, if any. It must be
// called on the listening goroutine (or after it exited), without syncMu.
func (l *Listener) stopWatchdog() {
	if wd := l.wd; wd != nil {
		l.wd = nil
		close(wd.stop)
		<-wd.exited
	}
}
