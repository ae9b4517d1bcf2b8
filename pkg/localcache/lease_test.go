package localcache

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestLease checks the freshness lease: no answer before the first proof,
// answers until Lease after the newest proof, a request for a new proof
// (once per proof) at a random point between half and three quarters of
// it, and fills that still land past it.
func TestLease(t *testing.T) {
	t.Parallel()
	const lease = time.Second
	asked := 0
	c, clock := setup(t, Config{Lease: lease, OnLeaseLow: func() { asked++ }})
	k := Key{Org: "o", User: "u"}

	mustDo(t, c, k, "v") // lands: fills land whatever the lease says
	wantGet(t, c, k, "", false)
	if st := c.Stats(); st.LeaseExpired != 2 { // the Do and the Get
		t.Fatalf("LeaseExpired = %d before any proof; want 2", st.LeaseExpired)
	}
	if asked != 1 {
		t.Fatalf("OnLeaseLow called %d times with no proof; want 1", asked)
	}

	c.Prove(clock.Now())
	if c.Trusted() != true {
		t.Fatal("Trusted = false right after a proof")
	}
	wantGet(t, c, k, "v", true)
	clock.Advance(lease/2 - time.Nanosecond)
	wantGet(t, c, k, "v", true)
	if asked != 1 {
		t.Fatalf("OnLeaseLow called in the first half of the lease")
	}
	clock.Advance(lease/4 + time.Nanosecond) // three quarters gone: asked by now, once
	wantGet(t, c, k, "v", true)
	wantGet(t, c, k, "v", true)
	if asked != 2 {
		t.Fatalf("OnLeaseLow called %d times; want 2", asked)
	}
	clock.Advance(lease/4 - time.Nanosecond)
	wantGet(t, c, k, "v", true)
	clock.Advance(time.Nanosecond) // the lease is over
	wantGet(t, c, k, "", false)
	if c.Trusted() {
		t.Fatal("Trusted past the lease")
	}
	// Do past the lease loads (and its result lands for later).
	if got, err := c.Do(context.Background(), k, value("w")); err != nil || got != "w" {
		t.Fatalf("Do past the lease = %q, %v; want w (a load)", got, err)
	}

	// An older proof changes nothing; a newer one extends.
	c.Prove(clock.Now().Add(-2 * lease))
	wantGet(t, c, k, "", false)
	c.Prove(clock.Now())
	wantGet(t, c, k, "w", true)
	if at, ok := c.Proven(); !ok || !at.Equal(clock.Now()) {
		t.Fatalf("Proven = %v, %v; want %v, true", at, ok, clock.Now())
	}
}

// TestLeaseUnsynced checks that a proof never trusts an unsynced cache.
func TestLeaseUnsynced(t *testing.T) {
	t.Parallel()
	c, clock := setup(t, Config{Lease: time.Second})
	k := Key{Org: "o", User: "u"}
	c.Prove(clock.Now())
	mustDo(t, c, k, "v")
	wantGet(t, c, k, "v", true)
	c.MarkUnsynced()
	c.Prove(clock.Now())
	wantGet(t, c, k, "", false)
	if c.Trusted() {
		t.Fatal("Trusted while unsynced")
	}
}

// TestIndexFollowsEntries checks that the org and user index never keeps a
// key the LRU dropped (capacity evictions, removals, purges, replacements),
// so that an org or user eviction finds exactly the live entries.
func TestIndexFollowsEntries(t *testing.T) {
	t.Parallel()
	c, _ := setup(t, Config{Capacity: 64, Shards: 4})
	for i := range 1000 {
		k := Key{Org: fmt.Sprintf("o%d", i%7), User: fmt.Sprintf("u%d", i%13)}
		if i%5 == 0 {
			k.Org = "" // user-wide keys too
		}
		mustDo(t, c, k, "v")
		switch i % 97 {
		case 10:
			c.InvalidateOrg("o3")
		case 20:
			c.InvalidateUser("u5")
		case 30:
			c.InvalidateKey(k)
		case 40:
			c.InvalidateAll()
		}
	}
	entries, indexed := 0, 0
	for i := range c.shards {
		s := &c.shards[i]
		entries += s.len()
		inRing := 0
		for slot, e := range s.ring {
			if e == nil {
				continue
			}
			inRing++
			if s.tab.get(e.hash) != e || int(e.slot) != slot {
				t.Fatalf("ring slot %d holds %v, not the map's entry of that hash", slot, e.key)
			}
		}
		if inRing != s.len() || len(s.ring)-len(s.free) != s.len() {
			t.Fatalf("ring holds %d entries (%d slots, %d free) for %d in the map", inRing, len(s.ring), len(s.free), s.len())
		}
		for name, head := range s.byOrg {
			for e := head; e != nil; e = e.orgNext {
				if e.key.Org != name || s.tab.get(e.hash) != e {
					t.Fatalf("org index keeps %q -> %v, not a live entry of that org", name, e.key)
				}
				indexed++
			}
		}
		for name, head := range s.byUser {
			for e := head; e != nil; e = e.userNext {
				if e.key.User != name || s.tab.get(e.hash) != e {
					t.Fatalf("user index keeps %q -> %v, not a live entry of that user", name, e.key)
				}
				indexed++
			}
		}
	}
	if indexed != 2*entries {
		t.Fatalf("index holds %d references for %d entries; want 2 each", indexed, entries)
	}
	// Evictions through the index remove exactly the matching entries.
	before := c.Len()
	var inOrg int
	for _, k := range c.Keys() {
		if k.Org == "o1" {
			inOrg++
		}
	}
	c.InvalidateOrg("o1")
	if got := c.Len(); got != before-inOrg {
		t.Fatalf("InvalidateOrg(o1) left %d entries; want %d", got, before-inOrg)
	}
	for _, k := range c.Keys() {
		if k.Org == "o1" {
			t.Fatalf("InvalidateOrg(o1) left %v", k)
		}
	}
}

// TestAskDelaySuppression simulates rounds of k instances whose leases were
// refreshed by the same proof: each asks at its askDelay, and every one
// whose ask falls before the first asker's proof has come back (a round
// trip of 6% of the window, 15 ms of the default 1 s lease's 250 ms) sends
// a proof too. The mean number of proofs per round must stay near one as k
// grows, where a uniform draw would send 1 + 0.06k (about 5 at 64).
func TestAskDelaySuppression(t *testing.T) {
	t.Parallel()
	const w = int64(250 * time.Millisecond)
	rtt := w * 6 / 100
	for _, u := range []float64{0, 0.5, 0.999999} {
		if d := askDelay(w, u); d < 0 || d > w {
			t.Fatalf("askDelay(%d, %v) = %d: outside the window", w, u, d)
		}
	}
	if askDelay(w, 0.2) >= askDelay(w, 0.8) {
		t.Fatal("askDelay is not increasing in u")
	}
	r := rand.New(rand.NewPCG(1, 2))
	for _, k := range []int{1, 8, 32, 64, 256, 512} {
		const rounds = 2000
		sent := 0
		asks := make([]int64, k)
		for range rounds {
			for i := range asks {
				asks[i] = askDelay(w, r.Float64())
			}
			first := slices.Min(asks)
			for _, a := range asks {
				if a < first+rtt {
					sent++
				}
			}
		}
		mean := float64(sent) / rounds
		t.Logf("k = %4d: %.2f proofs per round", k, mean)
		if mean > 2 {
			t.Errorf("k = %d: %.2f proofs per round; want at most 2", k, mean)
		}
	}
}
