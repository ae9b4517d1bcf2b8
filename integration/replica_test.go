package integration_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/orgperm/orgperm/internal/pgstandby"
	"github.com/orgperm/orgperm/pkg/membership"
	"github.com/orgperm/orgperm/pkg/pgtest"
)

// TestReplicaFillsNeverStale: two instances fill from a streaming standby
// whose apply lags 500 ms behind the primary (recovery_min_apply_delay),
// while the timeline writer commits a new version every few milliseconds;
// every read is judged on the writer's commit timeline. A fill that read
// the standby before it replayed an applied write would be about 500 ms
// stale; the bound is 100 ms. With the default ReplicaWait (50 ms) fills
// mostly fall back to the primary; with 2 s they wait for the standby.
// ORGPERM_LONG=1 runs each for 3 minutes.
func TestReplicaFillsNeverStale(t *testing.T) {
	skipShort(t) // a standby
	const (
		applyDelay = 500 * time.Millisecond
		bound      = 100 * time.Millisecond
	)
	server := pgtest.Shared(t)
	w := newWorld(t, server)
	started := time.Now()
	sb := pgstandby.StartTB(t, pgstandby.Config{PrimaryURL: server.URL, ApplyDelay: applyDelay})
	t.Logf("standby started in %v", time.Since(started))
	surl, err := sb.ConnStringFor(w.url)
	if err != nil {
		t.Fatal(err)
	}
	replica := newPool(t, surl)
	for _, wait := range []time.Duration{0, 2 * time.Second} {
		t.Run(fmt.Sprintf("ReplicaWait=%v", wait), func(t *testing.T) {
			var ins []*membership.Client
			for range 2 {
				// Not newInstance: its notification channel would fill up
				// in a long run that nobody drains.
				nctx, ncancel := context.WithTimeout(context.Background(), waitTimeout)
				c, err := membership.New(nctx, w.pool, membership.Config{Replica: replica, ReplicaWait: wait})
				ncancel()
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = c.Close(context.Background()) })
				select {
				case <-c.Ready():
				case <-time.After(waitTimeout):
					t.Fatal("client never became ready")
				}
				ins = append(ins, c)
			}
			stop := timelineLoad(t, w, bound, ins...)
			time.Sleep(longDuration(4*time.Second, 3*time.Minute)) // the load runs for this long
			st := stop()
			var rs membership.ReplicaStats
			for _, c := range ins {
				s := c.Stats().Replica
				rs.Fills += s.Fills
				rs.Waits += s.Waits
				rs.Fallbacks += s.Fallbacks
				rs.Lagging += s.Lagging
				rs.Errors += s.Errors
				rs.Untrusted += s.Untrusted
				rs.PositionReads += s.PositionReads
			}
			if st.stale != 0 || st.reads < 10 {
				t.Fatalf("%d of %d reads stale by more than %v (max %v), want 0 of at least 10; replica %+v", st.stale, st.reads, bound, st.maxStale, rs)
			}
			if rs.Fills+rs.Fallbacks == 0 {
				t.Fatalf("no fill at all under a write load: %+v", rs)
			}
			t.Logf("apply delay %v, ReplicaWait %v: %d reads, %d failed closed, 0 stale (max %v); replica fills %d, waits %d, fallbacks %d (lagging %d, errors %d, untrusted %d), position reads %d",
				applyDelay, wait, st.reads, st.failed, st.maxStale, rs.Fills, rs.Waits, rs.Fallbacks, rs.Lagging, rs.Errors, rs.Untrusted, rs.PositionReads)
		})
	}
}
