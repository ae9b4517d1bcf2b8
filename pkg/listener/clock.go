package listener

import (
	"context"
	"fmt"
	"time"
)

// ClockWatchInterval is how often the listener compares the Target's
// monotonic clock (Config.Now) with the wall clock, and the least gap
// between them it acts on.
//
// Go's monotonic clock stands still while a Linux or macOS machine is
// suspended (CLOCK_MONOTONIC, mach_absolute_time), and a hypervisor may
// pause a virtual machine the same way, while the database's clock and the
// rest of the world go on. Everything the Target counts on that clock (the
// lease, valid_until, the TTL) would then outlive its bound by the time the
// clock missed, and a proof sent before the pause would read as fresh. The
// wall clock is set forward on resume, so the watch sees the gap at its
// first tick after it and purges: answers served between the resume and
// that tick (at most ClockWatchInterval, within the lease held before the
// pause) are the one window left. A step of the wall clock forward by more
// than the interval reads the same and costs one purge; a step back is not
// a gap and is ignored. Between two ticks NTP's slew moves the two clocks
// apart by at most 50 µs.
const ClockWatchInterval = 100 * time.Millisecond

// watchClock runs on its own goroutine until ctx ends, comparing how far
// Config.Now's monotonic reading and the wall clock moved since its last
// tick.
func (l *Listener) watchClock(ctx context.Context) {
	t := time.NewTicker(ClockWatchInterval)
	defer t.Stop()
	mono, wall := l.cfg.Now(), time.Now().Round(0) // Round(0): the wall reading alone
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m, w := l.cfg.Now(), time.Now().Round(0)
		if missed := w.Sub(wall) - m.Sub(mono); missed > ClockWatchInterval {
			l.clockStopped(missed)
		}
		mono, wall = m, w
		if l.onClockTick != nil {
			l.onClockTick()
		}
	}
}

// clockStopped distrusts everything counted on the monotonic clock before
// a gap of missed: the Target is marked unsynced at once and synced again
// (purged) once an own proof sent after the gap came back; the calibration
// pair is dropped, and a proof sent before the gap never calibrates.
func (l *Listener) clockStopped(missed time.Duration) {
	l.clockJumps.Add(1)
	l.clockEpoch.Add(1)
	l.log.Warn("listener: the monotonic clock stood still while the wall clock went on; purging and proving delivery again",
		"missed", missed)
	l.syncMu.Lock()
	l.ps.mu.Lock()
	l.ps.calS, l.ps.calD = time.Time{}, 0
	l.ps.mu.Unlock()
	l.markUnsyncedLocked(fmt.Errorf("%w (%v missed)", ErrClockStopped, missed.Round(time.Millisecond)))
	l.syncMu.Unlock()
	l.requestSync()
}
