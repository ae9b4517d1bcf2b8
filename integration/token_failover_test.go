//go:build unix

package integration_test

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/orgperm/orgperm/internal/faultproxy"
	"github.com/orgperm/orgperm/internal/pgstandby"
	"github.com/orgperm/orgperm/pkg/membership"
)

// TestTokenAcrossAsyncFailover: a consistency token taken on a primary
// whose last WAL never reached its asynchronous standby, the standby then
// promoted. The token stands for a write the failover lost, at a WAL
// position the new timeline will not reach for a long while (megabytes of
// WAL written after the replication went silent). A check carrying it must
// still answer once the instance is synced on the new primary, and answer
// what the new primary holds: the instance purged on reconnecting, so what
// it serves from then on was read on the new timeline, which holds every
// write of the token that survived. (Tokens carry their timeline; before,
// the check waited, proof after proof, for the new primary's WAL to pass
// the old position, and failed at the caller's deadline.)
//
// The instance also offloads its fills to a second standby, which kept
// following the old primary to its end: it replayed the lost write, and
// its WAL position lies past the new primary's. It must not be read after
// the failover (a grant the new primary lost would be served from it for
// as long as it lives): the fill reads the primary instead.
func TestTokenAcrossAsyncFailover(t *testing.T) {
	skipShort(t) // a cluster and a standby of its own
	t.Parallel()
	ctx := context.Background()
	cluster, url, setup := failoverPrimary(t)

	// The standby replicates asynchronously, through a proxy the test
	// silences; the instance reaches the primary through a virtual IP.
	repl := faultproxy.New(t, hostPort(t, cluster.URL))
	t.Cleanup(repl.CutAll)
	sb := pgstandby.StartTB(t, pgstandby.Config{PrimaryURL: strings.Replace(cluster.URL, hostPort(t, cluster.URL), repl.Addr(), 1)})
	diverged := pgstandby.StartTB(t, pgstandby.Config{PrimaryURL: cluster.URL})
	replicaURL, err := diverged.ConnStringFor(url)
	if err != nil {
		t.Fatal(err)
	}
	replica := proxiedPool(t, replicaURL, net.JoinHostPort(diverged.Host, strconv.Itoa(diverged.Port)), nil)
	vip := faultproxy.New(t, hostPort(t, cluster.URL))
	t.Cleanup(vip.CutAll)
	pool := proxiedPool(t, url, vip.Addr(), nil)
	in := newInstance(t, pool, membership.Config{ListenerConnect: connectVia(t, url, vip.Addr(), &gate{}),
		Replica: replica, ReplicaWait: failoverTimeout}) // a fill waits for the replica: it is read before the failover
	if ok, err := in.c.HasPermission(ctx, "o1", "u1", "billing.edit_invoice"); err != nil || !ok {
		t.Fatalf("before the failover: HasPermission = %t, %v; want true", ok, err)
	}
	if err := in.c.Check(ctx); err != nil {
		t.Fatalf("before the failover: Check() = %v, want the cache in service", err)
	}

	// Everything so far reaches the standby; then nothing more does.
	var lsn string
	if err := setup.QueryRow(ctx, `SELECT pg_current_wal_insert_lsn()::text`).Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, failoverTimeout)
	defer cancel()
	if err := sb.WaitReplay(wctx, lsn); err != nil {
		t.Fatal(err)
	}
	repl.Blackhole()
	for _, q := range []string{
		`CREATE TABLE public.ballast AS SELECT g, repeat('x', 1000) AS pad FROM generate_series(1, 20000) g`, // ~25 MB of WAL
		`UPDATE orgperm.memberships SET status = 'suspended' WHERE org_id = 'o1' AND user_id = 'u1'`,
	} {
		if _, err := setup.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	tok, err := in.c.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := setup.QueryRow(ctx, `SELECT pg_current_wal_insert_lsn()::text`).Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	if err := diverged.WaitReplay(wctx, lsn); err != nil { // it has the lost write
		t.Fatal(err)
	}
	if ok, err := in.c.HasPermission(ctx, "o1", "u2", "billing.edit_invoice"); err != nil || !ok { // a fill
		t.Fatalf("o1/u2 before the failover: %t, %v", ok, err)
	}
	if st := in.c.Stats().Replica; st.Fills == 0 {
		t.Fatalf("no fill read the replica before the failover: %+v", st)
	}

	failedAt := time.Now()
	if err := cluster.Crash(); err != nil {
		t.Fatal(err)
	}
	if err := sb.Promote(wctx); err != nil {
		t.Fatal(err)
	}
	vip.Retarget(net.JoinHostPort(sb.Host, strconv.Itoa(sb.Port)))
	waitTrusted(t, in, failedAt)

	// The suspension was lost: the new primary has the member active.
	newPrimary := rawConn(t, strings.Replace(url, hostPort(t, url), net.JoinHostPort(sb.Host, strconv.Itoa(sb.Port)), 1))
	var status string
	if err := newPrimary.QueryRow(ctx, `SELECT status FROM orgperm.memberships WHERE org_id = 'o1' AND user_id = 'u1'`).Scan(&status); err != nil || status != "active" {
		t.Fatalf("on the new primary the member is %q, %v; want active (the suspension never replicated)", status, err)
	}
	var newLSN string
	if err := newPrimary.QueryRow(ctx, `SELECT pg_current_wal_insert_lsn()::text`).Scan(&newLSN); err != nil {
		t.Fatal(err)
	}

	// A check with the token, within a deadline far below what the new
	// primary would take to write the lost WAL again.
	cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
	defer ccancel()
	tctx, err := membership.WithToken(cctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ok, err := in.c.HasPermission(tctx, "o1", "u1", "billing.edit_invoice")
	took := time.Since(start)
	t.Logf("token %s (new primary at %s): the check took %v", tok, newLSN, took)
	if err != nil || !ok {
		t.Fatalf("a check with a token of the lost timeline: %t, %v after %v; want true (the new primary's answer) at once", ok, err, took)
	}
	st := in.c.Stats().Replica
	t.Logf("replica fills after the failover: %+v", st)
	if st.OffTimeline == 0 {
		t.Errorf("the diverged replica was not refused for its timeline: %+v", st)
	}
}
