package listener

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// heartbeat pings, every HeartbeatInterval while synced, from the pool to
// the listening connection. A ping that cannot be sent, or does not come
// back within HeartbeatTimeout, marks the Target unsynced and replaces the
// listening connection.
//
// A ping that the pool fails to send counts as a failure too (fail safe):
// the listener then cannot prove that it still receives notifications, and
// a database the pool cannot reach is likely unreachable for the listening
// connection as well. The cost when only the pool is at fault (exhausted,
// say) is a needless reconnect and a purge, never a stale read.
func (l *Listener) heartbeat(ctx context.Context) {
	t := time.NewTicker(l.cfg.HeartbeatInterval)
	defer t.Stop()
	var seq uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		epoch, ok := l.syncedEpoch()
		if !ok {
			continue
		}
		seq++
		l.heartbeatsSent.Add(1)
		rtt, err := l.ping(ctx, seq)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			l.lastRTT.Store(int64(rtt))
			l.backoffStep.Store(0) // the connection proved healthy
		} else {
			l.heartbeatFailures.Add(1)
			l.heartbeatFailed(epoch, err)
		}
		if l.onHeartbeat != nil {
			l.onHeartbeat(err)
		}
	}
}

// syncedEpoch returns the current sync epoch if the listener is synced.
func (l *Listener) syncedEpoch() (uint64, bool) {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	return l.syncEpoch, l.State() == Synced
}

// ping sends heartbeat seq through the pool and waits for it to come back
// on the listening connection.
func (l *Listener) ping(ctx context.Context, seq uint64) (time.Duration, error) {
	for drained := false; !drained; { // drop late arrivals of earlier pings
		select {
		case <-l.hbArrived:
		default:
			drained = true
		}
	}
	ctx, cancel := context.WithTimeout(ctx, l.cfg.HeartbeatTimeout)
	defer cancel()
	start := time.Now()
	if _, err := l.pool.Exec(ctx, "SELECT pg_notify($1, $2)", l.hbChannel, strconv.FormatUint(seq, 10)); err != nil {
		return 0, fmt.Errorf("send heartbeat %d through the pool: %w", seq, err)
	}
	for {
		select {
		case got := <-l.hbArrived:
			if got == seq {
				return time.Since(start), nil
			}
		case <-ctx.Done():
			return 0, fmt.Errorf("heartbeat %d not back within %v", seq, l.cfg.HeartbeatTimeout)
		}
	}
}

// heartbeatFailed marks the Target unsynced and cancels the session, unless
// the connection that was pinged is gone already (the listener resynced or
// lost it since: that one's fate was decided elsewhere).
func (l *Listener) heartbeatFailed(epoch uint64, err error) {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	if l.State() != Synced || l.syncEpoch != epoch {
		l.log.Debug("listener: heartbeat failed on a connection already replaced", "err", err)
		return
	}
	l.log.Warn("listener: heartbeat failed, replacing the connection", "err", err)
	l.markUnsyncedLocked("heartbeat failed", err)
	if l.sessionCancel != nil {
		l.sessionCancel(fmt.Errorf("%w: %w", ErrHeartbeatFailed, err))
	}
}

type heartbeatHandler struct{ l *Listener }

// HandleNotification implements pgxlisten.Handler: it reports the
// heartbeat's sequence number to the waiting ping. Payloads that are not
// one are ignored.
func (h heartbeatHandler) HandleNotification(_ context.Context, n *pgconn.Notification, _ *pgx.Conn) error {
	seq, err := strconv.ParseUint(n.Payload, 10, 64)
	if err != nil {
		return nil
	}
	select {
	case h.l.hbArrived <- seq:
	default: // nobody waits for that many; the ping drains before sending
	}
	return nil
}

// HandleBacklog implements pgxlisten.BacklogHandler.
func (h heartbeatHandler) HandleBacklog(ctx context.Context, _ string, _ *pgx.Conn) error {
	h.l.listenedOne(ctx)
	return nil
}
