package listener

import (
	"context"
	"errors"
	"net"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orgperm/orgperm/internal/faultproxy"
	"github.com/orgperm/orgperm/internal/pgcluster"
	"github.com/orgperm/orgperm/pkg/pgtest"
)

func TestStartSyncs(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	l, rt, h := setup(t, pool, Config{})
	if got := l.State(); got != Connecting {
		t.Fatalf("State before Start = %v; want connecting", got)
	}
	start(t, l, rt)
	h.waitState(t, Synced)
	st := l.Stats()
	if st.State != Synced || l.State() != Synced {
		t.Fatalf("state %v / %v; want synced", st.State, l.State())
	}
	if st.LastSync.IsZero() {
		t.Fatal("LastSync is zero after a sync")
	}
	if n := rt.resyncs.Load(); n != 1 {
		t.Fatalf("Resync called %d times; want 1", n)
	}

	if err := l.Stop(context.Background()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	rt.next(t, "unsynced")
	if got := l.State(); got != Unsynced {
		t.Fatalf("State after Stop = %v; want unsynced", got)
	}
}

func TestTriggerPayloads(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	l, rt, _ := setup(t, pool, Config{})
	start(t, l, rt)

	// Each statement runs on its own; want nil means it notifies nothing
	// (checked by the next statement's event being its own).
	steps := []struct {
		sql  string
		want *Invalidation
	}{
		{`INSERT INTO orgperm.memberships (org_id, user_id) VALUES ('o1', 'u1')`,
			&Invalidation{Source: "memberships", Members: []Member{{"o1", "u1"}}}},
		{`INSERT INTO orgperm.memberships (org_id, user_id) VALUES ('o2', 'u1'), ('o1', 'u2')`,
			&Invalidation{Source: "memberships", Members: []Member{{"o1", "u2"}, {"o2", "u1"}}}},
		{`UPDATE orgperm.memberships SET status = 'suspended' WHERE org_id = 'o1' AND user_id = 'u1'`,
			&Invalidation{Source: "memberships", Members: []Member{{"o1", "u1"}}}},
		{`INSERT INTO orgperm.permissions (codename) VALUES ('billing.view_invoice')`, nil},
		{`INSERT INTO orgperm.roles (org_id, name) VALUES ('o1', 'admin'), (NULL, 'viewer')`, nil},
		{`INSERT INTO orgperm.role_permissions (role_id, codename)
		  SELECT id, 'billing.view_invoice' FROM orgperm.roles WHERE org_id = 'o1'`,
			&Invalidation{Source: "role_permissions", Orgs: []string{"o1"}}},
		{`INSERT INTO orgperm.role_permissions (role_id, codename)
		  SELECT id, 'billing.view_invoice' FROM orgperm.roles WHERE org_id IS NULL`,
			&Invalidation{Source: "role_permissions", All: true}},
		{`INSERT INTO orgperm.membership_roles (org_id, user_id, role_id)
		  SELECT 'o1', 'u2', id FROM orgperm.roles WHERE org_id = 'o1'`,
			&Invalidation{Source: "membership_roles", Members: []Member{{"o1", "u2"}}}},
		{`INSERT INTO orgperm.memberships (org_id, user_id) SELECT 'big', 'user' || g FROM generate_series(1, 60) g`,
			&Invalidation{Source: "memberships", Orgs: []string{"big"}}},
		{`SELECT orgperm.evict_user('u9')`, &Invalidation{Source: "evict", Users: []string{"u9"}}},
		{`SELECT orgperm.evict_org('o"\ü世')`, &Invalidation{Source: "evict", Orgs: []string{`o"\ü世`}}},
		{`SELECT orgperm.evict_member('o1', E'u\t1')`, &Invalidation{Source: "evict", Members: []Member{{"o1", "u\t1"}}}},
		{`SELECT orgperm.evict_all()`, &Invalidation{Source: "evict", All: true}},
		{`TRUNCATE orgperm.data_access`, &Invalidation{Source: "data_access", All: true}},
	}
	for _, s := range steps {
		exec(t, pool, s.sql)
		if s.want == nil {
			continue
		}
		got := rt.next(t, "invalidate").inv
		if !reflect.DeepEqual(got, *s.want) {
			t.Fatalf("after %s\n got %#v\nwant %#v", s.sql, got, *s.want)
		}
	}
	if st := l.Stats(); st.Notifications != uint64(len(steps)-2) || st.Malformed != 0 {
		t.Fatalf("stats %+v; want %d notifications, none malformed", st, len(steps)-2)
	}
}

func TestMalformedNotification(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	l, rt, h := setup(t, pool, Config{})
	start(t, l, rt)

	exec(t, pool, `SELECT pg_notify('orgperm_invalidate', 'garbage')`)
	got := rt.next(t, "invalidate").inv
	if want := (Invalidation{Source: SourceMalformed, All: true}); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v; want %+v", got, want)
	}
	if err := recv(t, h.notifications, "OnNotification"); !errors.Is(err, ErrMalformedPayload) {
		t.Fatalf("OnNotification error %v; want ErrMalformedPayload", err)
	}
	if st := l.Stats(); st.Malformed != 1 || st.Notifications != 1 {
		t.Fatalf("stats %+v; want 1 malformed of 1", st)
	}

	exec(t, pool, `SELECT pg_notify('orgperm_invalidate', '{"v":2,"all":true}')`)
	if err := recv(t, h.notifications, "OnNotification"); !errors.Is(err, ErrUnsupportedVersion) {
		t.Fatalf("OnNotification error %v; want ErrUnsupportedVersion", err)
	}
	if got := rt.next(t, "invalidate").inv; !got.All {
		t.Fatalf("an unsupported version evicted %+v; want everything", got)
	}

	// Still listening.
	exec(t, pool, `SELECT orgperm.evict_org('o1')`)
	if got := rt.next(t, "invalidate").inv; !reflect.DeepEqual(got.Orgs, []string{"o1"}) {
		t.Fatalf("got %+v; want orgs [o1]", got)
	}
	if err := recv(t, h.notifications, "OnNotification"); err != nil {
		t.Fatalf("OnNotification error %v for a valid payload", err)
	}
	if st := l.Stats(); st.Malformed != 2 || st.State != Synced {
		t.Fatalf("stats %+v; want 2 malformed, synced", st)
	}
}

