package localcache

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestSingleFlight(t *testing.T) {
	t.Parallel()
	const callers = 1000
	c, _ := setup(t, Config{})
	k := Key{Org: "o", User: "u"}

	// The load returns once every other caller has joined its flight, so
	// all of them provably share it.
	var joins atomic.Int32
	allJoined := make(chan struct{})
	c.onJoin = func(Key) {
		if joins.Add(1) == callers-1 {
			close(allJoined)
		}
	}
	var loads atomic.Int32
	load := func(context.Context) (string, time.Duration, error) {
		loads.Add(1)
		select {
		case <-allJoined:
			return "v", 0, nil
		case <-time.After(waitTimeout):
			return "", 0, errors.New("not every caller joined")
		}
	}

	results := make(chan result, callers)
	for range callers {
		go func() {
			v, err := c.Do(context.Background(), k, load)
			results <- result{v, err}
		}()
	}
	for range callers {
		if r := recv(t, results, "Do"); r.v != "v" || r.err != nil {
			t.Fatalf("Do = %q, %v; want v, nil", r.v, r.err)
		}
	}
	if n := loads.Load(); n != 1 {
		t.Errorf("load called %d times, want 1", n)
	}
	st := c.Stats()
	if st.Loads != 1 || st.Coalesced != callers-1 || st.Fills != 1 || st.InFlight != 0 {
		t.Errorf("Loads = %d, Coalesced = %d, Fills = %d, InFlight = %d; want 1, %d, 1, 0",
			st.Loads, st.Coalesced, st.Fills, st.InFlight, callers-1)
	}
}

// invalidations are the scopes an in-flight fill of Key{"o1", "u1"} must
// observe, and some it must not.
var invalidations = []struct {
	name   string
	do     func(*Cache[string])
	covers bool
}{
	{"key", func(c *Cache[string]) { c.InvalidateKey(Key{Org: "o1", User: "u1"}) }, true},
	{"org", func(c *Cache[string]) { c.InvalidateOrg("o1") }, true},
	{"user", func(c *Cache[string]) { c.InvalidateUser("u1") }, true},
	{"all", func(c *Cache[string]) { c.InvalidateAll() }, true},
	{"other key", func(c *Cache[string]) { c.InvalidateKey(Key{Org: "o1", User: "u2"}) }, false},
	{"user-wide key", func(c *Cache[string]) { c.InvalidateKey(Key{User: "u1"}) }, false},
	{"other org", func(c *Cache[string]) { c.InvalidateOrg("o2") }, false},
	{"user-wide keys", func(c *Cache[string]) { c.InvalidateOrg("") }, false},
	{"other user", func(c *Cache[string]) { c.InvalidateUser("u2") }, false},
}

// TestInvalidationDuringLoad is the deterministic race of rule 1: a load is
// blocked, an invalidation happens, the load is released.
func TestInvalidationDuringLoad(t *testing.T) {
	t.Parallel()
	k := Key{Org: "o1", User: "u1"}
	for _, inv := range invalidations {
		t.Run(inv.name, func(t *testing.T) {
			t.Parallel()
			c, _ := setup(t, Config{Shards: 4})
			old := newBlocker("old")
			first := goDo(c, context.Background(), k, old.load)
			recv(t, old.started, "first load")

			inv.do(c)

			if !inv.covers {
				close(old.release)
				if r := recv(t, first, "first Do"); r.v != "old" || r.err != nil {
					t.Fatalf("Do = %q, %v; want old, nil", r.v, r.err)
				}
				wantGet(t, c, k, "old", true)
				return
			}

			// A caller arriving after the invalidation starts a load of
			// its own instead of joining the stale one.
			fresh := newBlocker("new")
			second := goDo(c, context.Background(), k, fresh.load)
			recv(t, fresh.started, "second load")

			close(old.release)
			if r := recv(t, first, "first Do"); r.v != "old" || r.err != nil {
				t.Fatalf("first Do = %q, %v; want old, nil", r.v, r.err)
			}
			wantGet(t, c, k, "", false)
			if st := c.Stats(); st.StaleFills != 1 || st.Fills != 0 || st.Coalesced != 0 {
				t.Errorf("StaleFills = %d, Fills = %d, Coalesced = %d; want 1, 0, 0",
					st.StaleFills, st.Fills, st.Coalesced)
			}

			close(fresh.release)
			if r := recv(t, second, "second Do"); r.v != "new" || r.err != nil {
				t.Fatalf("second Do = %q, %v; want new, nil", r.v, r.err)
			}
			wantGet(t, c, k, "new", true)
			if old.calls.Load() != 1 || fresh.calls.Load() != 1 {
				t.Errorf("loads: old %d, new %d; want 1 each", old.calls.Load(), fresh.calls.Load())
			}
		})
	}
}

