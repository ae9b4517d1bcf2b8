package listener

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// A proof of delivery is a notification sent, through the pool, on the
// shared ProofChannel, that came back on the listening connection.
// PostgreSQL delivers the notifications of committed transactions in
// commit order, so when a proof arrives every invalidation committed before
// the proof's own commit has been applied. Its payload is
//
//	p1 <wal insert lsn> <database clock, µs since 1970> <schema fingerprint> <instance>:<seq>
//
// all read in the statement that sends it:
//
//   - The sender knows the local instant S just before it sent the proof:
//     every invalidation committed before S has been applied when the proof
//     comes back. That is the instant it hands Target.Prove, and the
//     calibration pair (S, database clock) it keeps.
//   - Every other instance receives the same proof (one NOTIFY wakes every
//     listening backend anyway), and maps its database clock D to its own
//     clock through its latest calibration pair: local(D) >= S_cal + (D -
//     D_cal), capped at the instant it received the proof. So one proof
//     serves every instance, and proof traffic stays O(instances) in all.
//   - The WAL insert position orders the proof after every write whose
//     commit came before the statement ran (consistency tokens). Only the
//     instance's own proofs advance it: a forged payload must not satisfy
//     a token.
//   - The fingerprint (orgperm.fingerprint()) changes whenever a table,
//     trigger or function of orgperm is replaced, altered, enabled or
//     disabled: an instance that sees a fingerprint other than the one it
//     verified purges and verifies again.
//
// A forged proof can at worst count the time a notification spent in flight
// on a live connection as fresh (its instant is capped at its arrival), or
// cause a purge (a foreign fingerprint).

// proofSQL sends one proof; $1 is the channel, $2 "<instance>:<seq>".
// orgperm.prove (sql/triggers.sql) builds the payload above in its
// statement and sends it the way writes' payloads go: NOTIFY in the default
// transport, through orgperm.queue and the relay in queue mode (and
// whenever the queue holds rows), so that a proof comes back only once
// everything committed before it has been delivered on the path that
// carries it.
//
// The statement also returns the timeline the server writes WAL on (the
// first eight hex digits of its WAL file name; the payload format is
// unchanged, so that instances of earlier releases still read proofs): a
// proof's WAL position is a position on that timeline, and a position of
// an earlier timeline is no longer comparable with it (see Position).
const proofSQL = `WITH p AS MATERIALIZED (SELECT orgperm.prove($1, $2))
	SELECT pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_insert_lsn()) FROM p`

// A Position is a place in a database's history: a WAL position (LSN) on a
// timeline. A promoted standby starts a new timeline where its replay
// stopped, possibly before WAL its old primary had written (asynchronous
// replication loses it); a position of an earlier timeline is therefore
// passed by any proof from a later one (the instance purged on
// reconnecting to the new server, and what it holds since was read on the
// later timeline), and positions compare by LSN only within one
// timeline. Timeline 0 means unknown: the LSN alone is compared, as by
// earlier releases.
type Position struct {
	Timeline uint32
	LSN      uint64
}

// passedBy reports whether a proof at (tli, lsn) passes p.
func (p Position) passedBy(tli uint32, lsn uint64) bool {
	if p.Timeline == 0 || tli == 0 {
		return lsn >= p.LSN
	}
	return tli > p.Timeline || tli == p.Timeline && lsn >= p.LSN
}

// After reports whether p lies after q: on a later timeline, or further on
// the same one (an unknown timeline compares by LSN).
func (p Position) After(q Position) bool {
	if p.Timeline == 0 || q.Timeline == 0 || p.Timeline == q.Timeline {
		return p.LSN > q.LSN
	}
	return p.Timeline > q.Timeline
}

// ParseTimeline reads the timeline of a WAL file name, as
// pg_walfile_name returns it (its first eight hex digits).
func ParseTimeline(walfile string) (uint32, error) {
	if len(walfile) != 24 {
		return 0, fmt.Errorf("listener: bad WAL file name %q", walfile)
	}
	tli, err := strconv.ParseUint(walfile[:8], 16, 32)
	if err != nil || tli == 0 {
		return 0, fmt.Errorf("listener: bad WAL file name %q", walfile)
	}
	return uint32(tli), nil
}

