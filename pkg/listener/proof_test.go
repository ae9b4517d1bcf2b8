package listener

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orgperm/orgperm/pkg/pgtest"
)

// TestNoProofNoSync checks rule 2: a listening connection that accepts
// LISTEN but never delivers what the pool sends (here: it listens in
// another database, as a transaction pooler would hand LISTEN to a backend
// that is gone the next moment) never syncs the Target, and Err says why.
func TestNoProofNoSync(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	other := pgtest.NewDatabase(t)
	l, rt, h := setup(t, pool, Config{
		Connect:           func(ctx context.Context) (*pgx.Conn, error) { return pgx.Connect(ctx, other) },
		ProofTimeout:      200 * time.Millisecond,
		MaxReconnectDelay: 100 * time.Millisecond,
	})
	if err := l.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	rt.next(t, "unsynced")
	for range 3 { // three connections, each listening, none proven
		if err := recv(t, h.proofs, "a proof attempt"); !errors.Is(err, ErrNoProof) {
			t.Fatalf("proof attempt: %v; want ErrNoProof", err)
		}
	}
	if rt.resyncs.Load() != 0 || l.State() == Synced || !errors.Is(l.Err(), ErrNoProof) {
		t.Fatalf("resyncs %d, state %v, Err %v; want never synced, ErrNoProof", rt.resyncs.Load(), l.State(), l.Err())
	}
	select {
	case <-l.Ready():
		t.Fatal("Ready with no proof of delivery")
	default:
	}
}

// TestForeignProofs checks that one instance's proof refreshes the lease of
// every instance that receives it, at no cost to them: proof traffic is
// O(instances) in all.
func TestForeignProofs(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	a, art, _ := setup(t, pool, Config{})
	b, brt, _ := setup(t, pool, Config{})
	start(t, a, art)
	start(t, b, brt)
	sentByB := b.Stats().ProofsSent
	before := brt.proofs.Load()
	for range 3 {
		if err := a.Sync(context.Background()); err != nil {
			t.Fatalf("Sync on a: %v", err)
		}
	}
	// a's proofs are in b's stream before b's own next proof, which b.Sync
	// sends (a's proofs were sent before the call).
	if err := b.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := b.Stats().ForeignProofs; got < 3 {
		t.Fatalf("b saw %d foreign proofs; want 3", got)
	}
	if got := b.Stats().ProofsSent - sentByB; got != 1 {
		t.Fatalf("b sent %d proofs; want only the one of its Sync", got)
	}
	if got := brt.proofs.Load() - before; got < 4 {
		t.Fatalf("b's lease moved %d times; want 3 by a's proofs and 1 by its own", got)
	}
}

// TestForgedForeignProof checks that a forged proof dated far in the future
// cannot extend the lease past the instant it arrived, and that a forged
// fingerprint only makes the listener verify again.
func TestForgedForeignProof(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	verified := atomic.Int64{}
	l, rt, h := setup(t, pool, Config{Verify: func(context.Context, string) error { verified.Add(1); return nil }})
	start(t, l, rt)
	fp := l.fingerprint
	future := time.Now().Add(time.Hour).UnixMicro()
	exec(t, pool, `SELECT pg_notify('orgperm_proof', $1)`, fmt.Sprintf("p1 FF/0 %d %s forger:1", future, fp))
	if err := l.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if at := *rt.provenAt.Load(); at.After(time.Now()) {
		t.Fatalf("forged proof moved the lease to %v, in the future", at)
	}
	if l.ReachedLSN(0xFF << 32) {
		t.Fatal("a forged proof's LSN was trusted")
	}
	exec(t, pool, `SELECT pg_notify('orgperm_proof', $1)`, fmt.Sprintf("p1 0/1 %d forged forger:2", time.Now().UnixMicro()))
	rt.next(t, "unsynced")
	rt.next(t, "resync")
	h.waitState(t, Synced)
	if verified.Load() < 2 {
		t.Fatalf("verified %d times; want again after a foreign fingerprint", verified.Load())
	}
}

// TestDDLNotification checks that a "ddl" payload purges, marks the Target
// unsynced, and syncs it again only once Verify passes.
func TestDDLNotification(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	var broken atomic.Bool
	errBroken := errors.New("a notify trigger is disabled")
	failed := make(chan struct{}, 100)
	l, rt, h := setup(t, pool, Config{
		Verify: func(context.Context, string) error {
			if broken.Load() {
				failed <- struct{}{}
				return errBroken
			}
			return nil
		},
		ReconnectDelay:    20 * time.Millisecond,
		MaxReconnectDelay: 50 * time.Millisecond,
	})
	start(t, l, rt)
	broken.Store(true)
	exec(t, pool, `SELECT pg_notify('orgperm_invalidate', '{"v":1,"t":"ddl","all":true}')`)
	if inv := rt.next(t, "invalidate").inv; !inv.All || inv.Source != SourceDDL {
		t.Fatalf("got %+v; want all, source ddl", inv)
	}
	rt.next(t, "unsynced")
	h.waitState(t, Unsynced)
	// The second failed verification begins after the first one's error
	// was recorded.
	recv(t, failed, "a failed verification")
	recv(t, failed, "a retried verification")
	if !errors.Is(l.Err(), errBroken) || l.State() == Synced {
		t.Fatalf("Err = %v, State %v; want the verification error, not synced", l.Err(), l.State())
	}
	broken.Store(false)
	rt.next(t, "resync")
	h.waitState(t, Synced)
	if l.Err() != nil {
		t.Fatalf("Err = %v once verified", l.Err())
	}
}

