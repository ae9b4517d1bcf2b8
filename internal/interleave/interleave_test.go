package interleave

import (
	"errors"
	"testing"
	"time"
)

// TestBlocks: every side runs every i exactly once, in blocks of
// consecutive i per side, and every side goes first in some round.
func TestBlocks(t *testing.T) {
	const n, sides, block = 1000, 4, 7
	seen := make([][]int, sides)
	var order []int          // the side of each call, in call order
	firsts := map[int]bool{} // the sides that opened a round
	_, err := Blocks(n, sides, block, func(s, i int) error {
		if len(order)%(block*sides) == 0 {
			firsts[s] = true
		}
		seen[s] = append(seen[s], i)
		order = append(order, s)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for s, is := range seen {
		if len(is) != n {
			t.Fatalf("side %d ran %d times, want %d", s, len(is), n)
		}
		for k, i := range is {
			if i != k {
				t.Fatalf("side %d ran i=%d as its call %d", s, i, k)
			}
		}
	}
	// Calls come in runs of one side: block long, but for the last round.
	for k := 0; k+block <= n/block*block*sides; k += block {
		for j := k; j < k+block; j++ {
			if order[j] != order[k] {
				t.Fatalf("call %d is side %d inside side %d's block at %d", j, order[j], order[k], k)
			}
		}
	}
	if len(firsts) != sides {
		t.Errorf("sides that went first in some round: %v, want all %d", firsts, sides)
	}
}

// TestBlocksTimesEachSide: a side's time is the time of its own calls, not
// its neighbours'. (The sleeps are side 1's work, not a wait.)
func TestBlocksTimesEachSide(t *testing.T) {
	took, err := Blocks(20, 2, 5, func(s, _ int) error {
		if s == 1 {
			time.Sleep(2 * time.Millisecond)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if took[1] < 40*time.Millisecond {
		t.Errorf("side 1 took %v, want at least its 20 sleeps of 2 ms", took[1])
	}
	if took[0] >= 20*time.Millisecond {
		t.Errorf("side 0, which does nothing, took %v: it was charged side 1's calls", took[0])
	}
}

// TestBlocksStopsAtError: the first error ends the run and is returned.
func TestBlocksStopsAtError(t *testing.T) {
	boom := errors.New("boom")
	calls := 0
	_, err := Blocks(100, 3, 10, func(s, i int) error {
		calls++
		if i == 12 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	if calls > 3*10+3 {
		t.Errorf("%d calls after the error's round, want it to stop at once", calls)
	}
}

func TestBlockOf(t *testing.T) {
	for _, tc := range []struct {
		cost time.Duration
		want int
	}{{300 * time.Microsecond, 83}, {8 * time.Millisecond, 3}, {time.Second, 1}, {0, 1}} {
		if got := BlockOf(tc.cost); got != tc.want {
			t.Errorf("BlockOf(%v) = %d, want %d", tc.cost, got, tc.want)
		}
	}
}