// calibrationMaxAge bounds the age of the calibration pair used to map a
// foreign proof's database clock to the local one: clocks drift apart by
// up to about 100 µs a second, so an hour-old pair could be off by a third
// of a second, a minute-old one by 6 ms at most.
const calibrationMaxAge = time.Minute

// calibrationHold is how long a calibration pair is kept against newer
// ones that are less tight (see proofState.calibrate): at most 1 ms of
// drift.
const calibrationHold = 10 * time.Second

// calibrate records an own proof sent at the local instant sent whose
// database clock read dbMicros, as the pair that maps foreign proofs'
// clocks, if it is tighter than the pair held or that pair is older than
// calibrationHold. A pair maps a database instant to a local one early by
// the proof's transit (send to clock read, never negative): safe, but a
// loose pair (a proof sent while the machine was busy) shortens every
// lease a foreign proof gives, so this instance asks for its own proofs
// early and defeats their sharing. Tightness is dbMicros minus sent, the
// transit plus the clocks' offset, which is the same for every pair.
func (ps *proofState) calibrate(sent time.Time, dbMicros int64) {
	if !ps.calS.IsZero() && sent.Sub(ps.calS) <= calibrationHold &&
		dbMicros-sent.UnixMicro() >= ps.calD-ps.calS.UnixMicro() {
		return
	}
	ps.calS, ps.calD = sent, dbMicros
}

// proof is one parsed proof payload.
type proof struct {
	tli         uint32 // from the sending statement, not the payload; 0 for a foreign proof
	lsn         uint64
	dbMicros    int64
	fingerprint string
	instance    string
	seq         uint64
	clock       uint64 // the clock epoch when an own proof was sent (see clockStopped)
}

// parseProof parses a proof payload. It is strict: anything else is an
// error, and the payload is ignored.
func parseProof(payload string) (proof, error) {
	f := strings.Fields(payload)
	if len(f) != 5 || f[0] != "p1" {
		return proof{}, errors.New("not a version-1 proof")
	}
	var p proof
	var err error
	if p.lsn, err = ParseLSN(f[1]); err != nil {
		return proof{}, err
	}
	if p.dbMicros, err = strconv.ParseInt(f[2], 10, 64); err != nil {
		return proof{}, fmt.Errorf("proof clock: %w", err)
	}
	p.fingerprint = f[3]
	inst, seq, ok := strings.Cut(f[4], ":")
	if !ok {
		return proof{}, errors.New("proof sender: no seq")
	}
	p.instance = inst
	if p.seq, err = strconv.ParseUint(seq, 10, 64); err != nil {
		return proof{}, fmt.Errorf("proof seq: %w", err)
	}
	return p, nil
}

// ParseLSN parses a PostgreSQL pg_lsn in its text form ("16/B374D848").
func ParseLSN(s string) (uint64, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("listener: bad LSN %q", s)
	}
	h, err1 := strconv.ParseUint(hi, 16, 32)
	l, err2 := strconv.ParseUint(lo, 16, 32)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("listener: bad LSN %q", s)
	}
	return h<<32 | l, nil
}

// FormatLSN formats an LSN as PostgreSQL does.
func FormatLSN(lsn uint64) string {
	return strings.ToUpper(strconv.FormatUint(lsn>>32, 16)) + "/" + strings.ToUpper(strconv.FormatUint(lsn&0xffffffff, 16))
}

// proofState is what the listener knows from proofs, guarded by its mu.
type proofState struct {
	mu sync.Mutex
	// calS and calD: an own proof's local send instant and database
	// clock (µs), and when it was taken (calS); zero if none. See
	// calibrate for which proof.
	calS time.Time
	calD int64
	// tli and lsn are the furthest position (Position.After) of an own
	// proof that came back on the current connection with the Target
	// synced: every write committed before it has been applied. Reset on
	// MarkUnsynced.
	tli uint32
	lsn uint64
	// provenAt is the newest instant every invalidation before which has
	// been applied, while synced (own or foreign proof); zero after
	// MarkUnsynced.
	provenAt time.Time
	// ownDone counts own proofs that came back (or failed), for waiters
	// that asked for one.
	ownDone uint64
	// unsent is the error of the last own proof when it could not be sent
	// through the pool (ErrProofNotSent), nil once one was sent: while it
	// is set the prover retries with backoff and waiters fail at once.
	unsent error
	// changed is closed and replaced whenever lsn, provenAt or ownDone
	// moves or the sync state changes, to wake waiters.
	changed chan struct{}
}

