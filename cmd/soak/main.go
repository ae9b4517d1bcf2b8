// Command soak runs orgperm's consistency soak (package internal/soak):
// raw SQL writers, readers on several instances, listener faults, and a
// count of stale reads, which must be 0.
//
// With no DATABASE_URL it starts a throwaway PostgreSQL from the local
// binaries, which it also restarts as one of the faults. With DATABASE_URL
// it creates a fresh database on that server (dropped at the end) and
// skips restarts.
//
//	go run ./cmd/soak                 # 10 minutes
//	go run ./cmd/soak -duration 2m -writers 4 -readers 4 -instances 4 -faults 30s
//
// It prints progress every 10 seconds and the report at the end, and exits
// 1 if any read was stale or inconsistent, or the soak could not run.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/orgperm/orgperm/internal/soak"
	"github.com/orgperm/orgperm/pkg/pgtest"
)

func main() {
	cfg := soak.Config{}
	flag.DurationVar(&cfg.Duration, "duration", 10*time.Minute, "how long to write and read")
	flag.IntVar(&cfg.Writers, "writers", 4, "writer goroutines (raw SQL)")
	flag.IntVar(&cfg.Readers, "readers", 4, "reader goroutines")
	flag.IntVar(&cfg.Instances, "instances", 4, "app instances (Clients with pools of their own)")
	flag.DurationVar(&cfg.FaultEvery, "faults", 30*time.Second, "interval between injected faults; negative: none")
	flag.IntVar(&cfg.Orgs, "orgs", 16, "organizations")
	flag.IntVar(&cfg.UsersPerOrg, "users", 32, "members per organization")
	verbose := flag.Bool("v", false, "log everything the listeners log (by default only their warnings)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, cfg, *verbose)
	if rep.Checks > 0 || err == nil {
		fmt.Println()
		fmt.Println(rep)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
	if !rep.OK() {
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg soak.Config, verbose bool) (soak.Report, error) {
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stdout, nil))
	if verbose {
		cfg.ClientLogger = cfg.Logger
	}

	var server *pgtest.Server
	if os.Getenv("DATABASE_URL") == "" {
		fmt.Println("Starting a throwaway PostgreSQL from the local binaries...")
		s, err := pgtest.Start()
		if err != nil {
			return soak.Report{}, err
		}
		defer s.Close()
		server = s
		cfg.Restart = s.RestartServer
	} else {
		fmt.Println("DATABASE_URL is set: using that server, in a fresh database; server restarts are skipped (only a throwaway server is restarted).")
		s, err := pgtest.SharedServer()
		if err != nil {
			return soak.Report{}, err
		}
		server = s
	}
	url, name, err := server.CreateDatabase(ctx)
	if err != nil {
		return soak.Report{}, err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := server.DropDatabase(dctx, name); err != nil {
			fmt.Fprintln(os.Stderr, "soak:", err)
		}
	}()
	cfg.DatabaseURL = url
	cfg.Progress = func(r soak.Report) {
		fmt.Printf("[%v] checks %d (%.0f/s), stale %d, inconsistent %d, failed closed %d, writes %d, faults %d+%d, reconnects %d, bypassed %d, verifications %d\n",
			r.Elapsed.Round(time.Second), r.Checks, float64(r.Checks)/r.Elapsed.Seconds(), r.Stale, r.Inconsistent, r.FailedClosed,
			r.Writes, r.Terminations, r.Restarts, r.Reconnects, r.Bypassed, r.Verifications)
	}
	return soak.Run(ctx, cfg)
}
