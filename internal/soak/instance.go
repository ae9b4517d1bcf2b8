package soak

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orgperm/orgperm/pkg/listener"
	"github.com/orgperm/orgperm/pkg/membership"
	"github.com/orgperm/orgperm/pkg/relay"
)

// reader is what the soak checks through: a [membership.Client], or in
// this package's tests a deliberately broken wrapper around one.
type reader interface {
	Permissions(ctx context.Context, org, user string) (*membership.PermissionSet, error)
	UserHasActiveMembership(ctx context.Context, user string) (bool, error)
}

// instance is one app instance: a Client on a pool of its own, and the
// watermark of the sentinels it has applied.
type instance struct {
	idx    int
	pool   *pgxpool.Pool
	client *membership.Client
	read   reader

	// wm is the snapshot of the latest sentinel applied; it never moves
	// back.
	wm atomic.Pointer[snapshot]

	h     *hub
	state listener.State // guarded by h.mu
	syncs int            // transitions to Synced; guarded by h.mu
}

// hub lets the soak wait for a condition over every instance: it is
// signalled whenever an instance's watermark or listener state changes.
type hub struct {
	mu      sync.Mutex
	changed chan struct{} // closed and replaced at every change
}

func newHub() *hub { return &hub{changed: make(chan struct{})} }

// signalLocked wakes the waiters; it must be called with mu held.
func (h *hub) signalLocked() {
	close(h.changed)
	h.changed = make(chan struct{})
}

// wait waits until ok, called with mu held, is true, or ctx is done.
func (h *hub) wait(ctx context.Context, ok func() bool) error {
	for {
		h.mu.Lock()
		done, ch := ok(), h.changed
		h.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// route says how an instance reaches the database.
type route struct {
	url string // the instances' connection string (DatabaseURL, or PoolerURL)
	// poolAddr and listenerAddr, when set, replace url's host:port for the
	// pool's and the listener's connections (TCP proxies).
	poolAddr, listenerAddr string
	// waitReady: wait for the listener's first sync before the load starts
	// (not through a pooler, where it may never sync).
	waitReady bool
	// relays: how many instances (the first ones) run the relay
	// (Config.Queue or Config.WAL, Config.Relays); through listenerAddr when it is set.
	relays int
}

// newInstance starts instance idx as rt says. The watermark starts at
// zero, the seed's versions: it was all committed before the Client
// existed.
func newInstance(ctx context.Context, idx int, rt route, h *hub, clk *clock, zero *snapshot, logger *slog.Logger) (*instance, error) {
	pcfg, err := pgxpool.ParseConfig(rt.url)
	if err != nil {
		return nil, err
	}
	pcfg.MaxConns = 6
	if pcfg.ConnConfig.ConnectTimeout == 0 {
		// A connection attempt into a black hole would otherwise never end,
		// and closing the pool waits for it.
		pcfg.ConnConfig.ConnectTimeout = connectTimeout
	}
	if rt.poolAddr != "" {
		if err := setAddr(pcfg.ConnConfig, rt.poolAddr); err != nil {
			return nil, err
		}
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, err
	}
	in := &instance{idx: idx, pool: pool, h: h}
	in.wm.Store(zero)
	mcfg := membership.Config{
		Logger: logger.With("instance", idx),
		OnInvalidate: func(inv listener.Invalidation, err error) {
			if err != nil || inv.Source != "evict" {
				return
			}
			// One clock sentinel per payload, or several merged by the
			// queue relay (Config.Queue).
			for _, u := range inv.Users {
				if s := clk.lookup(u); s != nil {
					in.advance(s)
				}
			}
		},
		OnStateChange: in.setState,
		Relay:         idx < rt.relays,
	}
	if rt.listenerAddr != "" {
		// As the default listener connection: the pool's settings, and the
		// listener's application_name (the terminate faults find it by it).
		lcfg := pcfg.ConnConfig.Copy()
		if err := setAddr(lcfg, rt.listenerAddr); err != nil {
			pool.Close()
			return nil, err
		}
		lcfg.RuntimeParams["application_name"] = listener.ApplicationName
		mcfg.ListenerConnect = func(ctx context.Context) (*pgx.Conn, error) { return pgx.ConnectConfig(ctx, lcfg.Copy()) }
		// The relay's connection goes the listener's way, under its own
		// application_name (the terminate-relay fault finds it by it).
		rcfg := lcfg.Copy()
		rcfg.RuntimeParams["application_name"] = relay.ApplicationName
		mcfg.RelayConnect = func(ctx context.Context) (*pgx.Conn, error) { return pgx.ConnectConfig(ctx, rcfg.Copy()) }
	}
	c, err := membership.New(ctx, pool, mcfg)
	if err != nil {
		pool.Close()
		return nil, err
	}
	in.client, in.read = c, c
	if !rt.waitReady {
		return in, nil
	}
	select {
	case <-c.Ready():
	case <-ctx.Done():
		in.close()
		return nil, fmt.Errorf("instance %d never synced: %w", idx, ctx.Err())
	}
	return in, nil
}

// setAddr points cfg at addr (host:port), for the first host only: the
// soak's URLs name one.
func setAddr(cfg *pgx.ConnConfig, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return err
	}
	cfg.Host, cfg.Port, cfg.Fallbacks = host, uint16(p), nil
	return nil
}

// advance moves the watermark to s if s is newer. It runs on the
// listener's goroutine after the sentinel's notification, and with it
// every notification committed before it, has been applied to the cache.
func (in *instance) advance(s *snapshot) {
	in.h.mu.Lock()
	defer in.h.mu.Unlock()
	if cur := in.wm.Load(); cur != nil && cur.n >= s.n {
		return
	}
	in.wm.Store(s)
	in.h.signalLocked()
}

func (in *instance) setState(s listener.State) {
	in.h.mu.Lock()
	defer in.h.mu.Unlock()
	in.state = s
	if s == listener.Synced {
		in.syncs++
	}
	in.h.signalLocked()
}

func (in *instance) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = in.client.Close(ctx)
	in.pool.Close()
}
