package relay_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/orgperm/orgperm/pkg/relay"
)

// TestDeadLeaderHost: the leader's host vanishes. Every packet of its
// session is dropped on the loopback interface (tc), so the server's
// backend gets no FIN and no reset: without keepalives it would hold the
// relay's lock until the kernel's default keepalive gives up (over two
// hours; here, with the server's last reply unacknowledged, until its
// retransmissions give up, some 15 minutes), and no other relay could lead.
// The session's keepalives and tcp_user_timeout make the server drop it in
// about 16 s, and another relay leads. It needs Linux, tc and the right to
// change the loopback's queueing (root, CAP_NET_ADMIN), and skips without
// them; for its 16 s the loopback has an HTB queueing discipline that
// drops that one connection's packets (a run killed meanwhile leaves it:
// `tc qdisc del dev lo root` removes it, and until then the test skips).
func TestDeadLeaderHost(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the server's keepalives to give up (-short; make test runs it)")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to drop packets on the loopback interface with tc")
	}
	if _, err := exec.LookPath("tc"); err != nil {
		t.Skip("no tc (iproute2) to drop packets with")
	}
	url, _ := setup(t)
	ctx := context.Background()
	cfg := tcpConfig(t, url)
	a, leadA := leads(t, url)
	wait(t, leadA, true)

	conn := connect(t, url)
	leader, ok, err := relay.FindLeader(ctx, conn)
	if err != nil || !ok {
		t.Fatalf("the leader's session: %v, %v", ok, err)
	}
	port := int(leader.ClientPort)

	// The host vanishes: nothing of its session crosses the loopback any
	// more, in either direction.
	dropConn(t, port, int(cfg.Port))
	if err := a.Stop(ctx); err != nil {
		t.Fatal(err)
	}

	_, leadB := leads(t, url)
	t0 := time.Now()
	select {
	case l := <-leadB:
		if !l {
			t.Fatal("the second relay reported losing a lead it never had")
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("no other relay led within 90s of the leader's host vanishing: the server still holds its session (keepalives not set?)")
	}
	t.Logf("another relay led %v after the leader's host vanished", time.Since(t0).Round(100*time.Millisecond))
}

// dropConn stops every packet of the loopback TCP connection between
// ports client and server until the test ends (that connection only: no
// other connection can hold both ports while it lives). The packets are
// classified into an HTB class whose queue holds none, so they are dropped
// (this kernel has no drop action). It skips the test when tc is refused
// or the loopback already has a queueing discipline.
func dropConn(t *testing.T, client, server int) {
	t.Helper()
	tc := func(args ...string) error {
		out, err := exec.Command("tc", args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("tc %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if out, err := exec.Command("tc", "qdisc", "show", "dev", "lo").CombinedOutput(); err != nil || !strings.HasPrefix(string(out), "qdisc noqueue") {
		t.Skipf("the loopback's queueing cannot be changed here (%v: %s)", err, out)
	}
	if err := tc("qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb", "default", "10"); err != nil {
		t.Skip(err)
	}
	t.Cleanup(func() {
		if err := tc("qdisc", "del", "dev", "lo", "root"); err != nil {
			t.Error(err)
		}
	})
	c, sv := strconv.Itoa(client), strconv.Itoa(server)
	for _, args := range [][]string{
		{"class", "add", "dev", "lo", "parent", "1:", "classid", "1:10", "htb", "rate", "100gbit"}, // everything else
		{"class", "add", "dev", "lo", "parent", "1:", "classid", "1:1", "htb", "rate", "8bit", "ceil", "8bit", "burst", "1", "cburst", "1"},
		{"qdisc", "add", "dev", "lo", "parent", "1:1", "handle", "11:", "pfifo", "limit", "0"},
		{"filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", "1", "u32",
			"match", "ip", "sport", c, "0xffff", "match", "ip", "dport", sv, "0xffff", "flowid", "1:1"},
		{"filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", "1", "u32",
			"match", "ip", "sport", sv, "0xffff", "match", "ip", "dport", c, "0xffff", "flowid", "1:1"},
	} {
		if err := tc(args...); err != nil {
			t.Skip(err)
		}
	}
}
