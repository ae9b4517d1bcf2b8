package listener

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/orgperm/orgperm/pkg/pgtest"
)

func TestMain(m *testing.M) {
	ignore := goleak.IgnoreCurrent()
	os.Exit(pgtest.Run(m, pgtest.After(func() error { return goleak.Find(ignore) })))
}

// waitTimeout bounds every wait of a test; reaching it is a failure, never a
// timing assertion.
const waitTimeout = 20 * time.Second

// event is one call the listener made on a recTarget.
type event struct {
	kind string // "invalidate", "unsynced" or "resync"
	inv  Invalidation
}

// recTarget is a Target that records every call, in order.
type recTarget struct {
	events            chan event
	unsynced, resyncs atomic.Int64
	proofs            atomic.Int64
	provenAt          atomic.Pointer[time.Time]
}

func newRecTarget() *recTarget { return &recTarget{events: make(chan event, 10000)} }

func (r *recTarget) Invalidate(inv Invalidation) { r.events <- event{kind: "invalidate", inv: inv} }

func (r *recTarget) MarkUnsynced() {
	r.unsynced.Add(1)
	r.events <- event{kind: "unsynced"}
}

// Prove records the proof without an event: proofs come whenever asked.
func (r *recTarget) Prove(at time.Time) {
	r.proofs.Add(1)
	r.provenAt.Store(&at)
}

func (r *recTarget) Resync() {
	r.resyncs.Add(1)
	r.events <- event{kind: "resync"}
}

// next returns the next event of the given kind, skipping others of the
// kinds in skip, failing on any other kind or after waitTimeout.
func (r *recTarget) next(t *testing.T, kind string, skip ...string) event {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		select {
		case e := <-r.events:
			if e.kind == kind {
				return e
			}
			ok := false
			for _, s := range skip {
				ok = ok || s == e.kind
			}
			if !ok {
				t.Fatalf("waiting for %s, got %s %+v", kind, e.kind, e.inv)
			}
		case <-deadline:
			t.Fatalf("timed out waiting for %s", kind)
		}
	}
}

// hooks holds the channels the test hooks feed.
type hooks struct {
	states        chan State
	notifications chan error
	proofs        chan error
	timeouts      chan struct{}
}

// setup returns an unstarted Listener on pool with cfg, whose test hooks feed
// the returned channels; it is stopped when the test ends.
func setup(t *testing.T, pool *pgxpool.Pool, cfg Config) (*Listener, *recTarget, *hooks) {
	t.Helper()
	h := &hooks{
		states:        make(chan State, 1000),
		notifications: make(chan error, 1000),
		proofs:        make(chan error, 1000),
		timeouts:      make(chan struct{}, 1000),
	}
	cfg.OnStateChange = func(s State) {
		select {
		case h.states <- s:
		default:
		}
	}
	cfg.OnNotification = func(_ Invalidation, err error) { h.notifications <- err }
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	cfg.onProof = func(err error) {
		select {
		case h.proofs <- err:
		default:
		}
	}
	rt := newRecTarget()
	l, err := New(pool, rt, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	l.onAttemptTimeout = func() {
		select {
		case h.timeouts <- struct{}{}:
		default:
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := l.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return l, rt, h
}

// testWriter writes to the test's log, so that a failing test shows what
// the listener did. The listener is stopped before the test ends.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

// start starts l, waits until it is ready, and consumes the target's
// initial events (unsynced by Start, resync once listening).
func start(t *testing.T, l *Listener, rt *recTarget) {
	t.Helper()
	if err := l.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	recv(t, l.Ready(), "Ready")
	rt.next(t, "unsynced")
	rt.next(t, "resync")
}

// recv receives from ch, failing the test after waitTimeout.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitTimeout):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// waitState waits until the hook reports state s.
func (h *hooks) waitState(t *testing.T, s State) {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		select {
		case got := <-h.states:
			if got == s {
				return
			}
		case <-deadline:
			t.Fatalf("timed out waiting for state %v", s)
		}
	}
}

// exec runs sql on pool.
func exec(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := pool.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("exec %q: %v", sql, err)
	}
}

// skipShort skips a long test (faults, restarts) under -short; make test
// runs them all.
func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("long: make test runs it")
	}
}
