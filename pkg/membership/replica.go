package membership

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orgperm/orgperm/pkg/listener"
	"github.com/orgperm/orgperm/pkg/localcache"
)

// DefaultReplicaWait is the default of Config.ReplicaWait.
const DefaultReplicaWait = 50 * time.Millisecond

// Replica-safe fills.
//
// LISTEN is refused on a standby, so the listener stays on the primary and
// notifications say what changed on the primary. A fill that reads a
// standby which has not yet replayed a write whose notification this
// instance already applied would cache the old answer until the next write
// or the TTL: nothing would evict it again. So a fill reads the replica only
// once the replica has replayed every write whose invalidation was applied
// here before the fill began.
//
// The position that covers them. Every eviction (a notification, this
// instance's own write through its Store, an explicit Evict, the purge of a
// resync) first counts itself in applied, then evicts. A fill reads the
// counter after its flight is registered (after the cache read its key's
// generation), so every eviction that came before the fill is counted in
// what it reads. Each of those evictions ran after the write it stands for
// committed (a notification is delivered after its commit; the Store
// reports a write after its commit; a purge stands for everything committed
// before it), so that write's commit record was already inserted in the
// primary's WAL. Hence pg_current_wal_insert_lsn(), read on the primary by
// a statement sent after the counter was read, is at or past the commit
// record of every write the fill must see: the safe point (count, LSN).
// A fill whose counter reading is at most the count of a safe point can use
// its LSN; otherwise it needs a new one (one round trip on the primary,
// shared by every fill waiting for one). With no invalidation between
// fills, no fill asks the primary anything.
//
// Why not the WAL position of the listener's newest proof: the proof reads
// pg_current_wal_insert_lsn() while its statement runs, before its own
// commit takes the notify queue's lock; a writer that commits in between
// is queued (and applied) before the proof but its commit record lies past
// the proof's position. Nor a position read by the trigger inside the
// writing transaction: it precedes that transaction's own commit record.
// Either bound would let a fill read a replica that shows a write as not
// yet committed whose notification was already applied.
//
// The wait. On a replica connection the fill asks, as its own statement,
// whether the replica is in recovery and has replayed that position
// (pg_last_wal_replay_lsn()), polling with short sleeps up to
// Config.ReplicaWait; then reads, as a separate statement, on the same
// connection, so the snapshot is taken after the replay was seen. A
// replica still behind at the deadline, a replica that is not in recovery
// (promoted, or a primary), and any replica error make the fill read the
// primary. While the cache is not trusted (unsynced, lease run out: checks
// read the database), fills read the primary too: the lease must bound
// staleness whatever the replica's lag.
//
// Writes a fill must not see are handled as without a replica: an
// invalidation that arrives after the fill began makes it stale (rule 1).
//
// Timelines. A WAL position means something only on its timeline. After a
// failover, the safe point comes from the promoted primary's new timeline;
// a replica that kept following the old primary past where the new
// timeline forked (asynchronous replication: it received WAL the promoted
// standby never did) has replayed a "later" position full of writes the
// new primary lost, and can never follow the new timeline. So the safe
// point carries the primary's timeline, and on a timeline after the first
// the fill also asks the replica which timeline it is on, as the later of
// its last restartpoint's and its minimum recovery point's (the control
// file; no privilege needed). That reading lags (a healthy replica shows
// the new timeline after its next restartpoint or buffer flush there), so
// a replica not shown on the primary's timeline is not read, the fill
// reads the primary, and ReplicaStats.OffTimeline counts it.

// ReplicaStats counts fills of a Client with a replica (Config.Replica).
type ReplicaStats struct {
	// Fills is how many fills read the replica.
	Fills uint64
	// Waits is how many of those found the replica behind at first and
	// waited for it to replay.
	Waits uint64
	// Fallbacks is how many fills read the primary although a replica is
	// configured: the sum of Lagging, Errors, OffTimeline and Untrusted.
	Fallbacks uint64
	// Lagging is how many fills found the replica still behind after
	// Config.ReplicaWait (or no free replica connection within it).
	Lagging uint64
	// Errors is how many fills found the replica failing or not in
	// recovery (not a standby), or could not read the WAL position.
	Errors uint64
	// OffTimeline is how many fills found the replica not (yet) shown on
	// the primary's timeline, after a failover (see above).
	OffTimeline uint64
	// Untrusted is how many fills ran while the cache was bypassed (not
	// synced, or its lease had run out).
	Untrusted uint64
	// PositionReads is how many times the primary's WAL insert position
	// was read (one query, shared by the fills that needed it).
	PositionReads uint64
}

