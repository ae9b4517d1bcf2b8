package localcache

import (
	"testing"
)

func TestTicket(t *testing.T) {
	t.Parallel()
	k := Key{Org: "o1", User: "u1"}
	tests := []struct {
		name    string
		between func(*Cache[string], *fakeClock) // between Begin and Store
		lands   bool
		stale   uint64
	}{
		{"nothing", func(*Cache[string], *fakeClock) {}, true, 0},
		{"InvalidateKey", func(c *Cache[string], _ *fakeClock) { c.InvalidateKey(k) }, false, 1},
		{"InvalidateOrg", func(c *Cache[string], _ *fakeClock) { c.InvalidateOrg("o1") }, false, 1},
		{"InvalidateUser", func(c *Cache[string], _ *fakeClock) { c.InvalidateUser("u1") }, false, 1},
		{"InvalidateAll", func(c *Cache[string], _ *fakeClock) { c.InvalidateAll() }, false, 1},
		{"InvalidateOrg other", func(c *Cache[string], _ *fakeClock) { c.InvalidateOrg("o2") }, true, 0},
		{"MarkUnsynced", func(c *Cache[string], _ *fakeClock) { c.MarkUnsynced() }, false, 1},
		{"MarkUnsynced+Resync", func(c *Cache[string], _ *fakeClock) { c.MarkUnsynced(); c.Resync() }, false, 1},
		{"TTL passed", func(_ *Cache[string], clock *fakeClock) { clock.Advance(DefaultTTL) }, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, clock := setup(t, Config{})
			tk := c.Begin(k)
			if tk.Key() != k {
				t.Errorf("Key = %v, want %v", tk.Key(), k)
			}
			tt.between(c, clock)
			if got := tk.Store("v", 0); got != tt.lands {
				t.Fatalf("Store = %v, want %v", got, tt.lands)
			}
			if tk.Store("again", 0) {
				t.Error("second Store landed")
			}
			tk.Cancel() // no-op after Store
			if tt.lands {
				wantGet(t, c, k, "v", true)
			} else if v, ok := c.Get(k); ok {
				t.Errorf("Get = %q after a refused Store", v)
			}
			st := c.Stats()
			if st.StaleFills != tt.stale || st.InFlight != 0 {
				t.Errorf("StaleFills = %d, InFlight = %d; want %d, 0", st.StaleFills, st.InFlight, tt.stale)
			}
		})
	}
}

func TestTicketBegunUnsynced(t *testing.T) {
	t.Parallel()
	c, _ := setup(t, Config{})
	c.MarkUnsynced()
	tk := c.Begin(Key{User: "u"})
	c.Resync()
	if tk.Store("v", 0) {
		t.Error("a ticket begun while unsynced landed")
	}
}

func TestTicketCancel(t *testing.T) {
	t.Parallel()
	c, _ := setup(t, Config{})
	tk := c.Begin(Key{User: "u"})
	if st := c.Stats(); st.InFlight != 1 {
		t.Fatalf("InFlight = %d, want 1", st.InFlight)
	}
	tk.Cancel()
	tk.Cancel()
	if tk.Store("v", 0) {
		t.Error("Store after Cancel landed")
	}
	if st := c.Stats(); st.InFlight != 0 || st.Entries != 0 {
		t.Errorf("InFlight = %d, Entries = %d; want 0, 0", st.InFlight, st.Entries)
	}
}
