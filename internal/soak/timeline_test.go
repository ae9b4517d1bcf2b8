package soak

import (
	"testing"
	"time"
)

// TestTimelineStaleness judges reads against a hand-made timeline of one
// component: version 1 sent at 10 and committed at 20, version 2 sent at
// 30 and failed at 40 (it may or may not have committed), version 3 sent
// at 50 and committed at 60, version 4 sent at 70 and still in flight.
func TestTimelineStaleness(t *testing.T) {
	t.Parallel()
	tl := newTimeline(1)
	tl.begin(0, 1, 10)
	tl.end(0, 1, 20, true)
	tl.begin(0, 2, 30)
	tl.end(0, 2, 40, false)
	tl.begin(0, 3, 50)
	tl.end(0, 3, 60, true)
	tl.begin(0, 4, 70)
	for _, c := range []struct {
		name string
		v    int64
		rs   int64
		want time.Duration
	}{
		{"seed read before version 1 returned", 0, 15, 0},
		{"seed read as version 1 returns", 0, 20, 0},
		{"seed read after version 1 returned", 0, 25, 5},
		{"version 1 read while version 2 failed: 3 bounds it", 1, 45, 0},
		{"version 1 read after version 3 returned", 1, 100, 40},
		{"failed version 2 shown after version 3 returned", 2, 65, 5},
		{"version 3 read while version 4 is in flight", 3, 1000, 0},
		{"version 4 (in flight) shown", 4, 1000, 0},
		{"seed read long after", 0, 1000, 980},
	} {
		if got := tl.staleness(0, c.v, c.rs); got != c.want {
			t.Errorf("%s: staleness(v%d, rs %d) = %d, want %d", c.name, c.v, c.rs, got, c.want)
		}
	}
	for _, c := range []struct{ at, want int64 }{{5, 0}, {21, 1}, {45, 1}, {61, 3}, {1000, 3}} {
		if got := tl.current(0, c.at); got != c.want {
			t.Errorf("current(%d) = %d, want %d", c.at, got, c.want)
		}
	}
}

func TestStaleStatsQuantiles(t *testing.T) {
	t.Parallel()
	var s staleStats
	for i := 100; i >= 1; i-- {
		s.add(time.Duration(i) * time.Millisecond)
	}
	p50, p99, mx := s.quantiles()
	if p50 != 51*time.Millisecond || p99 != 100*time.Millisecond || mx != 100*time.Millisecond {
		t.Errorf("p50 %v, p99 %v, max %v; want 51ms, 100ms, 100ms", p50, p99, mx)
	}
}

func TestWrongly(t *testing.T) {
	t.Parallel()
	set := func(g ...string) map[string]bool {
		m := map[string]bool{}
		for _, x := range g {
			m[x] = true
		}
		return m
	}
	for _, c := range []struct {
		got, want       map[string]bool
		allowed, denied bool
	}{
		{set("a"), set("a"), false, false},
		{set("a", "b"), set("a"), true, false},
		{set(), set("a"), false, true},
		{set("b"), set("a"), true, true},
	} {
		if a, d := wrongly(c.got, c.want); a != c.allowed || d != c.denied {
			t.Errorf("wrongly(%v, %v) = %v, %v; want %v, %v", c.got, c.want, a, d, c.allowed, c.denied)
		}
	}
}