// replicaReader picks the database a fill reads and counts.
type replicaReader struct {
	pool    *pgxpool.Pool // the replica
	primary *pgxpool.Pool
	wait    time.Duration

	applied atomic.Uint64 // evictions applied, counted before each one

	mu        sync.Mutex
	safeCount uint64            // a safe point: every eviction among the first
	safePos   listener.Position // safeCount ones is covered by safePos
	safeOK    bool
	fetch     *positionFetch // a position read in flight, or nil

	fills, waits, lagging, errs, offTimeline, untrusted, reads atomic.Uint64
}

// positionFetch is one read of the primary's WAL insert position, shared.
type positionFetch struct {
	count uint64 // applied, read before the query was sent
	done  chan struct{}
	pos   listener.Position
	err   error
}

// noteEviction counts an eviction; call it before evicting. Safe on nil.
func (r *replicaReader) noteEviction() {
	if r != nil {
		r.applied.Add(1)
	}
}

// position returns a WAL position of the primary at or past the commit of
// every write whose eviction was counted before the call.
func (r *replicaReader) position(ctx context.Context) (listener.Position, error) {
	pos, err := r.positionOnce(ctx)
	if err != nil && ctx.Err() == nil && errors.Is(err, context.Canceled) {
		// The read was another fill's, and that fill's caller left: ours
		// still needs one.
		pos, err = r.positionOnce(ctx)
	}
	return pos, err
}

func (r *replicaReader) positionOnce(ctx context.Context) (listener.Position, error) {
	need := r.applied.Load()
	r.mu.Lock()
	if r.safeOK && r.safeCount >= need {
		pos := r.safePos
		r.mu.Unlock()
		return pos, nil
	}
	f := r.fetch
	if f == nil || f.count < need {
		f = &positionFetch{count: r.applied.Load(), done: make(chan struct{})}
		r.fetch = f
		r.mu.Unlock()
		r.readPosition(ctx, f)
	} else {
		r.mu.Unlock()
	}
	select {
	case <-f.done:
		return f.pos, f.err
	case <-ctx.Done():
		return listener.Position{}, ctx.Err()
	}
}

// readPosition runs f's query and publishes its result.
func (r *replicaReader) readPosition(ctx context.Context, f *positionFetch) {
	r.reads.Add(1)
	f.pos, f.err = currentPosition(ctx, r.primary)
	r.mu.Lock()
	if f.err == nil && (!r.safeOK || f.count > r.safeCount || (f.count == r.safeCount && f.pos.After(r.safePos))) {
		r.safeCount, r.safePos, r.safeOK = f.count, f.pos, true
	}
	if r.fetch == f {
		r.fetch = nil
	}
	r.mu.Unlock()
	close(f.done)
}

// errReplicaLagging and errNotStandby say why a fill did not read the
// replica; they never reach the caller (the fill reads the primary).
var (
	errReplicaLagging = errors.New("membership: replica behind")
	errNotStandby     = errors.New("membership: replica not in recovery")
	errOffTimeline    = errors.New("membership: replica not shown on the primary's timeline")
)

// replaySQL asks a replica whether it is a standby that has replayed $1;
// replayTimelineSQL also which timeline it is known to be on: the later of
// its last restartpoint's and its minimum recovery point's (GREATEST is
// syntax, not a function: it takes no schema). Both in the statement that
// asks about the replay, so that the check costs no round trip more.
const (
	replaySQL = `SELECT pg_catalog.pg_is_in_recovery(),
		pg_catalog.pg_last_wal_replay_lsn() >= $1::text::pg_catalog.pg_lsn`
	replayTimelineSQL = replaySQL + `,
		GREATEST((pg_catalog.pg_control_checkpoint()).timeline_id,
			(pg_catalog.pg_control_recovery()).min_recovery_end_timeline)`
)