func (ps *proofState) notifyLocked() {
	close(ps.changed)
	ps.changed = make(chan struct{})
}

// ownArrival is an own proof as received on the listening goroutine.
type ownArrival struct {
	p       proof
	arrived time.Time
}

// RequestProof asks for a proof of delivery to be sent soon, if none is
// under way. It never blocks; the cache calls it when its lease runs low.
func (l *Listener) RequestProof() {
	select {
	case l.proofReq <- struct{}{}:
	default:
	}
}

// sendProof sends one own proof through the pool and waits for it on the
// listening connection, within Config.ProofTimeout. It returns the local
// instant just before sending and the proof as it came back.
func (l *Listener) sendProof(ctx context.Context) (time.Time, proof, error) {
	for drained := false; !drained; { // drop late arrivals of earlier proofs
		select {
		case <-l.ownArrived:
		default:
			drained = true
		}
	}
	l.seq++
	seq := l.seq
	l.proofsSent.Add(1)
	clock := l.clockEpoch.Load()
	sent := time.Now()
	var walfile string
	// Only a proof that never reached the server is ErrProofNotSent: no
	// connection from the pool in time, or a failure before anything was
	// written (pgconn.SafeToRetry). A statement that was sent and failed
	// or took too long is ErrNoProof, as a proof that does not come back.
	sctx, cancel := context.WithTimeout(ctx, l.cfg.ProofTimeout)
	conn, err := l.pool.Acquire(sctx)
	notSent := err != nil
	if err == nil {
		err = conn.QueryRow(sctx, proofSQL, l.cfg.ProofChannel, l.cfg.InstanceID+":"+strconv.FormatUint(seq, 10)).Scan(&walfile)
		conn.Release()
		notSent = err != nil && pgconn.SafeToRetry(err)
	}
	cancel()
	l.ps.mu.Lock()
	l.ps.unsent = nil
	if notSent {
		err = fmt.Errorf("%w: proof %d: %w", ErrProofNotSent, seq, err)
		l.ps.unsent = err
	}
	l.ps.mu.Unlock()
	switch {
	case notSent:
		return sent, proof{}, err
	case err != nil:
		return sent, proof{}, fmt.Errorf("%w: send proof %d through the pool: %w", ErrNoProof, seq, err)
	}
	tli, err := ParseTimeline(walfile)
	if err != nil {
		return sent, proof{}, fmt.Errorf("%w: proof %d: %w", ErrNoProof, seq, err)
	}
	// The wait has a window of its own: a slow pool is not the listening
	// connection's fault.
	ctx, cancel = context.WithTimeout(ctx, l.cfg.ProofTimeout)
	defer cancel()
	for {
		select {
		case a := <-l.ownArrived:
			if a.p.seq == seq {
				l.lastRTT.Store(int64(a.arrived.Sub(sent)))
				a.p.tli, a.p.clock = tli, clock
				return sent, a.p, nil
			}
		case <-ctx.Done():
			return sent, proof{}, fmt.Errorf("%w: proof %d sent after LISTEN did not come back on the listening connection within %v (a transaction pooler in front of it, or a silent network)",
				ErrNoProof, seq, l.cfg.ProofTimeout)
		}
	}
}

