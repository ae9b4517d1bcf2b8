package relay_test

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orgperm/orgperm/internal/faultproxy"
	"github.com/orgperm/orgperm/internal/sidecheck"
	"github.com/orgperm/orgperm/pkg/relay"
)

// proxiedRelay starts a relay on url whose connections all go through a
// fault proxy.
func proxiedRelay(t *testing.T, url string) (*faultproxy.Proxy, *relay.Relay, chan bool) {
	t.Helper()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	proxy := faultproxy.New(t, net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))))
	host, port, _ := net.SplitHostPort(proxy.Addr())
	p, _ := strconv.ParseUint(port, 10, 16)
	r, ch := startRelay(t, func(ctx context.Context) (*pgx.Conn, error) {
		cc := cfg.Copy()
		cc.Host, cc.Port, cc.Fallbacks = host, uint16(p), nil
		cc.ConnectTimeout = 2 * time.Second // a dial into the silent proxy never ends
		return pgx.ConnectConfig(ctx, cc)
	})
	t.Cleanup(proxy.CutAll) // before the relay stops
	return proxy, r, ch
}

// TestRelaySilentConnection: the leader's connection goes silent (a TCP
// proxy drops every byte and closes nothing). Its round never returns, so
// without a deadline it would lead forever and relay nothing; it gives the
// round up at its statement deadline, loses the lead, and leads again on a
// new connection once the network answers, relaying what was queued
// meanwhile.
func TestRelaySilentConnection(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the relay's statement deadline (-short; make test runs it)")
	}
	t.Parallel()
	url, listen := setup(t)
	proxy, r, ch := proxiedRelay(t, url)
	wait(t, ch, true)
	evict(t, url, listen, "before")

	proxy.Blackhole()
	t0 := time.Now()
	wait(t, ch, false) // the round's deadline
	lost := time.Since(t0)
	proxy.Restore()
	wait(t, ch, true)
	t.Logf("lost the lead %v after the network went silent; led again %v after it answered", lost, time.Since(t0)-lost)
	evict(t, url, listen, "after")
	if st := r.Stats(); st.Errors == 0 {
		t.Errorf("stats %+v: want the abandoned round counted", st)
	}
}

// TestWALRelaySilentConnection is TestRelaySilentConnection in wal mode:
// both of the leader's connections (the one holding the lock, and the
// replication connection streaming the slot) go silent. A silent stream
// is only a stream with nothing to say, so the relay finds out through the
// other connection, whose check of the transport (once a second) misses
// its deadline: it loses the lead, leads again once the network answers,
// streams the slot again and relays what was written meanwhile.
func TestWALRelaySilentConnection(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the relay's statement deadline (-short; make test runs it)")
	}
	t.Parallel()
	url, listen := setup(t)
	ctx := context.Background()
	conn := connect(t, url)
	if ok, why, err := sidecheck.WAL(ctx, conn); err != nil {
		t.Fatal(err)
	} else if !ok {
		t.Skip(why)
	}
	if _, err := conn.Exec(ctx, `SELECT orgperm.set_transport('wal'), orgperm.relay()`); err != nil {
		t.Fatal(err)
	}
	proxy, r, ch := proxiedRelay(t, url)
	streaming := func() {
		t.Helper()
		for deadline := time.Now().Add(waitTimeout); ; {
			_, on, err := sidecheck.WALSlot(ctx, conn)
			if err != nil {
				t.Fatal(err)
			}
			if on {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("no walsender streams the slot")
			}
			time.Sleep(10 * time.Millisecond) // polling for the relay's replication connection
		}
	}
	wait(t, ch, true)
	streaming()
	evict(t, url, listen, "before")

	proxy.Blackhole()
	t0 := time.Now()
	wait(t, ch, false) // the transport check's deadline
	lost := time.Since(t0)
	if _, err := conn.Exec(ctx, `SELECT orgperm.evict_user('meanwhile')`); err != nil {
		t.Fatal(err)
	}
	proxy.Restore()
	wait(t, ch, true)
	t.Logf("lost the lead %v after the network went silent; led again %v after it answered", lost, time.Since(t0)-lost)
	evicted(t, listen, "meanwhile") // decoded from the slot, which kept it
	evict(t, url, listen, "after")
	if st := r.Stats(); st.Errors == 0 || st.WALSlotsCreated != 1 {
		t.Errorf("stats %+v: want the abandoned session counted, and the slot made once", st)
	}
}