// acquire returns a replica connection that has replayed pos, within the
// wait; the caller releases it.
func (r *replicaReader) acquire(ctx context.Context, pos listener.Position) (*pgxpool.Conn, error) {
	deadline := time.Now().Add(r.wait)
	actx, cancel := context.WithDeadline(ctx, deadline)
	conn, err := r.pool.Acquire(actx)
	cancel()
	if err != nil {
		if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			return nil, errReplicaLagging
		}
		return nil, err
	}
	target := listener.FormatLSN(pos.LSN)
	// After a failover (a timeline past the first) the replica must also be
	// shown on the primary's timeline.
	query, timeline := replaySQL, pos.Timeline > 1
	if timeline {
		query = replayTimelineSQL
	}
	waited := false
	for delay := 250 * time.Microsecond; ; delay = min(2*delay, 5*time.Millisecond) {
		var inRecovery bool
		var replayed *bool
		var tli *int64
		dest := []any{&inRecovery, &replayed}
		if timeline {
			dest = append(dest, &tli)
		}
		err := conn.QueryRow(ctx, query, target).Scan(dest...)
		switch {
		case err != nil:
			conn.Release()
			return nil, err
		case !inRecovery:
			conn.Release()
			return nil, errNotStandby
		case timeline && (tli == nil || *tli != int64(pos.Timeline)):
			conn.Release()
			return nil, errOffTimeline
		case replayed != nil && *replayed:
			return conn, nil
		}
		if !waited {
			waited = true
			r.waits.Add(1)
		}
		left := time.Until(deadline)
		if left <= 0 {
			conn.Release()
			return nil, errReplicaLagging
		}
		t := time.NewTimer(min(delay, left))
		select {
		case <-ctx.Done():
			t.Stop()
			conn.Release()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// fill is a cache fill of k (the single-flight load of a check): from the
// replica when one is configured and may be read (see above), else from
// the primary.
func (c *Client) fill(ctx context.Context, k localcache.Key) (cached, time.Duration, error) {
	r := c.replica
	if r == nil {
		return c.loadFill(ctx, k)
	}
	if !c.cache.Trusted() {
		r.untrusted.Add(1)
		return c.load(ctx, k)
	}
	pos, err := r.position(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return cached{}, 0, ctx.Err()
		}
		r.errs.Add(1)
		return c.load(ctx, k)
	}
	conn, err := r.acquire(ctx, pos)
	if err != nil {
		if ctx.Err() != nil {
			return cached{}, 0, ctx.Err()
		}
		switch {
		case errors.Is(err, errReplicaLagging):
			r.lagging.Add(1)
		case errors.Is(err, errOffTimeline):
			r.offTimeline.Add(1)
		default:
			r.errs.Add(1)
			c.cfg.Logger.Debug("orgperm: replica not read, reading the primary", "err", err)
		}
		return c.load(ctx, k)
	}
	v, left, err := c.loadFrom(ctx, &Store{db: conn}, k)
	conn.Release()
	if err != nil {
		if ctx.Err() != nil {
			return cached{}, 0, ctx.Err()
		}
		var invalid *ValidationError
		if errors.As(err, &invalid) {
			return cached{}, 0, err
		}
		r.errs.Add(1)
		c.cfg.Logger.Debug("orgperm: replica fill failed, reading the primary", "err", err)
		return c.load(ctx, k)
	}
	r.fills.Add(1)
	return v, left, nil
}

// stats returns r's counters; zero on nil.
func (r *replicaReader) stats() ReplicaStats {
	if r == nil {
		return ReplicaStats{}
	}
	s := ReplicaStats{
		Fills:         r.fills.Load(),
		Waits:         r.waits.Load(),
		Lagging:       r.lagging.Load(),
		Errors:        r.errs.Load(),
		OffTimeline:   r.offTimeline.Load(),
		Untrusted:     r.untrusted.Load(),
		PositionReads: r.reads.Load(),
	}
	s.Fallbacks = s.Lagging + s.Errors + s.OffTimeline + s.Untrusted
	return s
}