// TestReloadAfterStaleFill checks that a Do after a stale fill returned loads
// again.
func TestReloadAfterStaleFill(t *testing.T) {
	t.Parallel()
	c, _ := setup(t, Config{})
	k := Key{Org: "o1", User: "u1"}
	b := newBlocker("old")
	res := goDo(c, context.Background(), k, b.load)
	recv(t, b.started, "load")
	c.InvalidateKey(k)
	close(b.release)
	if r := recv(t, res, "Do"); r.v != "old" {
		t.Fatalf("Do = %q, %v; want old", r.v, r.err)
	}
	if got := mustDo(t, c, k, "new"); got != "new" {
		t.Errorf("Do after a stale fill = %q, want a reload (new)", got)
	}
	if st := c.Stats(); st.Loads != 2 || st.StaleFills != 1 || st.Fills != 1 {
		t.Errorf("Loads = %d, StaleFills = %d, Fills = %d; want 2, 1, 1", st.Loads, st.StaleFills, st.Fills)
	}
}

type ctxKey struct{}

func TestWaiterCancellation(t *testing.T) {
	t.Parallel()
	k := Key{Org: "o", User: "u"}

	t.Run("one waiter leaves", func(t *testing.T) {
		t.Parallel()
		c, _ := setup(t, Config{})
		joined := joinSignal(c)
		b := newBlocker("v")

		ctxA, cancelA := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "leader"))
		defer cancelA()
		a := goDo(c, ctxA, k, b.load)
		loadCtx := recv(t, b.started, "load")
		bDone := goDo(c, context.Background(), k, b.load)
		recv(t, joined, "second waiter")

		cancelA()
		if r := recv(t, a, "cancelled Do"); !errors.Is(r.err, context.Canceled) {
			t.Fatalf("cancelled Do = %q, %v; want context.Canceled", r.v, r.err)
		}
		if err := loadCtx.Err(); err != nil {
			t.Fatalf("load context is %v while a waiter remains", err)
		}
		if got := loadCtx.Value(ctxKey{}); got != "leader" {
			t.Errorf("load context value = %v, want the leader's", got)
		}

		close(b.release)
		if r := recv(t, bDone, "remaining Do"); r.v != "v" || r.err != nil {
			t.Fatalf("remaining Do = %q, %v; want v, nil", r.v, r.err)
		}
		wantGet(t, c, k, "v", true)
	})

	t.Run("every waiter leaves", func(t *testing.T) {
		t.Parallel()
		c, _ := setup(t, Config{})
		joined := joinSignal(c)
		loadDone := make(chan error, 1)
		started := make(chan context.Context, 1)
		load := func(ctx context.Context) (string, time.Duration, error) {
			started <- ctx
			<-ctx.Done()
			loadDone <- ctx.Err()
			return "", 0, ctx.Err()
		}

		ctxA, cancelA := context.WithCancel(context.Background())
		defer cancelA()
		ctxB, cancelB := context.WithCancel(context.Background())
		defer cancelB()
		a := goDo(c, ctxA, k, load)
		loadCtx := recv(t, started, "load")
		b := goDo(c, ctxB, k, load)
		recv(t, joined, "second waiter")

		cancelA()
		recv(t, a, "first Do")
		if err := loadCtx.Err(); err != nil {
			t.Fatalf("load context is %v while a waiter remains", err)
		}
		cancelB()
		if r := recv(t, b, "second Do"); !errors.Is(r.err, context.Canceled) {
			t.Fatalf("second Do = %v, want context.Canceled", r.err)
		}
		// The last waiter cancels the load before its Do returns.
		if err := loadCtx.Err(); !errors.Is(err, context.Canceled) {
			t.Fatalf("load context = %v after every waiter left, want context.Canceled", err)
		}
		recv(t, loadDone, "load to see cancellation")

		// The abandoned flight is detached: a new caller loads afresh.
		if got := mustDo(t, c, k, "fresh"); got != "fresh" {
			t.Errorf("Do after abandonment = %q, want fresh", got)
		}
	})
}

func TestLoadError(t *testing.T) {
	t.Parallel()
	c, _ := setup(t, Config{})
	joined := joinSignal(c)
	k := Key{Org: "o", User: "u"}
	errDB := errors.New("database down")
	b := newBlocker("ignored")
	b.err = errDB

	first := goDo(c, context.Background(), k, b.load)
	recv(t, b.started, "load")
	second := goDo(c, context.Background(), k, b.load)
	recv(t, joined, "second waiter")
	close(b.release)

	for _, ch := range []<-chan result{first, second} {
		if r := recv(t, ch, "Do"); !errors.Is(r.err, errDB) || r.v != "" {
			t.Errorf("Do = %q, %v; want \"\", %v", r.v, r.err, errDB)
		}
	}
	wantGet(t, c, k, "", false)
	if got := mustDo(t, c, k, "v"); got != "v" {
		t.Errorf("Do after an error = %q, want a reload", got)
	}
	if st := c.Stats(); st.Loads != 2 || st.Fills != 1 || st.InFlight != 0 {
		t.Errorf("Loads = %d, Fills = %d, InFlight = %d; want 2, 1, 0", st.Loads, st.Fills, st.InFlight)
	}
}

