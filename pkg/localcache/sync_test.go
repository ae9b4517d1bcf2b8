package localcache

import (
	"context"
	"testing"
)

func TestUnsyncedGetBypasses(t *testing.T) {
	t.Parallel()
	c, _ := setup(t, Config{})
	k := Key{Org: "o", User: "u"}
	mustDo(t, c, k, "v")

	c.MarkUnsynced()
	if c.Synced() {
		t.Fatal("Synced after MarkUnsynced")
	}
	wantGet(t, c, k, "", false)
	if st := c.Stats(); st.Bypassed != 1 || st.Hits != 0 || st.Entries != 1 {
		t.Errorf("Bypassed = %d, Hits = %d, Entries = %d; want 1, 0, 1", st.Bypassed, st.Hits, st.Entries)
	}

	c.Resync()
	if !c.Synced() {
		t.Fatal("not Synced after Resync")
	}
	wantGet(t, c, k, "", false) // purged
	if st := c.Stats(); st.EvictedAll != 1 || st.Entries != 0 {
		t.Errorf("EvictedAll = %d, Entries = %d; want 1, 0", st.EvictedAll, st.Entries)
	}
	mustDo(t, c, k, "v2")
	wantGet(t, c, k, "v2", true)
}

// TestSyncChangeDuringLoad checks that a load in flight across MarkUnsynced,
// or across Resync, does not land.
func TestSyncChangeDuringLoad(t *testing.T) {
	t.Parallel()
	for name, change := range map[string]func(*Cache[string]){
		"MarkUnsynced":        func(c *Cache[string]) { c.MarkUnsynced() },
		"Resync":              func(c *Cache[string]) { c.Resync() },
		"MarkUnsynced+Resync": func(c *Cache[string]) { c.MarkUnsynced(); c.Resync() },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c, _ := setup(t, Config{})
			k := Key{Org: "o", User: "u"}
			b := newBlocker("old")
			res := goDo(c, context.Background(), k, b.load)
			recv(t, b.started, "load")
			change(c)
			close(b.release)
			if r := recv(t, res, "Do"); r.v != "old" || r.err != nil {
				t.Fatalf("Do = %q, %v; want old, nil", r.v, r.err)
			}
			if st := c.Stats(); st.StaleFills != 1 || st.Entries != 0 {
				t.Errorf("StaleFills = %d, Entries = %d; want 1, 0", st.StaleFills, st.Entries)
			}
			if c.Synced() {
				// A later load lands again.
				mustDo(t, c, k, "new")
				wantGet(t, c, k, "new", true)
			}
		})
	}
}

// TestUnsyncedDoCoalescesWithoutStoring: while unsynced, callers that
// arrive once a load has begun do not join it (its snapshot may predate a
// write they must see): they share one load queued behind it, which begins
// once the first is done. Nothing is stored.
func TestUnsyncedDoCoalescesWithoutStoring(t *testing.T) {
	t.Parallel()
	const callers = 50
	c, _ := setup(t, Config{})
	joined := joinSignal(c)
	k := Key{Org: "o", User: "u"}
	c.MarkUnsynced()

	b := newBlocker("v")
	results := []<-chan result{goDo(c, context.Background(), k, b.load)}
	recv(t, b.started, "load")
	for range callers - 1 {
		results = append(results, goDo(c, context.Background(), k, b.load))
	}
	for range callers - 2 { // one of them queued the second load
		recv(t, joined, "join")
	}
	if got := b.calls.Load(); got != 1 {
		t.Fatalf("%d loads running; want 1 (the queued one waits)", got)
	}
	close(b.release)
	for _, ch := range results {
		if r := recv(t, ch, "Do"); r.v != "v" || r.err != nil {
			t.Fatalf("Do = %q, %v; want v, nil", r.v, r.err)
		}
	}
	st := c.Stats()
	if b.calls.Load() != 2 || st.Loads != 2 || st.Coalesced != callers-2 {
		t.Errorf("load calls = %d, Loads = %d, Coalesced = %d; want 2, 2, %d",
			b.calls.Load(), st.Loads, st.Coalesced, callers-2)
	}
	if st.Bypassed != callers || st.StaleFills != 2 || st.Fills != 0 || st.Entries != 0 {
		t.Errorf("Bypassed = %d, StaleFills = %d, Fills = %d, Entries = %d; want %d, 2, 0, 0",
			st.Bypassed, st.StaleFills, st.Fills, st.Entries, callers)
	}

	c.Resync()
	mustDo(t, c, k, "v2")
	wantGet(t, c, k, "v2", true)
}

// TestResyncLosesToMarkUnsynced checks that a MarkUnsynced racing a Resync
// leaves the cache unsynced.
func TestResyncLosesToMarkUnsynced(t *testing.T) {
	t.Parallel()
	c, _ := setup(t, Config{})
	c.MarkUnsynced()
	c.onResyncWalked = func() { c.MarkUnsynced() }
	c.Resync()
	if c.Synced() {
		t.Fatal("Synced after a MarkUnsynced during Resync")
	}
	c.onResyncWalked = nil
	c.Resync()
	if !c.Synced() {
		t.Fatal("not Synced after an undisturbed Resync")
	}
	c.Resync() // idempotent
	if !c.Synced() {
		t.Fatal("not Synced after a second Resync")
	}
}
