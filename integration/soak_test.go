package integration_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/orgperm/orgperm/internal/soak"
	"github.com/orgperm/orgperm/pkg/pgtest"
)

// TestSoak is a short consistency soak (internal/soak; `go run ./cmd/soak`
// runs a long one): raw SQL writers, readers on three instances, a
// terminated listener backend and, on a throwaway server of its own, a
// server restart. No read may be stale beyond the notification bound.
func TestSoak(t *testing.T) {
	skipShort(t)
	t.Parallel()
	cfg := soak.Config{
		Duration:    9 * time.Second,
		FaultEvery:  2500 * time.Millisecond, // one backend terminated, a restart, every backend terminated
		Writers:     4,
		Readers:     4,
		Instances:   3,
		Orgs:        8,
		UsersPerOrg: 16,
	}
	restartable := os.Getenv("DATABASE_URL") == ""
	if restartable {
		server := pgtest.StartServer(t)
		cfg.DatabaseURL = server.NewDatabase(t)
		cfg.Restart = server.RestartServer
	} else {
		t.Log("DATABASE_URL is set: no server restart (only a throwaway server is restarted)")
		cfg.DatabaseURL = pgtest.NewDatabase(t)
	}
	rep, err := soak.Run(context.Background(), cfg)
	t.Logf("\n%s", rep)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Stale != 0 || rep.Inconsistent != 0 || rep.Mismatches != 0 {
		t.Errorf("stale %d, inconsistent %d, mismatches %d; want 0", rep.Stale, rep.Inconsistent, rep.Mismatches)
	}
	if rep.Checks <= 1000 {
		t.Errorf("%d checks, want more than 1000", rep.Checks)
	}
	if rep.Terminations < 1 || rep.Reconnects < 1 {
		t.Errorf("%d listener backends terminated, %d reconnects; want at least 1 each", rep.Terminations, rep.Reconnects)
	}
	if restartable && rep.Restarts < 1 {
		t.Errorf("no server restart")
	}
	if rep.Verifications < 2 {
		t.Errorf("%d verification rounds, want one after a fault and the final one", rep.Verifications)
	}
}
