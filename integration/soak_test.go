package integration_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orgperm/orgperm/internal/pgbouncer"
	"github.com/orgperm/orgperm/internal/pgcluster"
	"github.com/orgperm/orgperm/internal/soak"
	"github.com/orgperm/orgperm/pkg/listener"
	"github.com/orgperm/orgperm/pkg/membership"
	"github.com/orgperm/orgperm/pkg/pgtest"
)

// silentFaultsBounded turns on the short soaks of the silent faults (the
// listener and the pool black-holed, the instances behind PgBouncer in
// transaction mode): a client that trusts its cache on LISTEN alone fails
// them (issue #16); the client with a freshness lease passes them. Set it
// to false to skip them; ORGPERM_SOAK_SILENT=1 runs them whatever this
// says.
const silentFaultsBounded = true

func requireSilentFaults(t *testing.T) {
	t.Helper()
	if !silentFaultsBounded && os.Getenv("ORGPERM_SOAK_SILENT") == "" {
		t.Skip("silent faults are off (silentFaultsBounded; ORGPERM_SOAK_SILENT=1 runs them)")
	}
}

// shortSoak is the configuration of the short soaks: a small data set,
// a second of load before each fault, and the load ending once the faults
// asked for have been injected and verified (FaultRounds; Duration is only
// a cap), so that each soak covers its faults however loaded the machine.
// Each fault kind has a soak of its own; they run in parallel.
func shortSoak(url string, rounds int) soak.Config {
	return soak.Config{
		DatabaseURL: url,
		Duration:    time.Minute,
		FaultEvery:  time.Second,
		FaultRounds: rounds,
		FaultHold:   3 * time.Second,
		Writers:     4,
		Readers:     4,
		Instances:   3,
		Orgs:        4,
		UsersPerOrg: 16,
	}
}

// checkSoak fails t if rep found anything wrong, or if the faults it
// held were not exercised by reads. (How many reads a few seconds make
// depends on the machine's load, which no floor on the count can know.)
func checkSoak(t *testing.T, rep soak.Report, err error) {
	t.Helper()
	t.Logf("\n%s", rep)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Errorf("stale beyond the bound %d (max %v), below the watermark %d, inconsistent %d, mismatches %d; want 0",
			rep.BeyondBound, rep.StalenessMax, rep.BelowWatermark, rep.Inconsistent, rep.Mismatches)
	}
	if rep.Checks == 0 {
		t.Error("no read was checked")
	}
	for _, p := range rep.Phases {
		if strings.HasSuffix(p.Name, " (held)") && p.Reads == 0 {
			t.Errorf("no read began while %s", p.Name)
		}
	}
}

// TestSoak is a short consistency soak (internal/soak; `go run ./cmd/soak`
// runs a long one) with the loud faults: raw SQL writers, readers on three
// instances, a terminated listener backend, on a throwaway server of its
// own a server restart, every listener backend terminated. No read may be
// stale by more than the bound, by the writers' commit timeline, nor miss
// a write its instance had been notified of.
//
// It runs in both transports: in queue mode (the database switched with
// orgperm.set_transport('queue'), a relay on every instance) the leading
// relay's backend is terminated too.
func TestSoak(t *testing.T) {
	skipShort(t)
	t.Parallel()
	forTransports(t, testSoak)
}

func testSoak(t *testing.T, queue bool) {
	var cfg soak.Config
	restartable := os.Getenv(pgtest.URLEnv) == ""
	if restartable {
		cluster := pgcluster.StartTB(t)
		cfg = shortSoak(pgtest.NewServer(cluster.URL).NewDatabase(t), 3)
		cfg.Restart = cluster.Restart
		cfg.Faults = []soak.Fault{soak.FaultTerminateOne, soak.FaultRestart, soak.FaultTerminateAll}
	} else {
		t.Log(pgtest.URLEnv + " is set: no server restart (only a throwaway server is restarted)")
		cfg = shortSoak(pgtest.NewDatabase(t), 2)
		cfg.Faults = []soak.Fault{soak.FaultTerminateOne, soak.FaultTerminateAll}
	}
	if queue {
		cfg.Queue = true
		cfg.Faults = append(cfg.Faults, soak.FaultTerminateRelay)
		cfg.FaultRounds++
	}
	rep, err := soak.Run(context.Background(), cfg)
	checkSoak(t, rep, err)
	if rep.Terminations < 1 || rep.Reconnects < 1 {
		t.Errorf("%d listener backends terminated, %d reconnects; want at least 1 each", rep.Terminations, rep.Reconnects)
	}
	if restartable && rep.Restarts < 1 {
		t.Errorf("no server restart")
	}
	if rep.Verifications < 3 {
		t.Errorf("%d verification rounds, want one after each fault and the final one", rep.Verifications)
	}
}

