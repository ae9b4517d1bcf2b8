package pgcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orgperm/orgperm/internal/runas"
)

// Cluster is a throwaway PostgreSQL cluster run from the local binaries.
type Cluster struct {
	// URL is a connection string for the cluster's maintenance database as
	// the superuser postgres (trust authentication, over TCP).
	URL string

	// Host and Port are where the cluster listens for TCP connections.
	Host string
	Port int

	binDir  string
	env     []string // the environment of the server's processes; nil: this process's
	baseDir string   // temp dir holding data/, the socket and the log
	cred    runas.Who

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// ErrNoBinaries is matched (errors.Is) by the error of [Start] and
// [FindBinDir] when no PostgreSQL binaries can be found.
var ErrNoBinaries = errors.New("pgcluster: no PostgreSQL binaries")

// TB is the part of testing.TB that [StartTB] uses. The package does not
// import testing: programs (cmd/demo, cmd/soak, bench) link it.
type TB interface {
	Helper()
	Skipf(format string, args ...any)
	Fatalf(format string, args ...any)
	Errorf(format string, args ...any)
	Cleanup(func())
}

// StartTB starts a cluster of the test's own, stopped when the test ends,
// for tests that restart or cut their server. It skips the test when there
// are no local binaries.
func StartTB(tb TB) *Cluster {
	tb.Helper()
	if _, err := FindBinDir(); err != nil {
		tb.Skipf("%v", err)
	}
	c, err := Start()
	if err != nil {
		tb.Fatalf("%v", err)
	}
	tb.Cleanup(func() {
		if err := c.Close(); err != nil {
			tb.Errorf("%v", err)
		}
	})
	return c
}

// BinEnv names the environment variable that, when set, is the directory
// holding the PostgreSQL binaries (initdb, postgres) that throwaway clusters
// are started from, before any search of PATH or the usual install
// directories. scripts/test-pg.sh sets it to run the suite on another
// PostgreSQL version.
const BinEnv = "ORGPERM_PG_BIN"

// FindBinDir finds the PostgreSQL binaries: $ORGPERM_PG_BIN, else initdb on
// PATH, else under /usr/lib/postgresql/*/bin (Debian and Ubuntu),
// /usr/pgsql-*/bin (RHEL) or /usr/local/pgsql/bin, newest major version
// first.
func FindBinDir() (string, error) {
	initdb := "initdb" + exeSuffix()
	if dir := os.Getenv(BinEnv); dir != "" {
		if _, err := os.Stat(filepath.Join(dir, initdb)); err != nil {
			return "", fmt.Errorf("%s=%s: no %s there: %w", BinEnv, dir, initdb, err)
		}
		return dir, nil
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	var dirs []string
	for _, pattern := range []string{"/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin", "/usr/local/pgsql/bin"} {
		m, _ := filepath.Glob(pattern)
		dirs = append(dirs, m...)
	}
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, initdb)); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("%w (initdb) in $%s, on PATH or under /usr/lib/postgresql/*/bin; install PostgreSQL or set %s", ErrNoBinaries, BinEnv, BinEnv)
}

// serverEnv returns the environment to run the binaries of bin with: when
// they come from $ORGPERM_PG_BIN and a lib directory sits beside it (the
// layout of the binaries scripts/pg-fetch.sh fetches), that directory goes
// first on LD_LIBRARY_PATH, for these processes only: the test binary and
// the programs it runs (psql, say) keep their own libraries. Otherwise nil:
// the environment of this process.
func serverEnv(bin string) []string {
	if os.Getenv(BinEnv) == "" {
		return nil
	}
	lib := filepath.Join(filepath.Dir(bin), "lib")
	if fi, err := os.Stat(lib); err != nil || !fi.IsDir() {
		return nil
	}
	if old := os.Getenv("LD_LIBRARY_PATH"); old != "" {
		lib += string(os.PathListSeparator) + old
	}
	return append(os.Environ(), "LD_LIBRARY_PATH="+lib)
}

// exeSuffix is the file name suffix of programs on this platform.
func exeSuffix() string {
	if runtime.GOOS == "windows" {
		return ".exe"
	}
	return ""
}

func versionOf(dir string) int {
	for _, part := range strings.Split(dir, string(filepath.Separator)) {
		part = strings.TrimPrefix(part, "pgsql-")
		if n, err := strconv.Atoi(part); err == nil {
			return n
		}
	}
	return 0
}

