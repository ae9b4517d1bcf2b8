package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// LockID is the advisory lock (pg_try_advisory_lock(bigint)) the leading
// relay holds on its connection. It differs from the migrations' lock.
const LockID int64 = 0x6f72677072656c // "orgprel"

// ApplicationName is the application_name the membership package gives the
// relay's connection.
const ApplicationName = "orgperm_relay"

const (
	// DefaultInterval is the default of Config.Interval.
	DefaultInterval = 5 * time.Millisecond
	// DefaultLeaderRetry is the default of Config.LeaderRetry.
	DefaultLeaderRetry = time.Second
	// DefaultReconnectDelay is the default of Config.ReconnectDelay.
	DefaultReconnectDelay = 50 * time.Millisecond
	// DefaultMaxReconnectDelay is the default of Config.MaxReconnectDelay.
	DefaultMaxReconnectDelay = 5 * time.Second
)

// ErrStopped is returned by Start after Stop.
var ErrStopped = errors.New("relay: stopped")

// Config configures a Relay. Its zero value means defaults, except Connect.
type Config struct {
	// Connect opens the relay's dedicated connection (a direct or
	// session-mode one: the advisory lock is a session's). Required.
	Connect func(ctx context.Context) (*pgx.Conn, error)

	// Interval is the pause between two rounds of the leader; a write's
	// invalidation waits about half of it in the queue, on average. Defaults
	// to DefaultInterval (5 ms).
	Interval time.Duration

	// LeaderRetry is how often a relay that does not lead tries the lock
	// again (the wait is drawn from [LeaderRetry/2, LeaderRetry]). Defaults
	// to DefaultLeaderRetry (1 second).
	LeaderRetry time.Duration

	// ReconnectDelay is the first wait after a lost connection, doubled per
	// failed attempt up to MaxReconnectDelay. Defaults to 50 ms and 5 s.
	ReconnectDelay, MaxReconnectDelay time.Duration

	// Logger receives leadership changes and errors. Defaults to a logger
	// that discards everything.
	Logger *slog.Logger

	// OnLead, when set, is called with true when this relay takes the lock
	// and false when it loses it (its connection ended). Defaults to nil.
	OnLead func(leading bool)
}

// ConfigError names the field of a Config that is not valid.
type ConfigError struct{ Field, Reason string }

func (e *ConfigError) Error() string { return "relay: Config." + e.Field + " " + e.Reason }

