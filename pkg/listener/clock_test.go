package listener

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orgperm/orgperm/pkg/pgtest"
)

// TestClockStoodStill: a monotonic clock that falls behind the wall clock,
// as Go's does across a system suspend, unsyncs the Target at once, drops
// the calibration pair, and syncs (purges) it again once an own proof came
// back; a clock that runs ahead of the wall clock, or keeps a constant
// skew, changes nothing.
func TestClockStoodStill(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	var offset atomic.Int64 // the clock's offset from time.Now
	var hold, record atomic.Bool
	gate := make(chan struct{})
	var rt *recTarget
	l, rt, h := setup(t, pool, Config{
		Now: func() time.Time { return time.Now().Add(time.Duration(offset.Load())) },
		Verify: func(ctx context.Context, _ string) error {
			if record.Load() {
				rt.events <- event{kind: "verify"}
			}
			if hold.Load() {
				select {
				case <-gate:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return nil
		},
	})
	ticks := make(chan struct{}, 1000)
	l.onClockTick = func() {
		select {
		case ticks <- struct{}{}:
		default:
		}
	}
	start(t, l, rt)
	if err := l.Sync(context.Background()); err != nil { // an own proof: a calibration pair
		t.Fatal(err)
	}

	// Ahead by an hour, then a constant skew: no gap.
	offset.Store(int64(time.Hour))
	for range 3 {
		recv(t, ticks, "a clock tick")
	}
	if st := l.Stats(); st.ClockJumps != 0 || st.State != Synced {
		t.Fatalf("a clock that ran ahead: %d jumps, %v; want 0, synced", st.ClockJumps, st.State)
	}
	select {
	case e := <-rt.events:
		t.Fatalf("a clock that ran ahead: the Target got %s", e.kind)
	default:
	}

	// Behind by a minute (the machine slept a minute): unsynced at once,
	// the calibration pair gone, synced again only after verification.
	hold.Store(true)
	offset.Add(-int64(time.Minute))
	rt.next(t, "unsynced")
	h.waitState(t, Unsynced) // the reason is set before the state
	if err := l.Err(); !errors.Is(err, ErrClockStopped) {
		t.Fatalf("Err = %v; want ErrClockStopped", err)
	}
	l.ps.mu.Lock()
	calS := l.ps.calS
	l.ps.mu.Unlock()
	if !calS.IsZero() {
		t.Fatalf("the calibration pair of %v survived the gap", calS)
	}
	if st := l.Stats(); st.ClockJumps != 1 || st.State == Synced {
		t.Fatalf("after the gap: %d jumps, %v; want 1, not synced", st.ClockJumps, st.State)
	}
	hold.Store(false)
	close(gate)
	rt.next(t, "resync")
	h.waitState(t, Synced)
	if err := l.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := l.Stats(); st.ClockJumps != 1 || st.State != Synced {
		t.Fatalf("after the resync: %d jumps, %v; want 1, synced", st.ClockJumps, st.State)
	}

	// A proof sent before the gap, whose verification was under way when
	// the clock stood still, does not sync: another proof is sent and
	// verified first.
	gate = make(chan struct{})
	hold.Store(true)
	record.Store(true)
	exec(t, pool, `SELECT pg_notify('orgperm_invalidate', '{"v":1,"t":"ddl","all":true}')`)
	rt.next(t, "verify", "invalidate", "unsynced")
	offset.Add(-int64(time.Minute))
	for deadline := time.Now().Add(waitTimeout); l.Stats().ClockJumps != 2; {
		if time.Now().After(deadline) {
			t.Fatal("the second gap was never seen")
		}
		recv(t, ticks, "a clock tick")
	}
	hold.Store(false)
	close(gate)
	rt.next(t, "verify")
	rt.next(t, "resync")
	h.waitState(t, Synced)
}
