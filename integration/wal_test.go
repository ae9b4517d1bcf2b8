package integration_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orgperm/orgperm/internal/pgcluster"
	"github.com/orgperm/orgperm/internal/sidecheck"
	"github.com/orgperm/orgperm/internal/soak"
	"github.com/orgperm/orgperm/pkg/listener"
	"github.com/orgperm/orgperm/pkg/membership"
	"github.com/orgperm/orgperm/pkg/pgtest"
)

// walWorld is a world whose database can take the wal transport
// (orgperm.set_transport('wal')); it skips the test where the server
// cannot decode its WAL. (Dropping the database drops its slot:
// pgcluster.DropDatabase.)
func walWorld(t *testing.T) *world {
	t.Helper()
	return walWorldOn(t, pgtest.Shared(t))
}

// walWorldOn is walWorld on server s.
func walWorldOn(t *testing.T, s *pgtest.Server) *world {
	t.Helper()
	w := newWorld(t, s)
	skipUnlessWAL(t, w.raw)
	return w
}

// setWAL puts w's database in wal mode and relays the switch's own "ddl"
// queue row at once (the relay would, within a second of starting), so
// that an instance started next does not see it: its unsync and resync
// would look like a fault's to a test waiting for listener states.
func setWAL(t *testing.T, w *world) {
	t.Helper()
	setTransport(t, w, "wal")
	if _, err := w.raw.Exec(context.Background(), `SELECT orgperm.relay()`); err != nil {
		t.Fatal(err)
	}
}

// skipUnlessWAL skips the test where q's server cannot decode its WAL.
func skipUnlessWAL(t *testing.T, q sidecheck.Querier) {
	t.Helper()
	if ok, why, err := sidecheck.WAL(context.Background(), q); err != nil {
		t.Fatal(err)
	} else if !ok {
		t.Skip(why)
	}
}

// walInstance is a walWorld in wal mode with a warm instance running a
// relay.
func walInstance(t *testing.T) (*world, *instance) {
	t.Helper()
	w := walWorld(t)
	setWAL(t, w)
	in := newInstance(t, w.pool, membership.Config{Relay: true})
	warm(t, w, in)
	return w, in
}

// slotState reports whether w's database has a wal slot and whether a
// walsender streams it.
func slotState(t *testing.T, w *world) (exists, streaming bool) {
	t.Helper()
	exists, streaming, err := sidecheck.WALSlot(context.Background(), w.raw)
	if err != nil {
		t.Fatal(err)
	}
	return exists, streaming
}

// TestWALTransport: in wal mode no invalidation trigger fires, and an
// instance running a relay stays correct under raw writers: its proofs
// come back through the WAL, so it serves from its cache, and every write
// is evicted from what the relay decodes.
func TestWALTransport(t *testing.T) {
	skipShort(t)
	t.Parallel()
	w, in := walInstance(t)
	if _, streaming := slotState(t, w); !streaming {
		t.Fatal("ready in wal mode, and no relay streams the slot")
	}
	l := startLoad(t, w, in)
	syncAll(t, w.raw, in)
	l.stop()
	syncAll(t, w.raw, in)
	checkAll(t, w, in, "after the load")
	if l.writes == 0 || l.reads == 0 {
		t.Fatalf("the load made %d writes and %d reads", l.writes, l.reads)
	}
	if st := in.c.Stats(); st.Cache.Hits == 0 {
		t.Errorf("no read hit the cache in wal mode: %+v", st.Cache)
	}
}

