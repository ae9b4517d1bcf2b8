package soak

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgxpool"
)

// sentinelPrefix starts the user ID of every sentinel notification: the
// clock's sentinel n evicts user "soak-sentinel-<n>", who has no data.
const sentinelPrefix = "soak-sentinel-"

// snapshot is the committed version of every component at one instant,
// taken before sentinel n was sent: once an instance has applied sentinel
// n, every write it counts has been applied too.
type snapshot struct {
	n int64
	v []int64
}

// versions holds, per component, the last version whose commit returned
// (committed) and the last version a writer began (begun). Only the
// component's writer stores them.
type versions struct {
	committed []atomic.Int64
	begun     []atomic.Int64
}

func newVersions(n int) *versions {
	return &versions{committed: make([]atomic.Int64, n), begun: make([]atomic.Int64, n)}
}

func (vs *versions) high(c int) int64 { return vs.begun[c].Load() }

// maxSnapshots bounds the snapshots kept for sentinels not yet seen by
// every instance. A sentinel whose snapshot was dropped is ignored, which
// only keeps a watermark lower: safe.
const maxSnapshots = 1024

// clock takes snapshots and sends their sentinels.
type clock struct {
	raw *pgxpool.Pool
	vs  *versions

	mu    sync.Mutex
	next  int64
	snaps map[int64]*snapshot
	sent  atomic.Uint64
}

func newClock(raw *pgxpool.Pool, vs *versions) *clock {
	return &clock{raw: raw, vs: vs, next: 1, snaps: map[int64]*snapshot{}}
}

// tick takes snapshot n of the committed versions, then commits sentinel
// n, and returns n. The snapshot is registered before the sentinel is
// sent, and kept even if sending fails: a sentinel whose commit was
// reported as failed but happened anyway still names a valid snapshot.
// Snapshots are taken in the order of n, so a later one is never lower.
func (c *clock) tick(ctx context.Context) (int64, error) {
	c.mu.Lock()
	n := c.next
	c.next++
	s := &snapshot{n: n, v: make([]int64, len(c.vs.committed))}
	for i := range c.vs.committed {
		s.v[i] = c.vs.committed[i].Load()
	}
	c.snaps[n] = s
	delete(c.snaps, n-maxSnapshots)
	c.mu.Unlock()
	_, err := c.raw.Exec(ctx, "SELECT orgperm.evict_user($1)", sentinelPrefix+strconv.FormatInt(n, 10))
	if err == nil {
		c.sent.Add(1)
	}
	return n, err
}

// lookup returns the snapshot of the sentinel evicting user, or nil if
// user is not a sentinel or its snapshot was dropped.
func (c *clock) lookup(user string) *snapshot {
	rest, ok := strings.CutPrefix(user, sentinelPrefix)
	if !ok {
		return nil
	}
	n, err := strconv.ParseInt(rest, 10, 64)
	if err != nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.snaps[n]
}

// prune drops the snapshots below n, which every instance has passed.
func (c *clock) prune(n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.snaps {
		if k < n {
			delete(c.snaps, k)
		}
	}
}
