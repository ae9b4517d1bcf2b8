package integration_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orgperm/orgperm/internal/proccpu"
	"github.com/orgperm/orgperm/internal/sidecheck"
	"github.com/orgperm/orgperm/pkg/listener"
	"github.com/orgperm/orgperm/pkg/membership"
	"github.com/orgperm/orgperm/pkg/pgtest"
	"github.com/orgperm/orgperm/pkg/relay"
)

// BenchmarkInstances measures, for 1, 8, 32 and 64 instances in this
// process (each a Client with its own pool and listener on one database;
// ORGPERM_INSTANCES=1,8 picks other counts):
//
//   - the invalidation delay: from just before a raw SQL UPDATE of one
//     membership's status (its own connection) to each instance's
//     Config.OnInvalidate for that key. inst-p50/p99 have one sample per
//     (write, instance); all-p50/p99 one per write, until the last
//     instance. One write at a time: each iteration is one write.
//     write-p50 is the write's own round trip (its triggers, the audit
//     trail's included, and its commit): the notification leaves at
//     commit, so it bounds the delay from under. after-write-p50/p99 are
//     what the last instance took beyond it (0 when the eviction came
//     first): the delivery itself.
//
//   - the CPU each write costs per instance, over those writes:
//     app-cpu-µs/inst in this process (every listener's receive, parse
//     and eviction, plus the writer's own call) and pg-cpu-µs/inst in the
//     listening backends (Linux's /proc/<pid>/schedstat; not reported
//     where it cannot be read). k instances need about k times their sum
//     of CPU for every write: on a machine of c CPUs, no write can reach
//     the last instance sooner than k x sum / c.
//
//   - proof traffic: for 10 s after the writes, every instance checks a
//     key every 5 ms (the lease stays live on every instance); proofs/s is
//     the proof NOTIFYs all instances sent per second, and wakeups/s that
//     times the listening backends (each NOTIFY wakes every one before
//     PostgreSQL 19).
//
//     go test -run '^$' -bench Instances -benchtime 300x ./integration
func BenchmarkInstances(b *testing.B) {
	counts := []int{1, 8, 32, 64}
	if s := os.Getenv("ORGPERM_INSTANCES"); s != "" {
		counts = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(f)
			if err != nil || n < 1 {
				b.Fatalf("ORGPERM_INSTANCES=%q: want counts like 1,8,32", s)
			}
			counts = append(counts, n)
		}
	}
	server := pgtest.Shared(b)
	for _, n := range counts {
		b.Run(fmt.Sprintf("instances=%d", n), func(b *testing.B) {
			benchInstances(b, server, n, 0)
		})
	}
}

// BenchmarkInstancesQueue is BenchmarkInstances in queue mode
// (orgperm.set_transport('queue')), with the relay on the first instance
// polling every 1, 5 or 20 ms (ORGPERM_RELAY_INTERVALS=2ms,10ms picks
// others), for 1 and 8 instances by default (ORGPERM_INSTANCES). It also
// reports what the leading relay costs while nothing is written, over 3 s
// before the writes: relay-idle-pg-cpu-% (its backend, Linux only) and
// idle-app-cpu-% (this whole process).
//
//	go test -run '^$' -bench InstancesQueue -benchtime 300x ./integration
func BenchmarkInstancesQueue(b *testing.B) {
	counts := []int{1, 8}
	if s := os.Getenv("ORGPERM_INSTANCES"); s != "" {
		counts = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(f)
			if err != nil || n < 1 {
				b.Fatalf("ORGPERM_INSTANCES=%q: want counts like 1,8,32", s)
			}
			counts = append(counts, n)
		}
	}
	intervals := []time.Duration{time.Millisecond, 5 * time.Millisecond, 20 * time.Millisecond}
	if s := os.Getenv("ORGPERM_RELAY_INTERVALS"); s != "" {
		intervals = nil
		for _, f := range strings.Split(s, ",") {
			d, err := time.ParseDuration(f)
			if err != nil || d <= 0 {
				b.Fatalf("ORGPERM_RELAY_INTERVALS=%q: want durations like 2ms,10ms", s)
			}
			intervals = append(intervals, d)
		}
	}
	server := pgtest.Shared(b)
	for _, n := range counts {
		for _, d := range intervals {
			b.Run(fmt.Sprintf("instances=%d/interval=%v", n, d), func(b *testing.B) {
				benchInstances(b, server, n, d)
			})
		}
	}
}