// TestFingerprintChange checks that a trigger disabled and enabled again
// between two proofs (a window in which writes notified nothing) makes the
// next proof's fingerprint differ, which purges and re-verifies.
func TestFingerprintChange(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	l, rt, h := setup(t, pool, Config{})
	start(t, l, rt)
	exec(t, pool, `ALTER TABLE orgperm.memberships DISABLE TRIGGER memberships_notify_update`)
	exec(t, pool, `ALTER TABLE orgperm.memberships ENABLE TRIGGER memberships_notify_update`)
	l.RequestProof()
	rt.next(t, "unsynced", "invalidate")
	rt.next(t, "resync", "invalidate")
	h.waitState(t, Synced)
}

// TestSyncAndLSN checks Sync and the WAL position of own proofs.
func TestSyncAndLSN(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	l, rt, _ := setup(t, pool, Config{})
	start(t, l, rt)
	var lsnText string
	if err := pool.QueryRow(context.Background(), `SELECT pg_current_wal_insert_lsn()::text`).Scan(&lsnText); err != nil {
		t.Fatal(err)
	}
	lsn, err := ParseLSN(lsnText)
	if err != nil {
		t.Fatal(err)
	}
	if FormatLSN(lsn) != lsnText {
		t.Fatalf("FormatLSN(ParseLSN(%s)) = %s", lsnText, FormatLSN(lsn))
	}
	sent := l.Stats().ProofsSent
	if err := l.WaitLSN(context.Background(), lsn); err != nil {
		t.Fatal(err)
	}
	if !l.ReachedLSN(lsn) || l.Stats().ProofsSent != sent+1 {
		t.Fatalf("WaitLSN: reached %v, %d proofs sent; want reached after one proof", l.ReachedLSN(lsn), l.Stats().ProofsSent-sent)
	}
	// Already past it: no round trip.
	if err := l.WaitLSN(context.Background(), lsn); err != nil || l.Stats().ProofsSent != sent+1 {
		t.Fatalf("WaitLSN again: %v, %d proofs sent; want none", err, l.Stats().ProofsSent-sent-1)
	}
	before := time.Now()
	if err := l.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if at := *rt.provenAt.Load(); at.Before(before) {
		t.Fatalf("Sync returned with the newest proof at %v, before the call (%v)", at, before)
	}
}

// TestCalibrate checks which own proof maps foreign clocks: the tightest
// (least transit) of those taken within calibrationHold, else the newest.
func TestCalibrate(t *testing.T) {
	t.Parallel()
	var ps proofState
	t0 := time.Unix(1_000_000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	db := func(d time.Duration) int64 { return at(d).UnixMicro() }

	ps.calibrate(at(0), db(5*time.Millisecond)) // transit 5 ms
	ps.calibrate(at(time.Second), db(time.Second+20*time.Millisecond))
	if !ps.calS.Equal(at(0)) {
		t.Fatalf("a looser pair replaced a tighter one 1 s old (calS %v)", ps.calS.Sub(t0))
	}
	ps.calibrate(at(2*time.Second), db(2*time.Second+time.Millisecond))
	if !ps.calS.Equal(at(2 * time.Second)) {
		t.Fatalf("a tighter pair was not taken (calS %v)", ps.calS.Sub(t0))
	}
	late := 2*time.Second + calibrationHold + time.Millisecond
	ps.calibrate(at(late), db(late+30*time.Millisecond))
	if !ps.calS.Equal(at(late)) || ps.calD != db(late+30*time.Millisecond) {
		t.Fatalf("a pair older than calibrationHold was kept (calS %v)", ps.calS.Sub(t0))
	}
}

// TestPosition: a proof passes a position on its own timeline by LSN, any
// position of an earlier timeline, none of a later one; an unknown
// timeline (0) compares LSNs alone.
func TestPosition(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		pos  Position
		tli  uint32
		lsn  uint64
		want bool
	}{
		{Position{1, 100}, 1, 100, true},
		{Position{1, 100}, 1, 99, false},
		{Position{1, 100}, 2, 5, true},    // a later timeline: the old position's writes survived or were lost
		{Position{2, 100}, 1, 500, false}, // an earlier timeline never passes a later one
		{Position{0, 100}, 2, 99, false},  // unknown timeline: LSN alone
		{Position{0, 100}, 2, 100, true},
		{Position{3, 100}, 0, 100, true},
		{Position{3, 100}, 0, 99, false},
	} {
		if got := c.pos.passedBy(c.tli, c.lsn); got != c.want {
			t.Errorf("%+v passed by a proof at (%d, %d) = %t, want %t", c.pos, c.tli, c.lsn, got, c.want)
		}
	}
	for _, c := range []struct {
		p, q Position
		want bool
	}{
		{Position{2, 5}, Position{1, 100}, true},
		{Position{1, 100}, Position{2, 5}, false},
		{Position{1, 101}, Position{1, 100}, true},
		{Position{1, 100}, Position{1, 100}, false},
		{Position{0, 101}, Position{2, 100}, true},
	} {
		if got := c.p.After(c.q); got != c.want {
			t.Errorf("%+v.After(%+v) = %t, want %t", c.p, c.q, got, c.want)
		}
	}
	for walfile, want := range map[string]uint32{"000000010000000000000003": 1, "0000001A00000000000000FF": 26} {
		if got, err := ParseTimeline(walfile); err != nil || got != want {
			t.Errorf("ParseTimeline(%q) = %d, %v; want %d", walfile, got, err, want)
		}
	}
	for _, bad := range []string{"", "00000001", "000000000000000000000003", "zzzzzzzz0000000000000003"} {
		if _, err := ParseTimeline(bad); err == nil {
			t.Errorf("ParseTimeline(%q) succeeded", bad)
		}
	}
}
