package localcache

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitTimeout bounds every wait of a test; reaching it is a failure, never a
// timing assertion.
const waitTimeout = 10 * time.Second

// fakeClock is a Config.Now that moves only when told.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// setup returns a Cache of strings on a fake clock (unless cfg has a clock).
func setup(t testing.TB, cfg Config) (*Cache[string], *fakeClock) {
	t.Helper()
	clock := newFakeClock()
	if cfg.Now == nil {
		cfg.Now = clock.Now
	}
	c, err := New[string](cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c, clock
}

// recv receives from ch, failing the test after waitTimeout. Call it from the
// test goroutine only.
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

type result struct {
	v   string
	err error
}

// goDo runs c.Do in a goroutine and delivers its result on the returned
// channel.
func goDo(c *Cache[string], ctx context.Context, k Key, load func(context.Context) (string, time.Duration, error)) <-chan result {
	ch := make(chan result, 1)
	go func() {
		v, err := c.Do(ctx, k, load)
		ch <- result{v, err}
	}()
	return ch
}

// blocker is a load that reports when it starts and returns only when
// released.
type blocker struct {
	val        string
	validUntil time.Duration
	err        error
	calls      atomic.Int32
	started    chan context.Context // receives the load's context
	release    chan struct{}
}

func newBlocker(val string) *blocker {
	return &blocker{val: val, started: make(chan context.Context, 16), release: make(chan struct{})}
}

func (b *blocker) load(ctx context.Context) (string, time.Duration, error) {
	b.calls.Add(1)
	b.started <- ctx
	<-b.release
	return b.val, b.validUntil, b.err
}

// value returns a load that returns v at once.
func value(v string) func(context.Context) (string, time.Duration, error) {
	return func(context.Context) (string, time.Duration, error) { return v, 0, nil }
}

// joinSignal installs an onJoin hook on c and returns a channel that receives
// once per join.
func joinSignal(c *Cache[string]) <-chan Key {
	ch := make(chan Key, 4096)
	c.onJoin = func(k Key) { ch <- k }
	return ch
}

// mustDo calls c.Do and fails the test on error.
func mustDo(t *testing.T, c *Cache[string], k Key, v string) string {
	t.Helper()
	got, err := c.Do(context.Background(), k, value(v))
	if err != nil {
		t.Fatalf("Do(%v): %v", k, err)
	}
	return got
}

// wantGet checks whether Get(k) hits, and with which value.
func wantGet(t *testing.T, c *Cache[string], k Key, want string, wantOK bool) {
	t.Helper()
	got, ok := c.Get(k)
	if ok != wantOK || got != want {
		t.Fatalf("Get(%v) = %q, %v; want %q, %v", k, got, ok, want, wantOK)
	}
}