// arrivals collects, for the write under way, when each instance applied
// its invalidation.
type arrivals struct {
	mu      sync.Mutex
	start   time.Time
	got     []time.Duration // per instance, -1 until applied
	left    int
	done    chan struct{}
	pending atomic.Bool
}

func (a *arrivals) arm(n int) {
	a.mu.Lock()
	a.start = time.Now()
	a.got = slices.Repeat([]time.Duration{-1}, n)
	a.left = n
	a.done = make(chan struct{})
	a.mu.Unlock()
	a.pending.Store(true)
}

func (a *arrivals) applied(i int) {
	if !a.pending.Load() {
		return
	}
	at := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.got[i] >= 0 {
		return
	}
	a.got[i] = at.Sub(a.start)
	if a.left--; a.left == 0 {
		a.pending.Store(false)
		close(a.done)
	}
}

// benchInstances runs BenchmarkInstances for n instances; with a relay
// interval, in queue mode with the relay on the first instance.
func benchInstances(b *testing.B, server *pgtest.Server, n int, relayInterval time.Duration) {
	ctx := context.Background()
	url := server.NewDatabase(b)
	raw, err := pgxpool.New(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(raw.Close)
	if _, err := raw.Exec(ctx, fixture); err != nil {
		b.Fatal(err)
	}
	if relayInterval > 0 {
		if _, err := raw.Exec(ctx, `SELECT orgperm.set_transport('queue'); SELECT orgperm.relay()`); err != nil {
			b.Fatal(err)
		}
	}
	checkQueued(b, ctx, raw, relayInterval > 0)
	a := &arrivals{}
	clients := make([]*membership.Client, n)
	for i := range clients {
		cfg, err := pgxpool.ParseConfig(url)
		if err != nil {
			b.Fatal(err)
		}
		cfg.MaxConns = 2
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(pool.Close)
		c, err := membership.New(ctx, pool, membership.Config{OnInvalidate: func(inv listener.Invalidation, err error) {
			if err == nil && covers(inv, "o1", "u1") {
				a.applied(i)
			}
		}, Relay: relayInterval > 0 && i == 0, RelayInterval: relayInterval})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = c.Close(context.Background()) })
		clients[i] = c
	}
	for _, c := range clients {
		select {
		case <-c.Ready():
		case <-time.After(time.Minute):
			b.Fatal("an instance never became ready")
		}
	}
	writer, err := pgx.Connect(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { writer.Close(context.Background()) })

	// The CPU the notifications cost, on this process (every instance's
	// listener) and in the listening backends, over the writes below.
	var pids []int
	rows, err := raw.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()`, listener.ApplicationName)
	if err != nil {
		b.Fatal(err)
	}
	for rows.Next() {
		var pid int
		if err := rows.Scan(&pid); err != nil {
			b.Fatal(err)
		}
		pids = append(pids, pid)
	}
	if err := rows.Err(); err != nil {
		b.Fatal(err)
	}
	idleApp, idleRelay := -1.0, -1.0 // reported after the loop, which resets metrics
	if relayInterval > 0 {
		// The leading relay's cost while nothing is written.
		var relayPid int
		if err := raw.QueryRow(ctx, `SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()`,
			relay.ApplicationName).Scan(&relayPid); err != nil {
			b.Fatal(err)
		}
		app0, appOK := proccpu.Self()
		rel0, relOK := proccpu.Sum([]int{relayPid})
		t0 := time.Now()
		time.Sleep(3 * time.Second) // the idle window measured
		app1, _ := proccpu.Self()
		rel1, _ := proccpu.Sum([]int{relayPid})
		el := time.Since(t0)
		if appOK {
			idleApp = 100 * (app1 - app0).Seconds() / el.Seconds()
		}
		if relOK {
			idleRelay = 100 * (rel1 - rel0).Seconds() / el.Seconds()
		}
	}
	goCPU0, goOK := proccpu.Self()
	pgCPU0, pgOK := proccpu.Sum(pids)

	var inst, all, exec, beyond []time.Duration
	status := []string{"active", "suspended"} // i = 1 suspends: a write that changes nothing notifies nothing
	i := 0
	for b.Loop() {
		i++
		a.arm(n)
		if _, err := writer.Exec(ctx, `UPDATE orgperm.memberships SET status = $1 WHERE org_id = 'o1' AND user_id = 'u1'`, status[i%2]); err != nil {
			b.Fatal(err)
		}
		// The write's own round trip, its triggers and commit included:
		// the notification leaves at commit, so this bounds every delay
		// below from under.
		took := time.Since(a.start)
		exec = append(exec, took)
		select {
		case <-a.done:
		case <-time.After(10 * time.Second):
			b.Fatalf("write %d: not applied on every instance within 10 s", i)
		}
		a.mu.Lock()
		inst = append(inst, a.got...)
		all = append(all, slices.Max(a.got))
		beyond = append(beyond, max(slices.Max(a.got)-took, 0))
		a.mu.Unlock()
	}
	b.StopTimer()
	goCPU1, goOK1 := proccpu.Self()
	pgCPU1, pgOK1 := proccpu.Sum(pids)
	goCPU, pgCPU := goCPU1-goCPU0, pgCPU1-pgCPU0
	if goOK && goOK1 && pgOK && pgOK1 && len(pids) == n {
		// Per write and per instance: what one more instance costs the
		// machine for each write, in this process and in its backend.
		per := float64(i) * float64(n)
		b.ReportMetric(float64(goCPU.Microseconds())/per, "app-cpu-µs/inst")
		b.ReportMetric(float64(pgCPU.Microseconds())/per, "pg-cpu-µs/inst")
	}
	b.ReportMetric(pct(exec, 50), "write-p50-µs")
	b.ReportMetric(pct(beyond, 50), "after-write-p50-µs")
	b.ReportMetric(pct(beyond, 99), "after-write-p99-µs")
	if idleApp >= 0 {
		b.ReportMetric(idleApp, "idle-app-cpu-%")
	}
	if idleRelay >= 0 {
		b.ReportMetric(idleRelay, "relay-idle-pg-cpu-%")
	}
	b.ReportMetric(pct(inst, 50), "inst-p50-µs")
	b.ReportMetric(pct(inst, 99), "inst-p99-µs")
	b.ReportMetric(pct(all, 50), "all-p50-µs")
	b.ReportMetric(pct(all, 99), "all-p99-µs")

	// Proof traffic under a read load on every instance.
	sent := func() (s uint64) {
		for _, c := range clients {
			s += c.Stats().Listener.ProofsSent
		}
		return s
	}
	lctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for lctx.Err() == nil {
				_, _ = c.Permissions(lctx, "o1", "u2")
				select {
				case <-lctx.Done():
				case <-time.After(5 * time.Millisecond): // the read rate
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond) // the load settles
	s0, t0 := sent(), time.Now()
	time.Sleep(10 * time.Second) // the window measured
	s1, t1 := sent(), time.Now()
	cancel()
	wg.Wait()
	rate := float64(s1-s0) / t1.Sub(t0).Seconds()
	b.ReportMetric(rate, "proofs/s")
	b.ReportMetric(rate*float64(n), "wakeups/s")
}

// checkQueued fails b unless the benchmark's membership UPDATE queues a
// row exactly when queue says the database is in queue mode
// (sidecheck.QueuedRows). The writes' delivery to every instance is checked by
// each write itself; this proves the path: a queue side that notified
// directly would time notify mode under queue's name.
func checkQueued(b *testing.B, ctx context.Context, raw *pgxpool.Pool, queue bool) {
	b.Helper()
	n, err := sidecheck.QueuedRows(ctx, raw, "o1", "u1")
	if err != nil {
		b.Fatal(err)
	}
	if (n > 0) != queue {
		b.Fatalf("queue mode %v: a membership UPDATE queued %d rows", queue, n)
	}
}

// pct returns the p-th percentile of ds in µs.
func pct(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p / 100 * float64(len(s)-1))
	return float64(s[i].Nanoseconds()) / 1e3
}
