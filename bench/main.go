// Command bench reproduces the first seed's performance comparison table
// ("Strategy | First call | Subsequent calls | Data freshness") with
// measured numbers, all in one run against one seeded database, for four
// strategies answering HasPermission(org, user, "billing.view_invoice"):
//
//   - no cache: one SQL query per check;
//   - the seed's default: a Redis cache with a 5-minute TTL and an explicit
//     DEL after each write the app makes;
//   - a request-only cache (membership.WithRequestCache);
//   - orgperm (membership.Client).
//
// It prints the tables, and with -out writes them to a Markdown file with
// an SVG chart next to it:
//
//	cd bench && go run . -out ../docs/BENCHMARKS.md
//
// PostgreSQL: the server DATABASE_URL names (its user needs CREATEDB),
// otherwise a throwaway cluster from the local binaries; either way the run
// creates a database of its own and drops it. Redis: the one at -redis
// (default $REDIS_ADDR, else 127.0.0.1:6379), otherwise a redis-server
// started on a free port and stopped at the end. Keys are written under a
// prefix of the run's own and deleted at the end.
//
// This is a module of its own so that the library's go.mod stays free of
// go-redis.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// options are the command line flags.
type options struct {
	Out         string
	Chart       string
	Redis       string
	MissN       int
	InvalN      int
	WriteRounds int
	WriteTime   time.Duration
	StaleWait   time.Duration
	Rounds      int
}

func main() {
	var o options
	defRedis := os.Getenv("REDIS_ADDR")
	if defRedis == "" {
		defRedis = "127.0.0.1:6379"
	}
	flag.StringVar(&o.Out, "out", "", "write the report to this Markdown `file` (and the chart next to it); default: stdout only")
	flag.StringVar(&o.Chart, "chart", "", "write the chart to this SVG `file`; default: benchmarks.svg next to -out")
	flag.StringVar(&o.Redis, "redis", defRedis, "Redis `host:port`; when nothing answers there, a redis-server is started on a free port")
	flag.IntVar(&o.MissN, "miss", 300, "`samples` per strategy for the miss row")
	flag.IntVar(&o.InvalN, "writes", 600, "raw SQL `writes` per instance count for the invalidation rows")
	flag.IntVar(&o.WriteRounds, "write-rounds", 3, "`rounds` of each mode (triggers on, off) for the write-throughput row")
	flag.DurationVar(&o.WriteTime, "write-time", time.Second, "`duration` of one write-throughput round")
	flag.DurationVar(&o.StaleWait, "stale-wait", time.Second, "how long after an outside write the strategies are asked again")
	flag.IntVar(&o.Rounds, "rounds", 3, "interleaved `rounds` of the hit, miss and invalidation rows, to spread out noise from other load")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "bench: unexpected arguments %q\n", flag.Args())
		flag.Usage()
		os.Exit(2)
	}
	if o.MissN < 10 || o.InvalN < 10 || o.Rounds < 1 || o.WriteRounds < 1 || o.WriteTime <= 0 || o.StaleWait <= 0 {
		fmt.Fprintln(os.Stderr, "bench: -miss and -writes must be at least 10, -rounds and -write-rounds at least 1, durations positive")
		os.Exit(2)
	}
	if o.Out != "" && o.Chart == "" {
		o.Chart = filepath.Join(filepath.Dir(o.Out), "benchmarks.svg")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	res, err := run(ctx, o, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	res.Elapsed = time.Since(start).Round(time.Second)
	res.Command = command(o)
	report := markdown(res, o)
	fmt.Print(report.tables)
	if o.Out == "" {
		return
	}
	for _, dir := range []string{filepath.Dir(o.Out), filepath.Dir(o.Chart)} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
	}
	if err := os.WriteFile(o.Chart, []byte(chartSVG(res)), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	doc := report.document
	if old, err := os.ReadFile(o.Out); err == nil {
		// Sections measured by other means follow the marker: keep them.
		if i := strings.Index(string(old), keepMarker); i >= 0 {
			doc = strings.TrimRight(doc, "\n") + "\n\n" + string(old[i:])
		}
	}
	if err := os.WriteFile(o.Out, []byte(doc), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "bench: wrote %s and %s\n", o.Out, o.Chart)
}

// keepMarker starts the part of the -out file that a run keeps as it is:
// sections written by hand from other benchmarks.
const keepMarker = "<!-- make bench keeps everything below this line -->"

// command is the command line that produced the run, as the report shows
// it: the flags that differ from their defaults.
func command(o options) string {
	parts := []string{"cd bench && go run ."}
	flag.Visit(func(f *flag.Flag) {
		if f.Name == "redis" || f.Name == "chart" {
			return // machine-specific
		}
		parts = append(parts, "-"+f.Name+" "+f.Value.String())
	})
	return strings.Join(parts, " ")
}
