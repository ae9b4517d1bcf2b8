package faultproxy

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Proxy forwards TCP connections from a local port to a target, and can cut
// them silently, for tests of network faults: a half-open connection (a
// peer that vanished without a FIN, a NAT that forgot the flow, a pooler
// that swallows LISTEN) looks to the client like a connection that is open
// but on which nothing ever arrives, which is what Blackhole makes.
//
// Every connection accepted is forwarded by two goroutines, one per
// direction; all of them exit when the proxy is closed.
type Proxy struct {
	ln net.Listener
	wg sync.WaitGroup

	mu         sync.Mutex
	target     string // where new connections go; Retarget moves it
	blackholed bool
	closed     bool
	conns      map[*proxyConn]struct{}
}

// proxyConn is one proxied connection. Its fields are set before it is
// registered with the Proxy and never change, except dead.
type proxyConn struct {
	client net.Conn
	server net.Conn // nil when accepted while blackholed: never dialed
	// dead is set by Blackhole and never cleared: bytes already dropped
	// cannot be restored, so the stream stays unusable.
	dead atomic.Bool
	once sync.Once
}

func (c *proxyConn) close() {
	c.once.Do(func() {
		c.client.Close()
		if c.server != nil {
			c.server.Close()
		}
	})
}

// TB is the part of testing.TB that [New] uses. The package does not
// import testing: the soak, a program, runs its proxies with [Start].
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// New starts a proxy on 127.0.0.1 (a free port) to target (host:port) for
// a test: it is closed, with every connection it holds, when the test ends.
func New(tb TB, target string) *Proxy {
	tb.Helper()
	p, err := Start(target)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	tb.Cleanup(p.Close)
	return p
}

// Start starts a proxy on 127.0.0.1 (a free port) to target (host:port),
// which the caller must Close.
func Start(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: %w", err)
	}
	p := &Proxy{target: target, ln: ln, conns: map[*proxyConn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr returns the host:port to connect to.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Blackhole stops forwarding bytes in both directions, on every current
// connection and every new one, without closing any: bytes sent are
// dropped, a peer closing its end is not told to the other, and new
// connections are accepted but never reach the target. It is a network
// gone silent. Connections blackholed stay dead after Restore.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blackholed = true
	for c := range p.conns {
		c.dead.Store(true)
	}
}

// Restore forwards new connections again. Connections blackholed before
// stay dead (they lost bytes); clients are expected to replace them.
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blackholed = false
}

// Retarget sends new connections to target (host:port) from now on,
// as a virtual IP or a DNS name moved to another server after a failover:
// connections already made keep their server.
func (p *Proxy) Retarget(target string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target = target
}

// CutAll closes every current connection, on both sides. New connections
// are forwarded as before.
func (p *Proxy) CutAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.close()
	}
}

// Close stops the proxy and closes every connection it holds; it returns
// once every goroutine of the proxy has exited. It is idempotent.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	p.ln.Close()
	for c := range p.conns {
		c.close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.wg.Add(1)
		go p.serve(client)
	}
}

// serve forwards one connection until either side closes it, or, once it is
// dead, until the client closes it (the server closing is not forwarded).
func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	c := &proxyConn{client: client}
	p.mu.Lock()
	blackholed, target := p.blackholed, p.target
	p.mu.Unlock()
	if !blackholed {
		server, err := net.DialTimeout("tcp", target, 10*time.Second)
		if err != nil {
			client.Close()
			return
		}
		c.server = server
	}
	if !p.register(c) {
		c.close()
		return
	}
	defer p.unregister(c)

	if c.server == nil {
		c.dead.Store(true)
		p.pipe(c, nil, client, true) // read and drop until the client leaves
		return
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.pipe(c, client, c.server, false)
	}()
	p.pipe(c, c.server, client, true)
	wg.Wait()
}

// register adds c unless the proxy is closed; a connection accepted while
// blackholed is dead from the start.
func (p *Proxy) register(c *proxyConn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	if p.blackholed {
		c.dead.Store(true)
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) unregister(c *proxyConn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.close()
}

// pipe copies src to dst (dst nil: drop everything) while c is alive; once c
// is dead it drops what it reads. An error on src closes both sides unless c
// is dead and src is the server: a silent network tells the client nothing.
func (p *Proxy) pipe(c *proxyConn, dst, src net.Conn, srcIsClient bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && dst != nil && !c.dead.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil && !c.dead.Load() {
				c.close()
				return
			}
		}
		if err != nil {
			if srcIsClient || !c.dead.Load() {
				c.close()
			}
			return
		}
	}
}