// TestWALCatchesWritesThatSkipTriggers: writes that fire no trigger at all
// (a session with session_replication_role = replica, as pg_restore
// --disable-triggers and hand-run repairs use; in wal mode the replica
// triggers are off too) are decoded from the WAL like any other.
func TestWALCatchesWritesThatSkipTriggers(t *testing.T) {
	skipShort(t)
	t.Parallel()
	w, in := walInstance(t)
	ctx := context.Background()
	conn, err := w.raw.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	for _, q := range []string{
		`SET session_replication_role = replica`,
		`UPDATE orgperm.memberships SET status = CASE status WHEN 'active' THEN 'suspended' ELSE 'active' END WHERE org_id = 'o1'`,
		`DELETE FROM orgperm.membership_roles WHERE org_id = 'o2'`,
		`RESET session_replication_role`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	syncAll(t, w.raw, in)
	checkAll(t, w, in, "after writes that fire no trigger")
}

// stopRelay stops in's relay: it holds the relay's reconnects at g,
// terminates the relay's backends (its connection and its walsender),
// and returns once the cache is unsynced and no walsender streams the
// slot.
func stopRelay(t *testing.T, w *world, in *instance, g *gate) {
	t.Helper()
	l := startLoad(t, w, in) // its reads ask for proofs
	g.block()
	if n := terminateRelays(t, w); n < 2 {
		t.Fatalf("terminated %d relay backends, want the relay's and its walsender", n)
	}
	in.waitState(listener.Unsynced)
	l.stop()
	deadline := time.Now().Add(waitTimeout)
	for {
		exists, streaming := slotState(t, w)
		if !exists {
			t.Fatal("the wal slot went with its relay")
		}
		if !streaming {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("a walsender still streams the slot")
		}
		time.Sleep(10 * time.Millisecond) // polling for the walsender's exit
	}
}

// flipAll changes every membership's status: in wal mode, with no relay
// running, a write the caches can learn of only from the WAL.
func flipAll(t *testing.T, w *world) {
	t.Helper()
	if _, err := w.raw.Exec(context.Background(), `UPDATE orgperm.memberships SET status = CASE status WHEN 'active' THEN 'suspended' ELSE 'active' END`); err != nil {
		t.Fatal(err)
	}
}

// TestWALSlotLost: the relay's slot dropped while no relay runs (as on a
// promoted standby, which has no slot before PostgreSQL 17): writes made
// meanwhile are never decoded, so the relay that creates the slot again
// evicts everything, and no read is stale.
func TestWALSlotLost(t *testing.T) {
	skipShort(t)
	t.Parallel()
	w := walWorld(t)
	setWAL(t, w)
	g := &gate{}
	in := newInstance(t, w.pool, membership.Config{Relay: true, RelayConnect: relayConnect(t, w, g)})
	warm(t, w, in)
	stopRelay(t, w, in, g)
	ctx := context.Background()
	// count, not EXISTS: EXISTS never evaluates its select list.
	var dropped int
	if err := w.raw.QueryRow(ctx, `SELECT count(pg_drop_replication_slot(slot_name))::int FROM pg_replication_slots
		WHERE slot_name = orgperm.wal_slot() AND NOT active`).Scan(&dropped); err != nil {
		t.Fatal(err)
	}
	if dropped != 1 {
		t.Fatalf("dropped %d slots, want 1", dropped)
	}
	flipAll(t, w) // written while nothing decodes: lost to the wal transport
	checkBypass(t, w, in)
	if err := in.c.Check(ctx); !errors.Is(err, membership.ErrBypassed) {
		t.Errorf("Check with no relay: %v, want ErrBypassed", err)
	}
	g.open()
	resynced(t, w, in)
	checkAll(t, w, in, "after the slot was made again")
	if exists, _ := slotState(t, w); !exists {
		t.Errorf("the relay did not make the slot again")
	}
}

// TestWALSlotInvalidated: PostgreSQL invalidates the slot of a stopped
// relay once it keeps more WAL than max_slot_wal_keep_size (wal_status
// 'lost'), so the writes made meanwhile can never be decoded. The relay
// drops it, makes it anew and evicts everything, with no operator: the
// caches serve again, and no read is stale. On a throwaway server of its
// own, whose settings it changes.
func TestWALSlotInvalidated(t *testing.T) {
	skipShort(t)
	t.Parallel()
	if os.Getenv(pgtest.URLEnv) != "" {
		t.Skip(pgtest.URLEnv + " is set: the test changes max_slot_wal_keep_size of a throwaway server")
	}
	w := walWorldOn(t, pgtest.NewServer(pgcluster.StartTB(t).URL))
	ctx := context.Background()
	setWAL(t, w)
	g := &gate{}
	in := newInstance(t, w.pool, membership.Config{Relay: true, RelayConnect: relayConnect(t, w, g)})
	warm(t, w, in)
	if n := in.c.Stats().Relay.WALSlotsCreated; n != 1 {
		t.Fatalf("the relay made %d slots, want 1", n)
	}
	// The leading relay reports the WAL the slot keeps (about once a
	// second), never 0 once it has read it: the slot keeps at least the
	// WAL since its restart point.
	for deadline := time.Now().Add(waitTimeout); in.c.Stats().Relay.WALRetainedBytes <= 0; {
		if time.Now().After(deadline) {
			t.Fatalf("the relay reports %d bytes kept for its slot", in.c.Stats().Relay.WALRetainedBytes)
		}
		time.Sleep(10 * time.Millisecond) // polling for the relay's next check of the slot
	}
	stopRelay(t, w, in, g)
	for deadline := time.Now().Add(waitTimeout); in.c.Stats().Relay.WALRetainedBytes != 0; {
		if time.Now().After(deadline) {
			t.Fatalf("a relay whose session ended reports %d bytes kept, want 0", in.c.Stats().Relay.WALRetainedBytes)
		}
		time.Sleep(10 * time.Millisecond) // polling for the relay's session to end
	}
	flipAll(t, w)

	// Keep no WAL for slots, and move past the slot's WAL until a
	// checkpoint invalidates it.
	for _, q := range []string{`ALTER SYSTEM SET max_slot_wal_keep_size = 0`, `SELECT pg_reload_conf()`} {
		if _, err := w.raw.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for i := 0; ; i++ {
		var status string
		if err := w.raw.QueryRow(ctx, `SELECT coalesce(wal_status, '') FROM pg_replication_slots WHERE slot_name = orgperm.wal_slot()`).Scan(&status); err != nil {
			t.Fatal(err)
		}
		if status == "lost" {
			break
		}
		if i == 20 {
			t.Fatalf("the slot's wal_status is %q after %d WAL switches and checkpoints, want lost", status, i)
		}
		for _, q := range []string{`SELECT pg_logical_emit_message(false, 'orgperm_test', 'filler')`, `SELECT pg_switch_wal()`, `CHECKPOINT`} {
			if _, err := w.raw.Exec(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	}
	for _, q := range []string{`ALTER SYSTEM RESET max_slot_wal_keep_size`, `SELECT pg_reload_conf()`} {
		if _, err := w.raw.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	checkBypass(t, w, in)
	g.open()
	resynced(t, w, in)
	checkAll(t, w, in, "after the invalidated slot was made anew")
	if n := in.c.Stats().Relay.WALSlotsCreated; n != 2 {
		t.Errorf("the relay made %d slots, want 2 (the first, and one for the invalidated slot)", n)
	}
}

// TestWALSwitchWhileRunning: an instance in service sees the database
// switched to wal mode and away while raw writers go on; after each switch
// no read is stale, and once the transport is not wal the relay drops the
// slot (a slot nobody reads keeps the server's WAL).
func TestWALSwitchWhileRunning(t *testing.T) {
	skipShort(t)
	t.Parallel()
	w := walWorld(t)
	in := newInstance(t, w.pool, membership.Config{Relay: true})
	warm(t, w, in)
	for _, mode := range []string{"wal", "notify", "wal", "queue"} {
		l := startLoad(t, w, in)
		// A switch sends its "ddl" payload twice (a NOTIFY and a queue
		// row the relay sends): the states of the last switch's second
		// one must not pass for this one's.
		in.drainStates()
		setTransport(t, w, mode)
		in.waitState(listener.Unsynced) // the switch's "ddl" payload
		l.stop()
		// Into wal mode, a write is decoded only once the relay has made
		// its slot: the sentinels of resynced must come after that.
		deadline := time.Now().Add(waitTimeout)
		for {
			exists, streaming := slotState(t, w)
			if mode == "wal" && streaming || mode != "wal" && !exists {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("transport %s: slot exists %v, streamed %v", mode, exists, streaming)
			}
			time.Sleep(10 * time.Millisecond) // polling for the relay's next check of the transport
		}
		resynced(t, w, in)
	}
}

// TestSoakWAL is TestSoak in wal mode (a relay on every instance decoding
// the WAL) on a throwaway server of its own: a terminated listener
// backend, a server restart, every listener backend terminated, and the
// leading relay's backends (its connection and its walsender) terminated.
func TestSoakWAL(t *testing.T) {
	skipShort(t)
	t.Parallel()
	if os.Getenv(pgtest.URLEnv) != "" {
		t.Skip(pgtest.URLEnv + " is set: the wal soak restarts a throwaway server")
	}
	cluster := pgcluster.StartTB(t)
	cfg := shortSoak(pgtest.NewServer(cluster.URL).NewDatabase(t), 4)
	cfg.Restart = cluster.Restart
	cfg.Faults = []soak.Fault{soak.FaultTerminateOne, soak.FaultRestart, soak.FaultTerminateAll, soak.FaultTerminateRelay}
	cfg.WAL = true
	db, err := pgx.Connect(context.Background(), cfg.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	skipUnlessWAL(t, db)
	rep, err := soak.Run(context.Background(), cfg)
	checkSoak(t, rep, err)
	if rep.Terminations < 1 || rep.Restarts < 1 || rep.Verifications < 4 {
		t.Errorf("%d terminations, %d restarts, %d verifications; want every fault and the final round", rep.Terminations, rep.Restarts, rep.Verifications)
	}
}