func TestLoadPanics(t *testing.T) {
	t.Parallel()
	errBoom := errors.New("boom")
	for _, value := range []any{"boom", errBoom} {
		c, _ := setup(t, Config{})
		joined := joinSignal(c)
		k := Key{Org: "o", User: "u"}
		release := make(chan struct{})
		started := make(chan struct{})
		load := func(context.Context) (string, time.Duration, error) {
			close(started)
			<-release
			panic(value)
		}
		first := goDo(c, context.Background(), k, load)
		recv(t, started, "load")
		second := goDo(c, context.Background(), k, load)
		recv(t, joined, "second waiter")
		close(release)

		for _, ch := range []<-chan result{first, second} {
			r := recv(t, ch, "Do")
			var pe *PanicError
			if !errors.As(r.err, &pe) || pe.Value != value || len(pe.Stack) == 0 {
				t.Fatalf("Do = %v, want a *PanicError with value %v and a stack", r.err, value)
			}
			if _, isErr := value.(error); isErr != errors.Is(r.err, errBoom) {
				t.Errorf("errors.Is(%v, errBoom) = %v, want %v", r.err, !isErr, isErr)
			}
		}
		wantGet(t, c, k, "", false)
		if got := mustDo(t, c, k, "v"); got != "v" {
			t.Errorf("Do after a panic = %q, want v", got)
		}
	}
}

func TestLoadGoexit(t *testing.T) {
	t.Parallel()
	c, _ := setup(t, Config{})
	_, err := c.Do(context.Background(), Key{User: "u"}, func(context.Context) (string, time.Duration, error) {
		runtime.Goexit()
		return "", 0, nil
	})
	if !errors.Is(err, ErrLoadGoexit) {
		t.Errorf("Do = %v, want ErrLoadGoexit", err)
	}
	if st := c.Stats(); st.InFlight != 0 {
		t.Errorf("InFlight = %d, want 0", st.InFlight)
	}
}

// TestNoStaleValue hammers the cache with loads, tickets, writers,
// invalidations of every scope and resyncs, as a database and its triggers
// would. A writer bumps a key's version, invalidates a scope covering the key,
// then records the version as invalidated; loads read the version. Whatever
// the interleaving, a Get or Do that starts after a version was recorded as
// invalidated must not return an older one, and once everything is quiet
// every cached value is the current one.
func TestNoStaleValue(t *testing.T) {
	t.Parallel()
	c, err := New[int64](Config{Shards: 4, Capacity: 64})
	if err != nil {
		t.Fatal(err)
	}
	type versions struct{ current, invalidated atomic.Int64 }
	orgs, users := []string{"", "o1", "o2"}, []string{"u1", "u2", "u3"}
	db := make(map[Key]*versions)
	var keys []Key
	for _, o := range orgs {
		for _, u := range users {
			k := Key{Org: o, User: u}
			keys = append(keys, k)
			db[k] = new(versions)
		}
	}
	load := func(k Key) func(context.Context) (int64, time.Duration, error) {
		return func(context.Context) (int64, time.Duration, error) {
			v := db[k].current.Load()
			runtime.Gosched() // widen the window between the read and the store
			return v, 0, nil
		}
	}
	write := func(k Key, invalidate func()) {
		v := db[k].current.Add(1)
		invalidate()
		for {
			old := db[k].invalidated.Load()
			if old >= v || db[k].invalidated.CompareAndSwap(old, v) {
				return
			}
		}
	}

	const workers, rounds = 8, 3000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				k := keys[(w*7+i*13)%len(keys)]
				floor := db[k].invalidated.Load()
				switch (w + i) % 10 {
				case 0:
					write(k, func() { c.InvalidateKey(k) })
				case 1:
					write(k, func() { c.InvalidateOrg(k.Org) })
				case 2:
					write(k, func() { c.InvalidateUser(k.User) })
				case 3:
					switch i % 100 {
					case 3:
						write(k, c.InvalidateAll)
					case 13:
						c.MarkUnsynced()
						c.Resync()
					}
				case 4:
					tk := c.Begin(k)
					v, _, _ := load(k)(context.Background())
					tk.Store(v, 0)
				case 5, 6:
					if v, ok := c.Get(k); ok && v < floor {
						t.Errorf("Get(%v) = version %d, after %d was invalidated", k, v, floor)
					}
				default:
					v, err := c.Do(context.Background(), k, load(k))
					if err != nil {
						t.Error(err)
					} else if v < floor {
						t.Errorf("Do(%v) = version %d, after %d was invalidated", k, v, floor)
					}
				}
			}
		}()
	}
	wg.Wait()

	for _, k := range keys {
		if v, ok := c.Get(k); ok && v != db[k].current.Load() {
			t.Errorf("%v: cached version %d, current %d", k, v, db[k].current.Load())
		}
	}
	if st := c.Stats(); st.InFlight != 0 {
		t.Errorf("InFlight = %d, want 0", st.InFlight)
	}
}
