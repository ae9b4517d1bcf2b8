package integration_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orgperm/orgperm/pkg/membership"
	"github.com/orgperm/orgperm/pkg/pgtest"
)

// delayProxy forwards TCP to target, holding every chunk the server sends
// for delay before passing it on (order kept): a listener behind it gets
// every notification, and every proof, delay late.
type delayProxy struct {
	ln     net.Listener
	target string
	delay  time.Duration
	wg     sync.WaitGroup
}

func newDelayProxy(t *testing.T, target string, delay time.Duration) *delayProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &delayProxy{ln: ln, target: target, delay: delay}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() { ln.Close(); p.wg.Wait() })
	return p
}

func (p *delayProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.wg.Add(2)
		go func() { defer p.wg.Done(); io.Copy(s, c); s.Close() }()
		go func() { defer p.wg.Done(); p.slowCopy(c, s); c.Close() }()
	}
}

// slowCopy copies src to dst, each chunk delay after it was read.
func (p *delayProxy) slowCopy(dst, src net.Conn) {
	type chunk struct {
		b  []byte
		at time.Time
	}
	ch := make(chan chunk, 1024)
	go func() {
		defer close(ch)
		for {
			b := make([]byte, 32<<10)
			n, err := src.Read(b)
			if n > 0 {
				ch <- chunk{b[:n], time.Now().Add(p.delay)}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range ch {
		time.Sleep(time.Until(c.at)) // the fault itself: hold the bytes
		if _, err := dst.Write(c.b); err != nil {
			src.Close()
			for range ch {
			}
			return
		}
	}
}

// longRounds is n, a tenth of it under -short, and long with
// ORGPERM_LONG=1 (the acceptance runs).
func longRounds(n, long int) int {
	switch {
	case os.Getenv("ORGPERM_LONG") != "":
		return long
	case testing.Short():
		return max(n/10, 10)
	}
	return n
}

// TestTokenAcrossInstances: a revoke made on instance A, then a check with
// A's token on instance B whose listener hears everything 50 ms late: 0 of
// 1,000 checks stale. Each round toggles the grant so that a stale answer
// shows.
func TestTokenAcrossInstances(t *testing.T) {
	t.Parallel()
	server := pgtest.Shared(t)
	w := newWorld(t, server)
	slow := newDelayProxy(t, hostPort(t, server.URL), 50*time.Millisecond)
	a := newInstance(t, w.pool, membership.Config{})
	b := newInstance(t, newPool(t, w.url), membership.Config{ListenerConnect: connectVia(t, w.url, slow.ln.Addr().String(), &gate{})})
	ctx := context.Background()
	rounds := longRounds(300, 1000)
	stale := 0
	for i := range rounds {
		granted := i%2 == 0
		// B caches the current answer first, so that a stale hit is possible.
		if _, err := b.c.HasPermission(ctx, "o1", "u2", "billing.view_invoice"); err != nil {
			t.Fatal(err)
		}
		var err error
		if granted {
			err = a.c.Store().AssignRole(ctx, "o1", "u2", 2, nil)
		} else {
			err = a.c.Store().UnassignRole(ctx, "o1", "u2", 2)
		}
		if err != nil {
			t.Fatal(err)
		}
		tok, err := a.c.Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// The token travels as a string (a header, a cookie).
		parsed, err := membership.ParseToken(string(tok))
		if err != nil {
			t.Fatal(err)
		}
		tctx, err := membership.WithToken(ctx, parsed)
		if err != nil {
			t.Fatal(err)
		}
		got, err := b.c.HasPermission(tctx, "o1", "u2", "billing.view_invoice")
		if err != nil {
			t.Fatal(err)
		}
		if got != granted {
			stale++
		}
	}
	if stale != 0 {
		t.Fatalf("%d of %d checks with a token were stale", stale, rounds)
	}
	t.Logf("%d checks with a token on a 50 ms slow instance: 0 stale; B sent %d proofs", rounds, b.c.Stats().Listener.ProofsSent)
}

// TestTokenAlreadyPastNoRoundTrip: a check with a token the instance has
// already passed makes no round trip at all (counted with a pgx tracer).
func TestTokenAlreadyPastNoRoundTrip(t *testing.T) {
	t.Parallel()
	w := newWorld(t, pgtest.Shared(t))
	pool, qc := countingPool(t, w.url)
	in := newInstance(t, pool, membership.Config{Lease: time.Minute})
	ctx := context.Background()
	tok, err := in.c.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := in.c.Sync(ctx); err != nil { // one proof, sent after the token
		t.Fatal(err)
	}
	if _, err := in.c.HasPermission(ctx, "o1", "u1", "billing.edit_invoice"); err != nil { // fill
		t.Fatal(err)
	}
	before := qc.roundTrips.Load()
	tctx, err := membership.WithToken(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		if ok, err := in.c.HasPermission(tctx, "o1", "u1", "billing.edit_invoice"); err != nil || !ok {
			t.Fatalf("check with a token: %v, %v", ok, err)
		}
	}
	if got := qc.roundTrips.Load() - before; got != 0 {
		t.Fatalf("100 checks with a token already passed made %d round trips; want 0", got)
	}
	if _, err := membership.WithToken(ctx, "garbage"); err == nil {
		t.Fatal("WithToken accepted garbage")
	}
}

// TestWriteTxReadsOwnWrites: a service writes in its own transaction
// (WriteTx: the library's Store on the transaction), commits, and checks at
// once on the same instance: 0 of 1,000 stale, with no extra round trip.
func TestWriteTxReadsOwnWrites(t *testing.T) {
	t.Parallel()
	w := newWorld(t, pgtest.Shared(t))
	in := newInstance(t, w.pool, membership.Config{})
	ctx := context.Background()
	rounds := longRounds(1000, 1000)
	stale := 0
	for i := range rounds {
		org := fmt.Sprintf("new-org-%d", i)
		if ok, err := in.c.IsActiveMember(ctx, org, "u1"); err != nil || ok { // cached: not a member
			t.Fatalf("before: %v, %v", ok, err)
		}
		if _, err := in.c.WriteTx(ctx, func(tx pgx.Tx, s *membership.Store) error {
			// The app's own row, then the membership, in one transaction.
			if _, err := tx.Exec(ctx, `SELECT 1`); err != nil {
				return err
			}
			return s.AddMember(ctx, org, "u1", membership.MemberOptions{})
		}); err != nil {
			t.Fatal(err)
		}
		ok, err := in.c.IsActiveMember(ctx, org, "u1")
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			stale++
		}
	}
	if stale != 0 {
		t.Fatalf("%d of %d checks right after WriteTx were stale", stale, rounds)
	}
}
