package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/orgperm/orgperm/internal/pgcluster"
)

// machine describes where the numbers were measured.
type machine struct {
	CPUs     int
	CPUModel string
	GOOS     string
	GOARCH   string
	Go       string
	Postgres string
	Redis    string
	Date     time.Time
}

// database is the migrated database every strategy reads, and what it takes
// to remove it.
type database struct {
	URL      string
	adminURL string             // the server's maintenance database
	cluster  *pgcluster.Cluster // the throwaway cluster, if any (no DATABASE_URL)
	name     string
}

// openDatabase creates a fresh migrated database: on the server DATABASE_URL
// names when it is set (its user needs CREATEDB), otherwise on a throwaway
// cluster started from the local PostgreSQL binaries.
func openDatabase(ctx context.Context) (*database, error) {
	db := &database{adminURL: os.Getenv("DATABASE_URL")}
	if db.adminURL == "" {
		c, err := pgcluster.Start()
		if err != nil {
			return nil, fmt.Errorf("postgres: %w; or set DATABASE_URL", err)
		}
		db.cluster, db.adminURL = c, c.URL
	}
	name, url, err := pgcluster.NewMigrated(ctx, db.adminURL)
	if err != nil {
		if db.cluster != nil {
			_ = db.cluster.Close()
		}
		return nil, fmt.Errorf("postgres: %w", err)
	}
	db.URL, db.name = url, name
	return db, nil
}

// Close drops the database and stops the throwaway cluster, if any.
func (db *database) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := pgcluster.DropDatabase(ctx, db.adminURL, db.name)
	if db.cluster != nil {
		if cerr := db.cluster.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// redisServer is the Redis the seed's default strategy uses: one already
// listening at the requested address, or one this program started.
type redisServer struct {
	Addr    string
	Started bool // started by this program, stopped by Close
	cmd     *exec.Cmd
	exited  chan struct{}
	dir     string
}

// quietLogger drops go-redis's internal log lines (dial failures while
// probing for a server); errors reach the caller as values anyway.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

func init() { redis.SetLogger(quietLogger{}) }

// openRedis returns a Redis at addr when one answers PING there. Otherwise
// it starts redis-server (no persistence) on a free port of 127.0.0.1, and
// fails with a message saying what to install when there is no redis-server.
func openRedis(ctx context.Context, addr string) (*redisServer, error) {
	if pingRedis(ctx, addr, time.Second) == nil {
		return &redisServer{Addr: addr}, nil
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis: nothing answers at %s and redis-server is not installed; "+
			"install it (apt-get install -y redis-server, brew install redis) or pass -redis host:port", addr)
	}
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	dir, err := os.MkdirTemp("", "orgperm-bench-redis-")
	if err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	rs := &redisServer{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Started: true, dir: dir, exited: make(chan struct{})}
	rs.cmd = exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir, "--logfile", dir+"/redis.log")
	rs.cmd.SysProcAttr = redisProcAttr() // proc_*.go
	if err := rs.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("redis: start %s: %w", bin, err)
	}
	go func() { _ = rs.cmd.Wait(); close(rs.exited) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := pingRedis(ctx, rs.Addr, 200*time.Millisecond)
		if err == nil {
			return rs, nil
		}
		select {
		case <-rs.exited:
			log, _ := os.ReadFile(dir + "/redis.log")
			os.RemoveAll(dir)
			return nil, fmt.Errorf("redis: redis-server exited during start-up:\n%s", strings.TrimSpace(string(log)))
		case <-ctx.Done():
			rs.Close()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			rs.Close()
			return nil, fmt.Errorf("redis: redis-server on %s did not answer within 10s: %v", rs.Addr, err)
		}
	}
}

// Close stops a redis-server this program started; it leaves any other
// alone.
func (rs *redisServer) Close() error {
	if !rs.Started {
		return nil
	}
	defer os.RemoveAll(rs.dir)
	_ = rs.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-rs.exited:
		return nil
	case <-time.After(10 * time.Second):
		_ = rs.cmd.Process.Kill()
		<-rs.exited
		return errors.New("redis: redis-server did not stop within 10s; killed it")
	}
}

func pingRedis(ctx context.Context, addr string, timeout time.Duration) error {
	c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: timeout, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return c.Ping(ctx).Err()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// describeMachine gathers the versions and the CPU the run measured on.
func describeMachine(ctx context.Context, pgURL string, rdb *redis.Client) (machine, error) {
	m := machine{
		CPUs:     runtime.NumCPU(),
		CPUModel: cpuModel(),
		GOOS:     runtime.GOOS,
		GOARCH:   runtime.GOARCH,
		Go:       runtime.Version(),
		Date:     time.Now().UTC(),
	}
	conn, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		return m, fmt.Errorf("postgres: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := conn.QueryRow(ctx, "SHOW server_version").Scan(&m.Postgres); err != nil {
		return m, fmt.Errorf("postgres: server_version: %w", err)
	}
	info, err := rdb.Info(ctx, "server").Result()
	if err != nil {
		return m, fmt.Errorf("redis: INFO server: %w", err)
	}
	m.Redis = infoField(info, "redis_version")
	return m, nil
}

// cpuModel returns the CPU's model name on Linux, or "" elsewhere.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// loadAverage returns the 1-minute load average on Linux, or "".
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// infoField returns the value of field in the text of a Redis INFO reply.
func infoField(info, field string) string {
	for _, line := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && k == field {
			return v
		}
	}
	return ""
}
