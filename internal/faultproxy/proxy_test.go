package faultproxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// waitTimeout bounds every wait; reaching it is a failure.
const waitTimeout = 10 * time.Second

// silence is how long a read waits to conclude that nothing arrives. It
// only ever makes a broken proxy pass more slowly, never a working one
// fail.
const silence = 200 * time.Millisecond

// echoServer accepts connections and echoes every line back. It reports
// every line it receives on lines, and stops when the test ends.
func echoServer(t *testing.T) (addr string, lines <-chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan string, 100)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					ch <- line
					if _, err := io.WriteString(c, line); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String(), ch
}

// setupProxy returns a proxy in front of an echo server, and checks at the
// end of the test that no goroutine of either outlives it.
func setupProxy(t *testing.T) (*Proxy, <-chan string) {
	t.Cleanup(func() { goleak.VerifyNone(t) }) // registered first, runs last
	addr, lines := echoServer(t)
	return New(t, addr), lines
}

func dial(t *testing.T, p *Proxy) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.Addr(), waitTimeout)
	if err != nil {
		t.Fatalf("dial proxy: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

func send(t *testing.T, c net.Conn, line string) {
	t.Helper()
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		t.Fatalf("write %q: %v", line, err)
	}
}

// wantEcho checks that line comes back on c.
func wantEcho(t *testing.T, c net.Conn, r *bufio.Reader, line string) {
	t.Helper()
	send(t, c, line)
	_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
	got, err := r.ReadString('\n')
	if err != nil || got != line+"\n" {
		t.Fatalf("echo of %q: got %q, %v", line, got, err)
	}
}

// wantSilence checks that nothing comes back on c (and that c is not
// closed) within silence.
func wantSilence(t *testing.T, c net.Conn, r *bufio.Reader) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(silence))
	got, err := r.ReadString('\n')
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read on a blackholed connection: got %q, %v; want a deadline error", got, err)
	}
}

func TestProxyForwards(t *testing.T) {
	p, _ := setupProxy(t)
	c1, r1 := dial(t, p)
	c2, r2 := dial(t, p)
	wantEcho(t, c1, r1, "one")
	wantEcho(t, c2, r2, "two")
	wantEcho(t, c1, r1, "three")
}

func TestProxyBlackhole(t *testing.T) {
	p, lines := setupProxy(t)
	old, oldR := dial(t, p)
	wantEcho(t, old, oldR, "before")
	if got := <-lines; got != "before\n" {
		t.Fatalf("server got %q", got)
	}

	p.Blackhole()
	send(t, old, "lost") // the write succeeds: the connection is still open
	wantSilence(t, old, oldR)
	during, duringR := dial(t, p) // accepted, but goes nowhere
	send(t, during, "lost too")
	wantSilence(t, during, duringR)
	select {
	case got := <-lines:
		t.Fatalf("server received %q through a black hole", got)
	default:
	}

	p.Restore()
	fresh, freshR := dial(t, p)
	wantEcho(t, fresh, freshR, "after")
	send(t, old, "still lost")
	wantSilence(t, old, oldR)
}

func TestProxyBlackholeHidesServerClose(t *testing.T) {
	p, _ := setupProxy(t)
	c, r := dial(t, p)
	wantEcho(t, c, r, "hello")
	p.Blackhole()
	// The server side goes away, as when the server restarts.
	p.mu.Lock()
	for pc := range p.conns {
		pc.server.Close()
	}
	p.mu.Unlock()
	wantSilence(t, c, r) // no EOF reaches the client
}

func TestProxyCutAll(t *testing.T) {
	p, _ := setupProxy(t)
	c, r := dial(t, p)
	wantEcho(t, c, r, "hello")
	p.CutAll()
	_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
	if _, err := r.ReadString('\n'); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after CutAll: %v; want the connection closed", err)
	}
	c2, r2 := dial(t, p)
	wantEcho(t, c2, r2, "again")
}

// TestProxyRetarget: after Retarget, new connections reach the new server
// and connections made before still reach the old one.
func TestProxyRetarget(t *testing.T) {
	p, oldLines := setupProxy(t)
	newAddr, newLines := echoServer(t)
	before, beforeR := dial(t, p)
	wantEcho(t, before, beforeR, "to the old")
	if got := recv(t, oldLines); got != "to the old\n" {
		t.Fatalf("old server got %q", got)
	}

	p.Retarget(newAddr)
	after, afterR := dial(t, p)
	wantEcho(t, after, afterR, "to the new")
	if got := recv(t, newLines); got != "to the new\n" {
		t.Fatalf("new server got %q", got)
	}
	wantEcho(t, before, beforeR, "still the old")
	if got := recv(t, oldLines); got != "still the old\n" {
		t.Fatalf("old server got %q", got)
	}
}

// recv returns the next line a server received.
func recv(t *testing.T, lines <-chan string) string {
	t.Helper()
	select {
	case l := <-lines:
		return l
	case <-time.After(waitTimeout):
		t.Fatalf("the server received nothing within %v", waitTimeout)
		return ""
	}
}