// prover runs on its own goroutine: it brings the Target to synced after
// each (re)connect (syncUp) and keeps its lease fresh while asked to.
//
// While own proofs cannot be sent through the pool (ErrProofNotSent) it
// sends the next one after a backoff (Config.ReconnectDelay doubling up
// to MaxReconnectDelay) rather than when asked: the Target's lease runs
// out meanwhile, and its contents and the listening connection stay.
func (l *Listener) prover(ctx context.Context) {
	var retry <-chan time.Time
	var step int32
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.syncReq:
			l.syncUp(ctx)
		case <-l.proofReq:
			if retry == nil {
				l.refresh(ctx)
			}
		case <-retry:
			l.refresh(ctx)
		}
		retry = nil
		if l.proofUnsent() != nil {
			step++
			retry = time.After(l.backoff(step))
		} else {
			step = 0
		}
	}
}

// proofUnsent returns the error of the last own proof if it could not be
// sent, else nil.
func (l *Listener) proofUnsent() error {
	l.ps.mu.Lock()
	defer l.ps.mu.Unlock()
	return l.ps.unsent
}

// refresh sends one proof while synced and records it; a proof that does
// not come back marks the Target unsynced and replaces the connection.
func (l *Listener) refresh(ctx context.Context) {
	epoch, ok := l.syncedEpoch()
	if !ok {
		return
	}
	sent, p, err := l.sendProof(ctx)
	defer l.ownProofDone()
	if ctx.Err() != nil {
		return
	}
	if errors.Is(err, ErrProofNotSent) {
		// Nothing is known of the listening connection: it stays, and so
		// does what the Target holds; the lease runs out until a proof is
		// sent (the prover retries).
		l.proofFailures.Add(1)
		l.log.Warn("listener: a proof could not be sent through the pool; the cache waits out its lease until one can", "err", err)
		l.cfg.onProof(err)
		return
	}
	if err != nil {
		l.proofFailures.Add(1)
		l.proofFailed(epoch, err)
		l.cfg.onProof(err)
		return
	}
	l.backoffStep.Store(0) // the connection proved healthy
	l.syncMu.Lock()
	if l.State() != Synced || l.syncEpoch != epoch || p.clock != l.clockEpoch.Load() {
		l.syncMu.Unlock()
		l.cfg.onProof(nil)
		return
	}
	if p.fingerprint != l.fingerprint {
		l.markUnsyncedLocked(fmt.Errorf("%w: fingerprint %s, verified %s", ErrSchemaChanged, p.fingerprint, l.fingerprint))
		l.syncMu.Unlock()
		l.requestSync()
		l.cfg.onProof(nil)
		return
	}
	l.provenLocked(sent, p)
	l.syncMu.Unlock()
	l.cfg.onProof(nil)
}

// provenLocked records an own proof sent at sent: the Target's lease, the
// calibration pair and the WAL position. It must be called with syncMu held
// and the Target synced.
func (l *Listener) provenLocked(sent time.Time, p proof) {
	l.target.Prove(sent)
	l.ps.mu.Lock()
	l.ps.calibrate(sent, p.dbMicros)
	if (Position{p.tli, p.lsn}).After(Position{l.ps.tli, l.ps.lsn}) {
		l.ps.tli, l.ps.lsn = p.tli, p.lsn
	}
	if sent.After(l.ps.provenAt) {
		l.ps.provenAt = sent
	}
	l.ps.notifyLocked()
	l.ps.mu.Unlock()
	l.lastProof.Store(time.Now().UnixNano())
}

