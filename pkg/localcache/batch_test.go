package localcache

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestBatchJoinedByDo(t *testing.T) {
	t.Parallel()
	c, _ := setup(t, Config{})
	cached, loading, fresh := Key{Org: "o", User: "cached"}, Key{Org: "o", User: "loading"}, Key{Org: "o", User: "fresh"}
	if _, err := c.Do(context.Background(), cached, func(context.Context) (string, time.Duration, error) { return "c", 0, nil }); err != nil {
		t.Fatal(err)
	}
	// "loading" is being loaded by an earlier batch: the new one skips it.
	first := c.BeginBatch(context.Background(), []Key{loading})
	b := c.BeginBatch(context.Background(), []Key{cached, loading, fresh})
	if got := b.Keys(); len(got) != 1 || got[0] != fresh {
		t.Fatalf("batch keys = %v, want only %v", got, fresh)
	}
	joined := make(chan struct{})
	c.onJoin = func(Key) { close(joined) }
	waiter := goDo(c, context.Background(), fresh, func(context.Context) (string, time.Duration, error) {
		return "", 0, errors.New("a joiner must not load")
	})
	recv(t, joined, "join")
	b.Finish(0, "f", 0)
	if r := recv(t, waiter, "joined Do"); r.v != "f" || r.err != nil {
		t.Fatalf("joined Do = %q, %v; want f, nil", r.v, r.err)
	}
	if v, ok := c.Get(fresh); !ok || v != "f" {
		t.Fatalf("batch value not stored: %q, %v", v, ok)
	}
	first.Finish(0, "l", 0)
	if v, ok := c.Get(loading); !ok || v != "l" {
		t.Fatalf("first batch value not stored: %q, %v", v, ok)
	}
}

func TestBatchStaleAndAbort(t *testing.T) {
	t.Parallel()
	c, _ := setup(t, Config{})
	k1, k2 := Key{Org: "o1", User: "u"}, Key{Org: "o2", User: "u"}
	b := c.BeginBatch(context.Background(), []Key{k1, k2})
	c.InvalidateOrg("o1")
	b.Finish(0, "stale", 0)
	if _, ok := c.Get(k1); ok {
		t.Fatal("a batch fill invalidated in flight was stored")
	}
	boom := errors.New("boom")
	b.Abort(boom)
	b.Finish(1, "late", 0) // after Abort: ignored
	if _, ok := c.Get(k2); ok {
		t.Fatal("an aborted batch stored a value")
	}
	if st := c.Stats(); st.StaleFills != 1 || st.InFlight != 0 {
		t.Fatalf("stats %+v: want 1 stale fill, nothing in flight", st)
	}
}
