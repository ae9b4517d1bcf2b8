package integration_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/orgperm/orgperm/internal/hooks"
	"github.com/orgperm/orgperm/pkg/listener"
	"github.com/orgperm/orgperm/pkg/membership"
	"github.com/orgperm/orgperm/pkg/pgtest"
)

func TestMain(m *testing.M) {
	os.Exit(pgtest.Run(m, pgtest.After(func() error { return goleak.Find() })))
}

// hostPort returns the host:port a connection string reaches over TCP, for
// a fault proxy in front of it.
func hostPort(t *testing.T, url string) string {
	t.Helper()
	cc, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort(cc.Host, strconv.Itoa(int(cc.Port)))
}

// waitTimeout bounds every wait for a signal; it is a failure bound, never a
// way to let time pass.
const waitTimeout = 20 * time.Second

// instance is one app instance: a Client with its notifications and state
// changes delivered to channels the test waits on.
type instance struct {
	t      *testing.T
	c      *membership.Client
	invs   chan listener.Invalidation
	states chan listener.State
}

func newInstance(t *testing.T, pool *pgxpool.Pool, cfg membership.Config, h ...hooks.Client) *instance {
	t.Helper()
	in := &instance{
		t:      t,
		invs:   make(chan listener.Invalidation, 4096),
		states: make(chan listener.State, 4096),
	}
	userInv := cfg.OnInvalidate
	cfg.OnInvalidate = func(inv listener.Invalidation, err error) {
		if userInv != nil {
			userInv(inv, err)
		}
		select {
		case in.invs <- inv:
		default:
			t.Errorf("invalidation channel full")
		}
	}
	cfg.OnStateChange = func(s listener.State) {
		select {
		case in.states <- s:
		default:
			t.Errorf("state channel full")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if len(h) > 0 {
		ctx = hooks.WithClient(ctx, h[0])
	}
	c, err := membership.New(ctx, pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(context.Background()); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	in.c = c
	select {
	case <-c.Ready():
	case <-time.After(waitTimeout):
		t.Fatal("client never became ready")
	}
	return in
}

// newInstances starts n instances with the default configuration on pool.
func newInstances(t *testing.T, pool *pgxpool.Pool, n int) []*instance {
	t.Helper()
	ins := make([]*instance, n)
	for i := range ins {
		ins[i] = newInstance(t, pool, membership.Config{})
	}
	return ins
}

// waitInvalidation waits until the instance has applied a notification for
// which match is true.
func (in *instance) waitInvalidation(what string, match func(listener.Invalidation) bool) {
	in.t.Helper()
	deadline := time.After(waitTimeout)
	for {
		select {
		case inv := <-in.invs:
			if match(inv) {
				return
			}
		case <-deadline:
			in.t.Fatalf("no invalidation %s within %v", what, waitTimeout)
		}
	}
}

// waitState waits until the listener reaches state s.
// drainStates discards the state changes reported so far.
func (in *instance) drainStates() {
	for {
		select {
		case <-in.states:
		default:
			return
		}
	}
}

func (in *instance) waitState(s listener.State) {
	in.t.Helper()
	deadline := time.After(waitTimeout)
	for {
		select {
		case got := <-in.states:
			if got == s {
				return
			}
		case <-deadline:
			in.t.Fatalf("listener never reached %v within %v (now %v)", s, waitTimeout, in.c.Stats().Listener.State)
		}
	}
}

var sentinelSeq struct {
	sync.Mutex
	n int
}

// sync commits a sentinel notification on db and waits until every
// instance has applied it: notifications arrive in commit order, so every
// write committed before it has been applied too.
func syncAll(t *testing.T, db *pgxpool.Pool, ins ...*instance) {
	t.Helper()
	sentinelSeq.Lock()
	sentinelSeq.n++
	id := fmt.Sprintf("sentinel-%d", sentinelSeq.n)
	sentinelSeq.Unlock()
	if _, err := db.Exec(context.Background(), "SELECT orgperm.evict_user($1)", id); err != nil {
		t.Fatal(err)
	}
	for _, in := range ins {
		in.waitInvalidation(id, func(inv listener.Invalidation) bool { return slices.Contains(inv.Users, id) })
	}
}

// rawConn is a separate connection for raw SQL writes: not the library's.
func rawConn(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func newPool(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// fingerprint is what a test compares between the cache and the database:
// everything a permission set says, except when it was computed.
func fingerprint(s *membership.PermissionSet) string {
	if s == nil {
		return "<nil>"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s/%s status=%s active=%v roles=%v perms=%v", s.Org(), s.User(), s.Status(), s.Active(), s.Roles(), s.Permissions())
	for _, rt := range s.ResourceTypes() {
		all, ids := s.AccessibleIDs(rt)
		fmt.Fprintf(&b, " %s:all=%v,ids=%v", rt, all, ids)
	}
	return b.String()
}

func nowUTC() time.Time { return time.Now().UTC() }

// skipShort skips a long test (faults, soaks, waits on real time) under
// -short; make test runs them all.
func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("long: make test runs it")
	}
}