// syncUp brings a connection whose LISTEN is in place to synced: an own
// proof must come back on it (nothing less proves that notifications
// arrive: a transaction pooler accepts LISTEN and delivers nothing), then
// Config.Verify must pass; then the Target is purged and synced. A proof
// that does not come back replaces the connection; a failed verification
// keeps the Target unsynced and is retried, with backoff, until it passes
// or the connection changes.
func (l *Listener) syncUp(ctx context.Context) {
	l.syncMu.Lock()
	epoch := l.connEpoch
	l.syncMu.Unlock()
	delay := l.cfg.ReconnectDelay
	for ctx.Err() == nil {
		sent, p, err := l.sendProof(ctx)
		l.ownProofDone()
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, ErrProofNotSent) {
			// The pool's trouble, not the listening connection's: keep it
			// and try again.
			l.proofFailures.Add(1)
			l.syncMu.Lock()
			current := l.connEpoch == epoch && l.sessionCancel != nil
			if current {
				l.setReasonLocked(err)
			}
			l.syncMu.Unlock()
			l.cfg.onProof(err)
			if !current {
				return
			}
			l.log.Warn("listener: a proof could not be sent through the pool; trying again", "err", err, "retry", delay)
			if !l.pause(ctx, delay) {
				return
			}
			delay = min(2*delay, l.cfg.MaxReconnectDelay)
			continue
		}
		if err != nil {
			l.proofFailures.Add(1)
			l.syncMu.Lock()
			if l.connEpoch == epoch && l.sessionCancel != nil {
				l.setReasonLocked(err)
				l.log.Warn("listener: no proof of delivery, replacing the connection", "err", err)
				l.sessionCancel(err)
			}
			l.syncMu.Unlock()
			l.cfg.onProof(err)
			return
		}
		l.cfg.onProof(nil)
		var verr error
		if l.cfg.Verify != nil {
			vctx, cancel := context.WithTimeout(ctx, l.cfg.ConnectTimeout)
			verr = l.cfg.Verify(vctx, p.fingerprint)
			cancel()
		}
		l.syncMu.Lock()
		if l.connEpoch != epoch || l.sessionCancel == nil {
			l.syncMu.Unlock()
			return // the connection went meanwhile; its successor syncs
		}
		if verr == nil && p.clock != l.clockEpoch.Load() {
			// Sent before the clock stood still: it proves nothing about
			// now. Another proof.
			l.syncMu.Unlock()
			continue
		}
		if verr == nil {
			l.backoffStep.Store(0)
			l.fingerprint = p.fingerprint
			l.target.Resync()
			l.syncEpoch++
			l.setReasonLocked(nil)
			l.setStateLocked(Synced)
			l.provenLocked(sent, p)
			l.lastSync.Store(time.Now().UnixNano())
			if !l.readyClosed {
				l.readyClosed = true
				close(l.ready)
			}
			l.syncMu.Unlock()
			l.log.Info("listener: synced", "channel", l.cfg.Channel)
			return
		}
		l.setReasonLocked(verr)
		l.syncMu.Unlock()
		l.log.Warn("listener: verification failed, the cache stays bypassed", "err", verr, "retry", delay)
		if !l.pause(ctx, delay) {
			return
		}
		delay = min(2*delay, l.cfg.MaxReconnectDelay)
	}
}

// pause waits d before syncUp tries again, or less if a sync is requested
// meanwhile (a DDL notification or a changed fingerprint: try now). It
// reports false if ctx ended.
func (l *Listener) pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	case <-l.syncReq:
	}
	return true
}

// requestSync asks the prover to run syncUp. It never blocks.
func (l *Listener) requestSync() {
	select {
	case l.syncReq <- struct{}{}:
	default:
	}
}

// handleProof handles a notification on the proof channel, on the listening
// goroutine. Every invalidation delivered before it has been applied.
func (l *Listener) handleProof(payload string) {
	arrived := time.Now()
	p, err := parseProof(payload)
	if err != nil {
		l.malformedProofs.Add(1)
		return
	}
	if p.instance == l.cfg.InstanceID {
		select {
		case l.ownArrived <- ownArrival{p, arrived}:
		default: // nobody waits for that many; sendProof drains before sending
		}
		return
	}
	l.foreignProofs.Add(1)
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	if l.State() != Synced {
		return
	}
	if p.fingerprint != l.fingerprint {
		l.markUnsyncedLocked(fmt.Errorf("%w: fingerprint %s in a proof of another instance, verified %s", ErrSchemaChanged, p.fingerprint, l.fingerprint))
		l.requestSync()
		return
	}
	l.ps.mu.Lock()
	defer l.ps.mu.Unlock()
	if l.ps.calS.IsZero() || arrived.Sub(l.ps.calS) > calibrationMaxAge {
		return // no recent calibration: this instance proves on its own
	}
	at := l.ps.calS.Add(time.Duration(p.dbMicros-l.ps.calD) * time.Microsecond)
	if at.After(arrived) {
		at = arrived
	}
	if !at.After(l.ps.provenAt) {
		return
	}
	l.ps.provenAt = at
	l.ps.notifyLocked()
	l.target.Prove(at)
}