// TestSoakStorm is the short soak of the NOTIFY storm: a role with no
// orgperm privilege sends spoofed 8 KB payloads on the channel while the
// writes go on, at the default rate (50 a second, each naming about a
// thousand orgs). Before evictions cost what they evict (issue #16, item
// 3), a listener walking its whole cache per org fell behind such a storm
// on a loaded machine, past the bound.
func TestSoakStorm(t *testing.T) {
	skipShort(t)
	t.Parallel()
	cfg := shortSoak(pgtest.NewDatabase(t), 1)
	cfg.Faults = []soak.Fault{soak.FaultStorm}
	rep, err := soak.Run(context.Background(), cfg)
	checkSoak(t, rep, err)
	if rep.Storms < 1 || rep.StormPayloads < 1 {
		t.Errorf("%d storms, %d payloads; want a storm", rep.Storms, rep.StormPayloads)
	}
}

// TestSoakBlackholes is the short soak of the silent network faults: the
// listeners' connections black-holed (a TCP proxy drops every byte and
// closes nothing), then the listeners' and the pools' together, each for
// two seconds, while the writers go on.
//
// It runs in both transports: in queue mode one instance runs the relay,
// and its connection goes through the listeners' proxy, so that both
// black holes cut it too and nothing is relayed, proofs included, until it
// has replaced its connection.
func TestSoakBlackholes(t *testing.T) {
	skipShort(t)
	requireSilentFaults(t)
	t.Parallel()
	forTransports(t, testSoakBlackholes)
}

func testSoakBlackholes(t *testing.T, queue bool) {
	cfg := shortSoak(pgtest.NewDatabase(t), 2)
	cfg.Faults = soak.SilentFaults()
	if queue {
		cfg.Queue, cfg.Relays = true, 1
	}
	rep, err := soak.Run(context.Background(), cfg)
	checkSoak(t, rep, err)
	if rep.Blackholes < 2 {
		t.Errorf("%d black holes, want both kinds", rep.Blackholes)
	}
	for i, err := range rep.Health {
		if err != nil {
			t.Errorf("instance %d after the black holes: Check() = %v, want the cache in service", i, err)
		}
	}
}

// TestSoakPgBouncer is the short soak with the instances behind PgBouncer
// in transaction mode, pool and listener (the writers connect directly).
// It needs the pgbouncer binary (apt package
// pgbouncer) and skips without it.
//
// It runs in both transports. In queue mode one instance runs the relay,
// on its default connection (the pool's configuration: through the
// pooler too). The listener refuses the pooler before it LISTENs
// (DECISIONS 49) whatever the transport, or when its check cannot tell
// gets no proof back, so the designed outcome is the same: every cache
// bypassed, loudly, and no read stale.
func TestSoakPgBouncer(t *testing.T) {
	skipShort(t)
	requireSilentFaults(t)
	t.Parallel()
	forTransports(t, testSoakPgBouncer)
}

func testSoakPgBouncer(t *testing.T, queue bool) {
	if _, err := pgbouncer.Find(); err != nil {
		t.Skip(err)
	}
	if os.Getenv("ORGPERM_PG_BIN") != "" {
		// Seen on the PostgreSQL 18 matrix run: the distribution's PgBouncer
		// exited ("got packet 'A' from server when not linked") under the
		// proofs' notifications. make test runs it on the distribution's
		// PostgreSQL; TestPgBouncerTransactionMode covers every version.
		t.Skip("PgBouncer soak runs against the distribution's PostgreSQL only")
	}
	url := pgtest.NewDatabase(t)
	cc, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	b, err := pgbouncer.Start(context.Background(), pgbouncer.Config{ServerHost: cc.Host, ServerPort: int(cc.Port), Users: []string{cc.User}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() }) // on an early exit; Close is idempotent
	cfg := shortSoak(url, 0)
	cfg.Duration = 6 * time.Second
	cfg.PoolerURL = b.ConnString(cc.User, cc.Database)
	cfg.FaultEvery = -1
	if queue {
		cfg.Queue, cfg.Relays = true, 1
	}
	rep, err := soak.Run(context.Background(), cfg)
	if cerr := b.Close(); cerr != nil {
		// PgBouncer 1.18 (Debian 12's) dies now and then with "got packet
		// 'A' from server when not linked": a notification reached a
		// server connection that a LISTEN sent through the pooler had
		// subscribed, while no client was linked to it. The listener now
		// refuses such a connection before it LISTENs (checkPooler), but
		// when its check cannot tell (the load took the backend it looks
		// for) the LISTEN still goes through. With the pooler gone
		// mid-run, the run cannot judge orgperm behind it.
		if strings.Contains(cerr.Error(), "from server when not linked") {
			t.Skipf("PgBouncer crashed on its own bug during the run, so it judged nothing: %v", cerr)
		}
		t.Fatal(cerr)
	}
	checkSoak(t, rep, err)
	// No proof of delivery comes back through a transaction pooler: the
	// health check must say the cache is bypassed.
	// Why: the pooler refused (ErrTransactionPooler), or, when the
	// listener's check could not tell (DECISIONS 49), no proof came back;
	// both match ErrNoProof.
	for i, err := range rep.Health {
		if !errors.Is(err, membership.ErrBypassed) || !errors.Is(err, listener.ErrNoProof) {
			t.Errorf("instance %d: Check() = %v, want ErrBypassed and ErrNoProof", i, err)
		}
	}
}
