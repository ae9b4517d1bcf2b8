package faultproxy

import (
	"errors"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestStart: a proxy for a program forwards like one for a test, and
// Close (idempotent) closes its connections and leaves no goroutine.
func TestStart(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) }) // registered first, runs last
	addr, _ := echoServer(t)
	p, err := Start(addr)
	if err != nil {
		t.Fatal(err)
	}
	c, r := dial(t, p)
	wantEcho(t, c, r, "one")
	p.Close()
	p.Close()
	_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
	if _, err := r.ReadString('\n'); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read on a connection of a closed proxy: %v; want it closed", err)
	}
}
