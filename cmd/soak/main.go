// Command soak runs orgperm's consistency soak (package internal/soak):
// raw SQL writers, readers on several instances, faults, and two
// detectors: every read is judged against the writers' own commit
// timeline (stale by more than the bound fails the soak), and against the
// sentinel watermark its instance had reached (any miss fails it).
//
// With no DATABASE_URL it starts a throwaway PostgreSQL from the local
// binaries, which it also restarts as one of the faults. With DATABASE_URL
// it creates a fresh database on that server (dropped at the end) and
// skips restarts.
//
//	go run ./cmd/soak                 # 10 minutes, every fault
//	go run ./cmd/soak -duration 2m -writers 4 -readers 4 -instances 4 -faults 30s
//	go run ./cmd/soak -duration 60s -inject blackhole-listener,storm -faults 15s -hold 10s
//	go run ./cmd/soak -duration 60s -pgbouncer
//
// -inject takes a comma-separated list of faults, cycled in order:
// terminate-one, restart, terminate-all, storm, blackhole-listener,
// blackhole-all, or "default" (the first four), "silent" (the black
// holes), "all" (the default). -pgbouncer puts a throwaway PgBouncer in
// transaction mode (internal/pgbouncer; apt package pgbouncer) in front of
// the database and connects the instances through it, pool and listener.
//
// It prints progress every 10 seconds and the report at the end, and exits
// 1 if any read was stale beyond the bound (-bound, default the lease plus
// 50 ms), below its watermark, inconsistent or mismatched, or the soak
// could not run.
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

	"github.com/jackc/pgx/v5"

	"github.com/orgperm/orgperm/internal/pgbouncer"
	"github.com/orgperm/orgperm/internal/pgcluster"
	"github.com/orgperm/orgperm/internal/soak"
)

func main() {
	cfg := soak.Config{}
	faults := flag.String("inject", "all", "faults to inject, comma-separated, cycled: terminate-one, restart, terminate-all, storm, blackhole-listener, blackhole-all; default, silent, all")
	pooler := flag.Bool("pgbouncer", false, "connect the instances (pool and listener) through a throwaway PgBouncer in transaction mode")
	flag.DurationVar(&cfg.FaultHold, "hold", 10*time.Second, "how long a black hole or a NOTIFY storm lasts")
	flag.DurationVar(&cfg.Bound, "bound", 1050*time.Millisecond, "the staleness a read may have, by the writers' commit timeline")
	flag.IntVar(&cfg.StormRate, "storm-rate", 50, "spoofed 8 KB payloads a second during a NOTIFY storm")
	flag.DurationVar(&cfg.Duration, "duration", 10*time.Minute, "how long to write and read")
	flag.IntVar(&cfg.Writers, "writers", 4, "writer goroutines (raw SQL)")
	flag.IntVar(&cfg.Readers, "readers", 4, "reader goroutines")
	flag.IntVar(&cfg.Instances, "instances", 4, "app instances (Clients with pools of their own)")
	flag.DurationVar(&cfg.FaultEvery, "faults", 30*time.Second, "interval between injected faults; negative: none")
	flag.IntVar(&cfg.Orgs, "orgs", 16, "organizations")
	flag.IntVar(&cfg.UsersPerOrg, "users", 32, "members per organization")
	flag.BoolVar(&cfg.Queue, "queue", false, "switch the database to the queue transport (orgperm.set_transport('queue')) and relay it from the instances")
	flag.BoolVar(&cfg.WAL, "wal", false, "switch the database to the wal transport (orgperm.set_transport('wal'); wal_level logical) and relay it from the instances")
	flag.IntVar(&cfg.Relays, "relays", 0, "with -queue or -wal, how many instances (the first ones) run the relay; default every instance")
	verbose := flag.Bool("v", false, "log everything the listeners log (by default only their warnings)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, cfg, *faults, *pooler, *verbose)
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

func run(ctx context.Context, cfg soak.Config, faults string, pooler, verbose bool) (soak.Report, error) {
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stdout, nil))
	if verbose {
		cfg.ClientLogger = cfg.Logger
	}

	adminURL := os.Getenv("DATABASE_URL")
	if adminURL == "" {
		fmt.Println("Starting a throwaway PostgreSQL from the local binaries...")
		c, err := pgcluster.Start()
		if err != nil {
			return soak.Report{}, fmt.Errorf("%w; or set DATABASE_URL", err)
		}
		defer c.Close()
		adminURL = c.URL
		cfg.Restart = c.Restart
	} else {
		fmt.Println("DATABASE_URL is set: using that server, in a fresh database; server restarts are skipped (only a throwaway server is restarted).")
	}
	name, url, err := pgcluster.NewMigrated(ctx, adminURL)
	if err != nil {
		return soak.Report{}, err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := pgcluster.DropDatabase(dctx, adminURL, name); err != nil {
			fmt.Fprintln(os.Stderr, "soak:", err)
		}
	}()
	cfg.DatabaseURL = url
	if cfg.Faults, err = soak.ParseFaults(faults, cfg.Restart != nil); err != nil {
		return soak.Report{}, err
	}
	if pooler {
		cc, err := pgx.ParseConfig(url)
		if err != nil {
			return soak.Report{}, err
		}
		b, err := pgbouncer.Start(ctx, pgbouncer.Config{ServerHost: cc.Host, ServerPort: int(cc.Port), Users: []string{cc.User}})
		if err != nil {
			return soak.Report{}, err
		}
		defer func() {
			if err := b.Close(); err != nil {
				fmt.Fprintln(os.Stderr, "soak:", err)
			}
		}()
		cfg.PoolerURL = b.ConnString(cc.User, name)
		fmt.Printf("Instances connect through PgBouncer (transaction mode) on %s:%d\n", b.Host, b.Port)
	}
	cfg.Progress = func(r soak.Report) {
		fmt.Printf("[%v] checks %d (%.0f/s), stale %d (max %v, %d beyond the bound), below watermark %d, inconsistent %d, failed closed %d, writes %d, faults %d+%d+%d+%d, reconnects %d, bypassed %d, verifications %d\n",
			r.Elapsed.Round(time.Second), r.Checks, float64(r.Checks)/r.Elapsed.Seconds(), r.Stale, r.StalenessMax.Round(time.Millisecond), r.BeyondBound,
			r.BelowWatermark, r.Inconsistent, r.FailedClosed, r.Writes, r.Terminations, r.Restarts, r.Blackholes, r.Storms,
			r.Reconnects, r.Bypassed, r.Verifications)
	}
	return soak.Run(ctx, cfg)
}