func TestTerminateBackend(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	l, rt, h := setup(t, pool, Config{})
	start(t, l, rt)

	var n int
	err := pool.QueryRow(context.Background(),
		`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		 WHERE application_name = $1 AND datname = current_database()`, ApplicationName).Scan(&n)
	if err != nil || n != 1 {
		t.Fatalf("terminated %d backends, %v; want 1", n, err)
	}
	rt.next(t, "unsynced")
	h.waitState(t, Unsynced)
	rt.next(t, "resync")
	h.waitState(t, Synced)
	if st := l.Stats(); st.Reconnects < 1 || st.State != Synced {
		t.Fatalf("stats %+v; want a reconnect, synced", st)
	}

	exec(t, pool, `SELECT orgperm.evict_user('u1')`)
	if got := rt.next(t, "invalidate").inv; !reflect.DeepEqual(got.Users, []string{"u1"}) {
		t.Fatalf("got %+v after reconnecting; want users [u1]", got)
	}
}

func TestServerRestart(t *testing.T) {
	skipShort(t)
	t.Parallel()
	c := pgcluster.StartTB(t)
	pool := pgtest.NewServer(c.URL).NewPool(t)
	l, rt, h := setup(t, pool, Config{MaxReconnectDelay: 200 * time.Millisecond})
	start(t, l, rt)

	if err := c.Restart(); err != nil {
		t.Fatal(err)
	}
	rt.next(t, "unsynced")
	h.waitState(t, Unsynced)
	rt.next(t, "resync")
	h.waitState(t, Synced)
	if st := l.Stats(); st.Reconnects < 1 {
		t.Fatalf("stats %+v; want a reconnect", st)
	}

	exec(t, pool, `SELECT orgperm.evict_org('o1')`)
	if got := rt.next(t, "invalidate").inv; !reflect.DeepEqual(got.Orgs, []string{"o1"}) {
		t.Fatalf("got %+v after the restart; want orgs [o1]", got)
	}
}