// Start starts a throwaway cluster from the local PostgreSQL binaries (see
// the package documentation) and returns once it accepts connections. The
// caller must Close it.
func Start() (*Cluster, error) {
	bin, err := FindBinDir()
	if err != nil {
		return nil, err
	}
	cred, err := runas.Unprivileged("PostgreSQL")
	if err != nil {
		return nil, err
	}
	scratch := scratchDir()
	if scratch != "" {
		sweep(scratch) // what killed runs left in memory
	}
	dir, err := os.MkdirTemp(scratch, "orgperm-pg-")
	if err != nil {
		return nil, err
	}
	if err := runas.GiveTo(dir, cred); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	c := &Cluster{binDir: bin, env: serverEnv(bin), baseDir: dir, cred: cred, Host: "127.0.0.1"}
	if err := c.initData(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if c.Port, err = freePort(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	c.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.Port)
	if err := c.start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return c, nil
}

func (c *Cluster) dataDir() string { return filepath.Join(c.baseDir, "data") }
func (c *Cluster) logPath() string { return filepath.Join(c.baseDir, "postgres.log") }

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// start runs postgres as a child of this process. Settings favour speed over
// durability: this is a throwaway cluster.
func (c *Cluster) start() error {
	logf, err := os.OpenFile(c.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(c.binDir, "postgres"),
		"-D", c.dataDir(),
		"-k", c.baseDir,
		"-p", strconv.Itoa(c.Port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		"-c", "max_connections=300",
		"-c", "shared_buffers=128MB",
		// The wal transport (orgperm.set_transport('wal')) decodes the
		// WAL through a logical replication slot.
		"-c", "wal_level=logical",
		"-c", "max_replication_slots=64",
		"-c", "max_wal_senders=32",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	// On Linux the kernel stops the cluster if the test binary dies
	// without cleaning up (proc_linux.go).
	cmd.Env = c.env
	runas.Prepare(cmd, c.cred, syscall.SIGQUIT) // immediate shutdown if this process dies
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start postgres: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(exited)
	}()
	c.mu.Lock()
	c.cmd, c.exited = cmd, exited
	c.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for delay := 5 * time.Millisecond; ; delay = min(delay*2, 200*time.Millisecond) {
		conn, err := pgx.Connect(ctx, c.URL)
		if err == nil {
			conn.Close(ctx)
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("postgres exited during start-up:\n%s", c.logTail())
		case <-ctx.Done():
			return fmt.Errorf("postgres did not accept connections within 60s: %v\n%s", err, c.logTail())
		case <-time.After(delay):
		}
	}
}

func (c *Cluster) logTail() string {
	b, _ := os.ReadFile(c.logPath())
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(bytes.TrimSpace(b))
}

// detach takes the running server's process from c, so that one caller
// stops it; nil when none runs. exited is closed once it has exited.
func (c *Cluster) detach() (cmd *exec.Cmd, exited chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cmd, exited = c.cmd, c.exited
	c.cmd = nil
	return cmd, exited
}

// stop shuts the cluster down (fast shutdown: clients are disconnected).
func (c *Cluster) stop() error {
	cmd, exited := c.detach()
	if cmd == nil {
		return nil
	}
	_ = interrupt(c, cmd.Process)
	select {
	case <-exited:
		return nil
	case <-time.After(30 * time.Second):
		_ = quit(cmd.Process)
		<-exited
		return errors.New("postgres did not stop within 30s; sent SIGQUIT")
	}
}

// Crash stops the server with an immediate shutdown (SIGQUIT: no
// checkpoint, backends killed, unlogged tables reset if it starts again),
// as a crash or a failover would, and returns once it has exited. The
// files stay until Close.
func (c *Cluster) Crash() error {
	cmd, exited := c.detach()
	if cmd == nil {
		return nil
	}
	if err := quit(cmd.Process); err != nil {
		return fmt.Errorf("pgcluster: crash: %w", err)
	}
	<-exited
	return nil
}

// Restart stops the cluster and starts it again on the same port and data
// directory, which drops every connection, and returns once it accepts
// connections again.
func (c *Cluster) Restart() error {
	if err := c.stop(); err != nil {
		return fmt.Errorf("pgcluster: restart: %w", err)
	}
	if err := c.start(); err != nil {
		return fmt.Errorf("pgcluster: restart: %w", err)
	}
	return nil
}

// Close stops the cluster and removes its files.
func (c *Cluster) Close() error {
	err := c.stop()
	if rmErr := os.RemoveAll(c.baseDir); err == nil {
		err = rmErr
	}
	return err
}
