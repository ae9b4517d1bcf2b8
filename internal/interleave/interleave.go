// Package interleave runs the sides of a benchmark against each other so
// that each side pays for its own work, including the work it leaves
// behind: a notifying commit wakes the listener's backend and client, a
// queued one the relay's next round, and that work runs during whatever
// statements come next.
//
// Statement by statement in a fixed rotation, that work always lands on the
// same next side (docs/DECISIONS.md 62). [Blocks] times each side's
// statements in blocks instead, long enough that what a block leaves
// behind is a small part of it, and in a new random order every round, so
// that the remainder falls on every side alike.
package interleave

import (
	"math/rand/v2"
	"time"
)

// BlockTime is about how long one side's block of statements should take:
// several of the queue relay's default 5 ms rounds.
const BlockTime = 25 * time.Millisecond

// BlockOf is how many statements that each take about cost make a block of
// about [BlockTime]; at least one.
func BlockOf(cost time.Duration) int {
	if cost <= 0 {
		return 1
	}
	return max(1, int(BlockTime/cost))
}

// Blocks runs run(side, i) for every side in [0, sides) and every i in
// [0, n), each side's i in blocks of block consecutive values, the sides of
// each block range in a new random order, and returns the time each side's
// calls took in all. It stops at the first error.
func Blocks(n, sides, block int, run func(side, i int) error) ([]time.Duration, error) {
	took := make([]time.Duration, sides)
	block = max(1, block)
	for first := 0; first < n; first += block {
		last := min(first+block, n)
		for _, s := range rand.Perm(sides) {
			start := time.Now()
			for i := first; i < last; i++ {
				if err := run(s, i); err != nil {
					return took, err
				}
			}
			took[s] += time.Since(start)
		}
	}
	return took, nil
}
