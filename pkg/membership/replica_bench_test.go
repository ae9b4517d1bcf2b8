package membership

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// BenchmarkReplicaOffload reads random keys of 2,000 members through a
// Client with a small cache (200 entries, so most checks fill) and a
// standby with no apply delay as Config.Replica, with no writes and with
// one membership write (raw SQL, another writer) per 100 checks. It counts
// statements on each server with pgx tracers and reports the share of
// fills that read the standby (fills-off-primary-%), the primary's
// statements per fill (proofs, WAL position reads and fallback fills: the
// listener's and the writer's connections are not counted) and the
// standby's.
//
//	go test -run '^$' -bench ReplicaOffload ./pkg/membership
func BenchmarkReplicaOffload(b *testing.B) {
	const members = 2000
	primary, replica, pc, rc, url := replicaSetup(b, 0)
	ctx := context.Background()
	writer, err := pgxpool.New(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(writer.Close)
	if _, err := writer.Exec(ctx, `INSERT INTO orgperm.memberships (org_id, user_id)
		SELECT 'o1', 'u' || g FROM generate_series(0, $1 - 1) g`, members); err != nil {
		b.Fatal(err)
	}
	awaitReplica(b, ctx, writer, replica)
	c, err := New(ctx, primary, Config{Capacity: 200, Replica: replica})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close(context.Background()) })
	select {
	case <-c.Ready():
	case <-time.After(20 * time.Second):
		b.Fatal("never ready")
	}
	for _, writeEvery := range []int{0, 100} {
		b.Run(fmt.Sprintf("write-every=%d", writeEvery), func(b *testing.B) {
			s0, p0, r0 := c.Stats(), pc.n.Load(), rc.n.Load()
			i := 0
			for b.Loop() {
				i++
				u := fmt.Sprintf("u%d", rand.IntN(members))
				if writeEvery > 0 && i%writeEvery == 0 {
					if _, err := writer.Exec(ctx, `UPDATE orgperm.memberships SET status = CASE status WHEN 'active' THEN 'suspended' ELSE 'active' END WHERE org_id = 'o1' AND user_id = $1`, u); err != nil {
						b.Fatal(err)
					}
				}
				if _, err := c.Permissions(ctx, "o1", u); err != nil {
					b.Fatal(err)
				}
			}
			s := c.Stats()
			fills := float64(s.Cache.Loads - s0.Cache.Loads)
			if fills == 0 {
				return
			}
			b.ReportMetric(100*float64(s.Replica.Fills-s0.Replica.Fills)/fills, "fills-off-primary-%")
			b.ReportMetric(float64(pc.n.Load()-p0)/fills, "primary-stmts/fill")
			b.ReportMetric(float64(rc.n.Load()-r0)/fills, "standby-stmts/fill")
			b.ReportMetric(float64(s.Replica.Fallbacks-s0.Replica.Fallbacks)/fills, "fallbacks/fill")
			b.ReportMetric(float64(s.Replica.PositionReads-s0.Replica.PositionReads)/fills, "position-reads/fill")
			b.ReportMetric(float64(s.Listener.Notifications-s0.Listener.Notifications)/fills, "notifications/fill")
		})
	}
}