func (cfg Config) resolve() (Config, error) {
	switch {
	case cfg.Connect == nil:
		return cfg, &ConfigError{"Connect", "is required"}
	case cfg.Interval < 0:
		return cfg, &ConfigError{"Interval", "must not be negative"}
	case cfg.LeaderRetry < 0:
		return cfg, &ConfigError{"LeaderRetry", "must not be negative"}
	case cfg.ReconnectDelay < 0 || cfg.MaxReconnectDelay < 0:
		return cfg, &ConfigError{"ReconnectDelay", "must not be negative"}
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.LeaderRetry == 0 {
		cfg.LeaderRetry = DefaultLeaderRetry
	}
	if cfg.ReconnectDelay == 0 {
		cfg.ReconnectDelay = DefaultReconnectDelay
	}
	if cfg.MaxReconnectDelay == 0 {
		cfg.MaxReconnectDelay = DefaultMaxReconnectDelay
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg, nil
}

// Stats are a relay's counters since Start.
type Stats struct {
	// Running: Start was called and Stop was not. The zero Stats (no
	// relay) has it false.
	Running bool
	// Leading: this relay holds the lock now.
	Leading bool
	// Leaderships counts the times this relay took the lock.
	Leaderships uint64
	// Rounds is the number of orgperm.relay() calls; Relayed the rows they
	// took (payloads and proofs).
	Rounds, Relayed uint64
	// Errors counts failed connections and rounds.
	Errors uint64
	// LastRound is when the last round returned; zero before the first.
	// While this relay leads it is at most an Interval and a round trip
	// old; an older one means its rounds are stuck.
	LastRound time.Time
	// WALSlotsCreated counts the wal transport's replication slots this
	// relay made, each followed by evicting everything: on a first start,
	// and for a slot that was missing (dropped, or a promoted standby's)
	// or that PostgreSQL had invalidated.
	WALSlotsCreated uint64
	// WALRetainedBytes is, while this relay leads in wal mode, the WAL the
	// server keeps for the slot, read about once a second; 0 otherwise.
	// It grows while the relay falls behind, and it is what a stopped
	// relay would leave the server to keep (max_slot_wal_keep_size bounds
	// it).
	WALRetainedBytes int64
}

// Relay is one instance's relay. Start it once; Stop it once.
type Relay struct {
	cfg Config

	mu      sync.Mutex
	started bool
	stopped bool
	cancel  context.CancelFunc
	done    chan struct{}

	running, leading                     atomic.Bool
	leaderships, rounds, relayed, errors atomic.Uint64
	lastRound                            atomic.Int64 // Unix ns; 0 before the first round
	slotsCreated                         atomic.Uint64
	walRetained                          atomic.Int64 // bytes; 0 unless leading in wal mode

	// baseTimeout is statementTimeout (tests shorten it); timeout, when not
	// zero, the doubled deadline of the next statement. Only the goroutine
	// of run uses them.
	baseTimeout, timeout time.Duration
}

// New validates cfg and returns a Relay; nothing is connected before Start.
func New(cfg Config) (*Relay, error) {
	cfg, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	return &Relay{cfg: cfg, baseTimeout: statementTimeout}, nil
}

// Stats returns the relay's counters.
func (r *Relay) Stats() Stats {
	st := Stats{
		Running: r.running.Load(), Leading: r.leading.Load(), Leaderships: r.leaderships.Load(),
		Rounds: r.rounds.Load(), Relayed: r.relayed.Load(), Errors: r.errors.Load(),
		WALSlotsCreated: r.slotsCreated.Load(), WALRetainedBytes: r.walRetained.Load(),
	}
	if ns := r.lastRound.Load(); ns != 0 {
		st.LastRound = time.Unix(0, ns)
	}
	return st
}

// Start runs the relay in the background until Stop. It does not wait for
// a connection: a relay that cannot connect retries with backoff, and while
// no relay leads, queue-mode caches bypass themselves (the listener says
// so). Start after Stop returns ErrStopped; a second Start is a no-op.
func (r *Relay) Start(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return ErrStopped
	}
	if r.started {
		return nil
	}
	r.started = true
	r.running.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.done = make(chan struct{})
	go r.run(ctx)
	return nil
}

// Stop stops the relay and waits (within ctx) for its goroutine; its
// connection closes, which releases the lock for another relay. It is
// idempotent and safe before Start.
func (r *Relay) Stop(ctx context.Context) error {
	r.mu.Lock()
	r.stopped = true
	r.running.Store(false)
	cancel, done := r.cancel, r.done
	r.mu.Unlock()
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

func (r *Relay) run(ctx context.Context) {
	defer close(r.done)
	delay := r.cfg.ReconnectDelay
	for ctx.Err() == nil {
		led, err := r.session(ctx)
		if ctx.Err() != nil {
			return
		}
		r.errors.Add(1)
		r.cfg.Logger.Warn("relay: connection lost", "err", err)
		if led {
			delay = r.cfg.ReconnectDelay
		}
		if !wait(ctx, jitter(delay)) {
			return
		}
		delay = min(2*delay, r.cfg.MaxReconnectDelay)
	}
}

// statementTimeout bounds each statement on the relay's connection. On a
// connection gone silent (half-open TCP, a network that drops every byte)
// a statement would otherwise wait forever, the relay still counting
// itself the leader: nothing relayed, no proof back, every cache bypassed
// until the process restarts. On a timeout pgx closes the connection, and
// the relay connects again.
//
// A round takes every row the queue holds, so after a long outage under a
// write load one round can need longer than that. Cut at the same deadline
// every time, it could roll back every time and never drain the queue:
// not with pgx's default (the client hangs up, and the server, which does
// not look at the socket while it works, finishes and commits the round),
// but with a cancel request on deadline (pgconn's
// CancelRequestContextWatcherHandler) or the server's
// client_connection_check_interval. So a round cut by its deadline doubles
// the next round's (up to maxStatementTimeout), and a round that returns
// puts it back.
const (
	statementTimeout    = 5 * time.Second
	maxStatementTimeout = 5 * time.Minute
)

// keepaliveSQL makes the server give up on the relay's session about 11 s
// after its client's host stops answering (5 s idle, then 3 probes 2 s
// apart; 15 s for data left unacknowledged), instead of the kernel's
// default of over two hours: that session holds the relay's advisory lock,
// and while a dead leader's session lingers no other relay can lead, so
// every queue-mode cache stays bypassed. The probes are answered by the
// client's kernel, so a paused process (GC, a debugger) keeps its session.
// The settings do nothing on a Unix-domain socket. The wal transport's
// replication connection takes the same settings at start-up.
var keepaliveSQL = func() string {
	sets := make([]string, len(keepalives))
	for i, kv := range keepalives {
		sets[i] = fmt.Sprintf("pg_catalog.set_config('%s', '%s', false)", kv[0], kv[1])
	}
	return "SELECT " + strings.Join(sets, ",\n\t")
}()

// keepalives are keepaliveSQL's settings, name and value.
var keepalives = [][2]string{
	{"tcp_keepalives_idle", "5"}, {"tcp_keepalives_interval", "2"}, {"tcp_keepalives_count", "3"}, {"tcp_user_timeout", "15000"},
}

// deadline returns the context of a statement, and a function that ends
// it and reports whether the statement was cut by the deadline. A round's
// deadline is r.timeout when set; a round cut by it doubles the next
// round's. Other statements (the lock) take the first deadline always:
// they do no work that grows.
func (r *Relay) deadline(ctx context.Context, round bool) (context.Context, func() (timedOut bool)) {
	d := r.baseTimeout
	if round && r.timeout != 0 {
		d = r.timeout
	}
	qctx, cancel := context.WithTimeout(ctx, d)
	return qctx, func() bool {
		cut := errors.Is(qctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil
		cancel()
		if cut && round {
			r.timeout = min(2*d, max(r.baseTimeout, maxStatementTimeout))
		}
		return cut
	}
}

// session runs one connection: it tries the lock until it holds it, then
// relays until an error. led says whether it ever led.
func (r *Relay) session(ctx context.Context) (led bool, err error) {
	conn, err := r.cfg.Connect(ctx)
	if err == nil && conn == nil {
		err = errors.New("Config.Connect returned no connection")
	}
	if err != nil {
		return false, fmt.Errorf("relay: connect: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		conn.Close(cctx)
		// After a deadline pgx closes the connection in the background,
		// first spending up to 15 s on a cancel request and on waiting for
		// the server to hang up: on a silent network the socket, and with
		// it the server's session and the lock, would outlive this session
		// by that long. Close it now.
		_ = conn.PgConn().Conn().Close()
		if r.leading.Swap(false) {
			r.cfg.Logger.Warn("relay: no longer leading")
			if r.cfg.OnLead != nil {
				r.cfg.OnLead(false)
			}
		}
	}()
	qctx, end := r.deadline(ctx, false)
	_, err = conn.Exec(qctx, keepaliveSQL)
	end()
	if err != nil {
		return false, fmt.Errorf("relay: set the session's keepalives: %w", err)
	}
	for {
		var got bool
		qctx, end := r.deadline(ctx, false)
		err := conn.QueryRow(qctx, `SELECT pg_catalog.pg_try_advisory_lock($1)`, LockID).Scan(&got)
		end()
		if err != nil {
			return false, fmt.Errorf("relay: try the lock: %w", err)
		}
		if got {
			break
		}
		if !wait(ctx, jitter(r.cfg.LeaderRetry)) {
			return false, ctx.Err()
		}
	}
	r.leading.Store(true)
	r.leaderships.Add(1)
	r.cfg.Logger.Info("relay: leading")
	if r.cfg.OnLead != nil {
		r.cfg.OnLead(true)
	}
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	var nextMode time.Time
	for {
		if now := time.Now(); !now.Before(nextMode) {
			nextMode = now.Add(walModeEvery)
			st, err := r.walState(ctx, conn)
			if err != nil {
				return true, err
			}
			if st.wal {
				if err := r.walSession(ctx, conn, st); err != nil {
					return true, err
				}
				nextMode = time.Time{}
				continue
			}
			if st.exists {
				// The transport is no longer 'wal', and a slot nobody
				// reads keeps the server's WAL.
				if dropped, err := r.dropSlot(ctx, conn, st.slot); err != nil {
					r.errors.Add(1)
					r.cfg.Logger.Warn("relay: the wal slot stays", "err", err)
				} else if dropped {
					r.cfg.Logger.Info("relay: dropped the wal transport's replication slot")
				}
			}
		}
		var n int64
		qctx, end := r.deadline(ctx, true)
		err := conn.QueryRow(qctx, `SELECT orgperm.relay()`).Scan(&n)
		if end() {
			r.cfg.Logger.Warn("relay: a round was cut by its deadline; the next one may take longer", "next deadline", r.timeout)
		}
		if err != nil {
			return true, fmt.Errorf("relay: orgperm.relay(): %w", err)
		}
		r.timeout = 0 // a round returned: back to statementTimeout
		r.relayed.Add(uint64(n))
		r.lastRound.Store(time.Now().UnixNano())
		r.rounds.Add(1)
		select {
		case <-ctx.Done():
			return true, ctx.Err()
		case <-t.C:
		}
	}
}

// jitter draws a wait from [d/2, d].
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// wait waits d or until ctx ends; it reports whether d passed.
func wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Leader is the session that holds the relay lock: the leading relay's.
type Leader struct {
	PID             int32
	ApplicationName string
	// ClientAddr is the client's address ("" over a Unix-domain socket),
	// ClientPort its port (-1 over a socket).
	ClientAddr string
	ClientPort int32
	// Since is when the session began (not when it took the lock).
	Since time.Time
}

// Querier is what FindLeader reads through: a *pgx.Conn, a *pgxpool.Pool
// or a pgx.Tx.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// FindLeader returns the session holding the relay lock in q's database
// (pg_locks, where a bigint advisory lock shows as its high and low 32
// bits with objsubid 1), and false when none holds it. Seeing other
// sessions' client details takes pg_read_all_stats or the same role.
func FindLeader(ctx context.Context, q Querier) (Leader, bool, error) {
	key := uint64(LockID)
	var (
		l     Leader
		addr  *string
		port  *int32
		since *time.Time
		app   *string
	)
	err := q.QueryRow(ctx, `
		SELECT l.pid, a.application_name, host(a.client_addr), a.client_port, a.backend_start
		FROM pg_catalog.pg_locks l
		LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
		  AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
		  AND l.classid::bigint = $1 AND l.objid::bigint = $2
		ORDER BY l.pid LIMIT 1`,
		int64(key>>32), int64(key&0xffffffff)).Scan(&l.PID, &app, &addr, &port, &since)
	if errors.Is(err, pgx.ErrNoRows) {
		return Leader{}, false, nil
	}
	if err != nil {
		return Leader{}, false, fmt.Errorf("relay: find the leader: %w", err)
	}
	if app != nil {
		l.ApplicationName = *app
	}
	if addr != nil {
		l.ClientAddr = *addr
	}
	l.ClientPort = -1
	if port != nil {
		l.ClientPort = *port
	}
	if since != nil {
		l.Since = *since
	}
	return l, true, nil
}