// Sync returns once every invalidation committed before the call has been
// applied to the Target, or at once if the Target is not synced (its
// owner then reads the database). It shares proofs with concurrent callers
// and with the lease: at most one round trip, none if a proof sent after the
// call has already come back.
func (l *Listener) Sync(ctx context.Context) error {
	start := time.Now()
	return l.waitFor(ctx, func(ps *proofState) bool { return !ps.provenAt.Before(start) })
}

// WaitPosition returns once an own proof that passes pos has come back
// while synced (every write committed before pos was read has then been
// applied, or was lost with a timeline a promotion left behind), or at
// once if the Target is not synced. It makes no round trip if that is
// already so, and shares one with concurrent callers otherwise.
func (l *Listener) WaitPosition(ctx context.Context, pos Position) error {
	return l.waitFor(ctx, func(ps *proofState) bool { return pos.passedBy(ps.tli, ps.lsn) })
}

// ReachedPosition reports whether an own proof that passes pos has come
// back while synced. It makes no round trip.
func (l *Listener) ReachedPosition(pos Position) bool {
	l.ps.mu.Lock()
	defer l.ps.mu.Unlock()
	return pos.passedBy(l.ps.tli, l.ps.lsn)
}

// WaitLSN is WaitPosition at lsn on an unknown timeline: the LSN alone is
// compared.
func (l *Listener) WaitLSN(ctx context.Context, lsn uint64) error {
	return l.WaitPosition(ctx, Position{LSN: lsn})
}

// ReachedLSN is ReachedPosition at lsn on an unknown timeline.
func (l *Listener) ReachedLSN(lsn uint64) bool { return l.ReachedPosition(Position{LSN: lsn}) }

func (l *Listener) waitFor(ctx context.Context, done func(*proofState) bool) error {
	asked, askedAt := false, uint64(0)
	for {
		if l.State() != Synced {
			return nil
		}
		l.ps.mu.Lock()
		ok, ch, ownDone, unsent := done(&l.ps), l.ps.changed, l.ps.ownDone, l.ps.unsent
		l.ps.mu.Unlock()
		if ok {
			return nil
		}
		if unsent != nil {
			return unsent
		}
		// Ask for a proof sent from now on. One already under way may have
		// been sent before the request: then the next one, which the
		// request queues, is; so by the second own proof to finish after
		// asking, the one asked for has come back (or failed), and only
		// then is it worth asking again.
		if !asked || ownDone >= askedAt+2 {
			l.RequestProof()
			asked, askedAt = true, ownDone
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// ownProofDone counts an own proof that came back or failed, and wakes the
// waiters.
func (l *Listener) ownProofDone() {
	l.ps.mu.Lock()
	l.ps.ownDone++
	l.ps.notifyLocked()
	l.ps.mu.Unlock()
}

type proofHandler struct{ l *Listener }

// HandleNotification implements pgxlisten.Handler.
func (h proofHandler) HandleNotification(_ context.Context, n *pgconn.Notification, _ *pgx.Conn) error {
	h.l.handleProof(n.Payload)
	return nil
}

// HandleBacklog implements pgxlisten.BacklogHandler.
func (h proofHandler) HandleBacklog(ctx context.Context, _ string, _ *pgx.Conn) error {
	h.l.listenedOne(ctx)
	return nil
}

// syncedEpoch returns the current sync epoch if the listener is synced.
func (l *Listener) syncedEpoch() (uint64, bool) {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	return l.syncEpoch, l.State() == Synced
}

// proofFailed marks the Target unsynced and cancels the session, unless
// the sync the proof refreshed is gone already (the listener resynced or
// lost the connection since: that one's fate was decided elsewhere).
func (l *Listener) proofFailed(epoch uint64, err error) {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	if l.State() != Synced || l.syncEpoch != epoch {
		l.log.Debug("listener: proof failed on a sync already replaced", "err", err)
		return
	}
	l.log.Warn("listener: proof of delivery failed, replacing the connection", "err", err)
	l.markUnsyncedLocked(err)
	if l.sessionCancel != nil {
		l.sessionCancel(err)
	}
}
