package integration_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orgperm/orgperm/internal/pgbouncer"
	"github.com/orgperm/orgperm/internal/soak"
	"github.com/orgperm/orgperm/pkg/pgtest"
)

// silentFaultsBounded turns on the short soaks of the silent faults (the
// listener and the pool black-holed, the instances behind PgBouncer in
// transaction mode): a client that trusts its cache on LISTEN alone fails
// them (issue #16), so they run once the client bounds its staleness by a
// freshness lease. ORGPERM_SOAK_SILENT=1 runs them whatever this says, to
// see today's client fail them.
const silentFaultsBounded = false

func requireSilentFaults(t *testing.T) {
	t.Helper()
	if !silentFaultsBounded && os.Getenv("ORGPERM_SOAK_SILENT") == "" {
		t.Skip("silent faults are off until the client has a freshness lease (silentFaultsBounded; ORGPERM_SOAK_SILENT=1 runs them)")
	}
}

// shortSoak is the configuration of the short soaks: a small data set,
// short faults.
func shortSoak(url string) soak.Config {
	return soak.Config{
		DatabaseURL: url,
		Duration:    10 * time.Second,
		FaultEvery:  2 * time.Second,
		FaultHold:   2 * time.Second,
		Writers:     4,
		Readers:     4,
		Instances:   3,
		Orgs:        8,
		UsersPerOrg: 16,
	}
}

// checkSoak fails t if rep found anything wrong or checked too little.
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
	if rep.Checks <= 1000 {
		t.Errorf("%d checks, want more than 1000", rep.Checks)
	}
	if rep.Verifications < 2 {
		t.Errorf("%d verification rounds, want one after a fault and the final one", rep.Verifications)
	}
}

// TestSoak is a short consistency soak (internal/soak; `go run ./cmd/soak`
// runs a long one) with the default faults: raw SQL writers, readers on
// three instances, a terminated listener backend, on a throwaway server of
// its own a server restart, every listener backend terminated, and a
// NOTIFY storm from a role with no orgperm privilege. No read may be stale
// by more than the bound, by the writers' commit timeline, nor miss a
// write its instance had been notified of.
func TestSoak(t *testing.T) {
	t.Parallel()
	var cfg soak.Config
	restartable := os.Getenv("DATABASE_URL") == ""
	if restartable {
		server := pgtest.StartServer(t)
		cfg = shortSoak(server.NewDatabase(t))
		cfg.Restart = server.RestartServer
	} else {
		t.Log("DATABASE_URL is set: no server restart (only a throwaway server is restarted)")
		cfg = shortSoak(pgtest.NewDatabase(t))
	}
	rep, err := soak.Run(context.Background(), cfg)
	checkSoak(t, rep, err)
	if rep.Terminations < 1 || rep.Reconnects < 1 {
		t.Errorf("%d listener backends terminated, %d reconnects; want at least 1 each", rep.Terminations, rep.Reconnects)
	}
	if restartable && rep.Restarts < 1 {
		t.Errorf("no server restart")
	}
	if rep.Storms < 1 || rep.StormPayloads < 1 {
		t.Errorf("%d storms, %d payloads; want a storm", rep.Storms, rep.StormPayloads)
	}
}

// TestSoakBlackholes is the short soak of the silent network faults: the
// listeners' connections black-holed (a TCP proxy drops every byte and
// closes nothing), then the listeners' and the pools' together, each for
// two seconds, while the writers go on.
func TestSoakBlackholes(t *testing.T) {
	requireSilentFaults(t)
	t.Parallel()
	cfg := shortSoak(pgtest.NewDatabase(t))
	cfg.Faults = soak.SilentFaults()
	rep, err := soak.Run(context.Background(), cfg)
	checkSoak(t, rep, err)
	if rep.Blackholes < 2 {
		t.Errorf("%d black holes, want both kinds", rep.Blackholes)
	}
}

// TestSoakPgBouncer is the short soak with the instances behind PgBouncer
// in transaction mode, pool and listener (the writers connect directly),
// and the NOTIFY storm. It needs the pgbouncer binary (apt package
// pgbouncer) and skips without it.
func TestSoakPgBouncer(t *testing.T) {
	requireSilentFaults(t)
	t.Parallel()
	if _, err := pgbouncer.Find(); err != nil {
		t.Skip(err)
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
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Error(err)
		}
	})
	cfg := shortSoak(url)
	cfg.PoolerURL = b.ConnString(cc.User, cc.Database)
	cfg.Faults = []soak.Fault{soak.FaultStorm}
	rep, err := soak.Run(context.Background(), cfg)
	checkSoak(t, rep, err)
}