// proxied returns a Config.Connect that connects like pool, but through p.
func proxied(t *testing.T, pool *pgxpool.Pool, p *faultproxy.Proxy) func(context.Context) (*pgx.Conn, error) {
	host, port, err := net.SplitHostPort(p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	portN, _ := strconv.Atoi(port)
	base := pool.Config().ConnConfig
	return func(ctx context.Context) (*pgx.Conn, error) {
		cc := base.Copy()
		cc.Host, cc.Port, cc.Fallbacks = host, uint16(portN), nil
		cc.RuntimeParams["application_name"] = ApplicationName
		return pgx.ConnectConfig(ctx, cc)
	}
}

func TestProofDetectsBlackhole(t *testing.T) {
	skipShort(t)
	t.Parallel()
	pool := pgtest.NewPool(t)
	cc := pool.Config().ConnConfig
	p := faultproxy.New(t, net.JoinHostPort(cc.Host, strconv.Itoa(int(cc.Port))))
	l, rt, h := setup(t, pool, Config{
		Connect:           proxied(t, pool, p),
		ProofTimeout:      time.Second,
		ConnectTimeout:    time.Second,
		MaxReconnectDelay: 200 * time.Millisecond,
	})
	start(t, l, rt)
	if err := recv(t, h.proofs, "the first proof"); err != nil {
		t.Fatalf("first proof failed: %v", err)
	}
	l.RequestProof()
	if err := recv(t, h.proofs, "a requested proof"); err != nil {
		t.Fatalf("requested proof failed: %v", err)
	}
	if st := l.Stats(); st.LastProofRTT <= 0 || st.ProofsSent < 2 || st.ProvenLSN == 0 || rt.proofs.Load() < 2 {
		t.Fatalf("stats %+v, %d proofs; want two proofs with a round trip and an LSN", st, rt.proofs.Load())
	}

	p.Blackhole()
	l.RequestProof()
	rt.next(t, "unsynced")
	h.waitState(t, Unsynced)
	for {
		if err := recv(t, h.proofs, "a failed proof"); err != nil {
			break
		}
	}
	if st := l.Stats(); st.ProofFailures < 1 || st.State == Synced || !errors.Is(l.Err(), ErrNoProof) {
		t.Fatalf("stats %+v, Err %v; want a proof failure, not synced, ErrNoProof", st, l.Err())
	}

	p.Restore()
	rt.next(t, "resync")
	h.waitState(t, Synced)
	exec(t, pool, `SELECT orgperm.evict_org('o1')`)
	if got := rt.next(t, "invalidate").inv; !reflect.DeepEqual(got.Orgs, []string{"o1"}) {
		t.Fatalf("got %+v after the black hole; want orgs [o1]", got)
	}
}

func TestConnectTimeout(t *testing.T) {
	skipShort(t)
	t.Parallel()
	pool := pgtest.NewPool(t)
	cc := pool.Config().ConnConfig
	p := faultproxy.New(t, net.JoinHostPort(cc.Host, strconv.Itoa(int(cc.Port))))
	l, rt, h := setup(t, pool, Config{
		Connect:           proxied(t, pool, p),
		ProofTimeout:      time.Second,
		ConnectTimeout:    time.Second, // bounds Start's first connect too: room for a loaded machine
		MaxReconnectDelay: 100 * time.Millisecond,
	})
	start(t, l, rt)

	// The network goes silent: a proof replaces the connection, and the
	// new attempts hang (accepted, never answered) until abandoned.
	p.Blackhole()
	l.RequestProof()
	rt.next(t, "unsynced")
	recv(t, h.timeouts, "an abandoned connection attempt")
	recv(t, h.timeouts, "a second abandoned connection attempt")
	if got := l.State(); got != Unsynced {
		t.Fatalf("State while the network is silent = %v; want unsynced", got)
	}

	p.Restore()
	rt.next(t, "resync")
	h.waitState(t, Synced)
}

func TestCutConnection(t *testing.T) {
	skipShort(t)
	t.Parallel()
	pool := pgtest.NewPool(t)
	cc := pool.Config().ConnConfig
	p := faultproxy.New(t, net.JoinHostPort(cc.Host, strconv.Itoa(int(cc.Port))))
	l, rt, h := setup(t, pool, Config{Connect: proxied(t, pool, p)})
	start(t, l, rt)

	p.CutAll()
	rt.next(t, "unsynced")
	h.waitState(t, Unsynced)
	rt.next(t, "resync")
	h.waitState(t, Synced)
	if st := l.Stats(); st.ProofsSent != 2 || st.Reconnects < 1 {
		t.Fatalf("stats %+v; want one proof per sync, a reconnect", st)
	}
}

func TestLifecycle(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)

	t.Run("stop before start", func(t *testing.T) {
		l, rt, _ := setup(t, pool, Config{})
		for range 2 {
			if err := l.Stop(context.Background()); err != nil {
				t.Fatalf("Stop: %v", err)
			}
		}
		if err := l.Start(context.Background()); !errors.Is(err, ErrStopped) {
			t.Fatalf("Start after Stop: %v; want ErrStopped", err)
		}
		if n := rt.unsynced.Load() + rt.resyncs.Load(); n != 0 {
			t.Fatalf("target called %d times by a listener never started", n)
		}
	})

	t.Run("start twice, stop twice", func(t *testing.T) {
		l, rt, _ := setup(t, pool, Config{})
		start(t, l, rt)
		if err := l.Start(context.Background()); !errors.Is(err, ErrAlreadyStarted) {
			t.Fatalf("second Start: %v; want ErrAlreadyStarted", err)
		}
		for range 2 {
			if err := l.Stop(context.Background()); err != nil {
				t.Fatalf("Stop: %v", err)
			}
		}
		if err := l.Start(context.Background()); !errors.Is(err, ErrStopped) {
			t.Fatalf("Start after Stop: %v; want ErrStopped", err)
		}
	})

	t.Run("start fails fast", func(t *testing.T) {
		cc := pool.Config().ConnConfig.Copy()
		cc.Database = "orgperm_no_such_database"
		l, _, _ := setup(t, pool, Config{Connect: func(ctx context.Context) (*pgx.Conn, error) {
			return pgx.ConnectConfig(ctx, cc)
		}})
		err := l.Start(context.Background())
		if err == nil {
			t.Fatal("Start succeeded on a database that does not exist")
		}
		if got := l.State(); got != Connecting {
			t.Fatalf("State after a failed Start = %v; want connecting", got)
		}
	})

	t.Run("stop while stuck connecting", func(t *testing.T) {
		// A listener that connected once, then can only reach a black hole:
		// Stop must not wait for the attempt to time out.
		cc := pool.Config().ConnConfig
		p := faultproxy.New(t, net.JoinHostPort(cc.Host, strconv.Itoa(int(cc.Port))))
		l, rt, h := setup(t, pool, Config{Connect: proxied(t, pool, p), ConnectTimeout: time.Hour})
		start(t, l, rt)
		p.Blackhole()
		p.CutAll()
		h.waitState(t, Unsynced)
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := l.Stop(ctx); err != nil {
			t.Fatalf("Stop: %v", err)
		}
	})
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	pool, err := pgxpool.New(context.Background(), "postgres://nobody@127.0.0.1:1/nothing")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	tests := []struct {
		cfg   Config
		field string
	}{
		{Config{ProofTimeout: -1}, "ProofTimeout"},
		{Config{ProofChannel: DefaultChannel}, "ProofChannel"},
		{Config{ReconnectDelay: -1}, "ReconnectDelay"},
		{Config{ReconnectDelay: time.Second, MaxReconnectDelay: time.Millisecond}, "MaxReconnectDelay"},
		{Config{ConnectTimeout: -1}, "ConnectTimeout"},
		{Config{InstanceID: "has-dash"}, "InstanceID"},
		{Config{InstanceID: "x123456789x123456789x123456789x123456789x123456789x123456789xyzw"}, "InstanceID"},
		{Config{Channel: "c123456789c123456789c123456789c123456789c123456789c123456789xyzw"}, "Channel"},
	}
	for _, tt := range tests {
		_, err := New(pool, newRecTarget(), tt.cfg)
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Field != tt.field || !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("New(%+v) = %v; want a ConfigError on %s", tt.cfg, err, tt.field)
		}
	}
	if _, err := New(nil, newRecTarget(), Config{}); err == nil {
		t.Error("New with a nil pool succeeded")
	}
	if _, err := New(pool, nil, Config{}); err == nil {
		t.Error("New with a nil target succeeded")
	}

	l, err := New(pool, newRecTarget(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Channel: DefaultChannel, ProofChannel: DefaultProofChannel, ProofTimeout: DefaultProofTimeout,
		ReconnectDelay: DefaultReconnectDelay, MaxReconnectDelay: DefaultMaxReconnectDelay, ConnectTimeout: DefaultConnectTimeout}
	got := l.cfg
	if got.Channel != want.Channel || got.ProofChannel != want.ProofChannel || got.ProofTimeout != want.ProofTimeout ||
		got.ReconnectDelay != want.ReconnectDelay || got.MaxReconnectDelay != want.MaxReconnectDelay || got.ConnectTimeout != want.ConnectTimeout ||
		len(got.InstanceID) != 16 || got.Logger == nil || got.Connect == nil {
		t.Fatalf("defaults %+v", got)
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	l := &Listener{cfg: Config{ReconnectDelay: 50 * time.Millisecond, MaxReconnectDelay: 5 * time.Second}}
	for step, max := range map[int32]time.Duration{1: 50 * time.Millisecond, 2: 100 * time.Millisecond, 3: 200 * time.Millisecond, 8: 5 * time.Second, 1000: 5 * time.Second} {
		for range 100 {
			if d := l.backoff(step); d < max/2 || d > max {
				t.Fatalf("backoff(%d) = %v; want in [%v, %v]", step, d, max/2, max)
			}
		}
	}
}

func TestStateString(t *testing.T) {
	t.Parallel()
	for s, want := range map[State]string{Connecting: "connecting", Synced: "synced", Unsynced: "unsynced", 7: "State(7)"} {
		if got := s.String(); got != want {
			t.Errorf("%d.String() = %q; want %q", s, got, want)
		}
	}
}
