package pgtest

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
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Server is a PostgreSQL server that tests create databases on: either the
// one DATABASE_URL names, or a throwaway cluster this package started from
// the local binaries.
type Server struct {
	// URL is a connection string for the server's maintenance database, with
	// the rights to create and drop databases.
	URL string

	// Host and Port are where the server listens for TCP connections.
	Host string
	Port int

	owned   bool // a throwaway cluster this package started
	binDir  string
	env     []string // the environment of the server's processes; nil: this process's
	baseDir string   // temp dir holding data/, the socket and the log
	cred    runAs

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	tmplErr error
	tmpl    string
	tmplMu  sync.Mutex
}

var (
	sharedOnce sync.Once
	shared     *Server
	sharedErr  error
)

// Shared returns the server of this test binary: the one DATABASE_URL names
// when it is set, otherwise a throwaway cluster started on first use and
// stopped by [Run]. It fails tb when no server can be had.
func Shared(tb testing.TB) *Server {
	tb.Helper()
	s, err := SharedServer()
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	return s
}

// SharedServer is Shared for code that has no testing.TB, such as Example
// functions: it returns the test binary's server, which [Run] stops.
func SharedServer() (*Server, error) {
	sharedOnce.Do(func() {
		if url := os.Getenv("DATABASE_URL"); url != "" {
			shared, sharedErr = external(url)
			return
		}
		shared, sharedErr = startCluster()
	})
	return shared, sharedErr
}

// StartServer starts a throwaway cluster of the test's own, stopped when the
// test ends, for tests that restart or cut their server. It needs the local
// PostgreSQL binaries even when DATABASE_URL is set, and skips the test when
// there are none.
func StartServer(tb testing.TB) *Server {
	tb.Helper()
	if _, err := findBinDir(); err != nil {
		tb.Skipf("pgtest: %v", err)
	}
	s, err := startCluster()
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("pgtest: %v", err)
		}
	})
	return s
}

// Start starts a throwaway cluster from the local PostgreSQL binaries, for
// programs that are not tests (a demo, a benchmark driver). The caller must
// Close it.
func Start() (*Server, error) { return startCluster() }

// Run runs the tests of m, stops the shared throwaway cluster if one was
// started, and then, if the tests passed, runs each of after (a goroutine
// leak check, say): an error from one fails the run. Call it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }
//	func TestMain(m *testing.M) { os.Exit(pgtest.Run(m, func() error { return goleak.Find() })) }
func Run(m *testing.M, after ...func() error) int {
	code := m.Run()
	if shared != nil {
		if err := shared.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	for _, check := range after {
		if code != 0 {
			break
		}
		if err := check(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: after the tests: %v\n", err)
			code = 1
		}
	}
	return code
}

func external(url string) (*Server, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	return &Server{URL: url, Host: cfg.Host, Port: int(cfg.Port)}, nil
}

// binEnv names the environment variable that, when set, is the directory
// holding the PostgreSQL binaries (initdb, postgres) that throwaway clusters
// are started from, before any search of PATH or the usual install
// directories. scripts/test-pg.sh sets it to run the suite on another
// PostgreSQL version.
const binEnv = "ORGPERM_PG_BIN"

// findBinDir finds the PostgreSQL binaries: $ORGPERM_PG_BIN, else initdb on
// PATH, else under /usr/lib/postgresql/*/bin (Debian and Ubuntu),
// /usr/pgsql-*/bin (RHEL) or /usr/local/pgsql/bin, newest major version
// first.
func findBinDir() (string, error) {
	initdb := "initdb"
	if runtime.GOOS == "windows" {
		initdb += ".exe"
	}
	if dir := os.Getenv(binEnv); dir != "" {
		if _, err := os.Stat(filepath.Join(dir, initdb)); err != nil {
			return "", fmt.Errorf("%s=%s: no %s there: %w", binEnv, dir, initdb, err)
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
	return "", errors.New("no PostgreSQL binaries (initdb) in $" + binEnv + ", on PATH or under /usr/lib/postgresql/*/bin; install PostgreSQL, set " + binEnv + ", or set DATABASE_URL")
}

// serverEnv returns the environment to run the binaries of bin with: when
// they come from $ORGPERM_PG_BIN and a lib directory sits beside it (the
// layout of the binaries scripts/pg-fetch.sh fetches), that directory goes
// first on LD_LIBRARY_PATH, for these processes only: the test binary and
// the programs it runs (psql, say) keep their own libraries. Otherwise nil:
// the environment of this process.
func serverEnv(bin string) []string {
	if os.Getenv(binEnv) == "" {
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

func versionOf(dir string) int {
	for _, part := range strings.Split(dir, string(filepath.Separator)) {
		part = strings.TrimPrefix(part, "pgsql-")
		if n, err := strconv.Atoi(part); err == nil {
			return n
		}
	}
	return 0
}

func startCluster() (*Server, error) {
	bin, err := findBinDir()
	if err != nil {
		return nil, err
	}
	cred, err := unprivileged()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "orgperm-pg-")
	if err != nil {
		return nil, err
	}
	if err := giveTo(dir, cred); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s := &Server{owned: true, binDir: bin, env: serverEnv(bin), baseDir: dir, cred: cred, Host: "127.0.0.1"}
	initdb := exec.Command(filepath.Join(bin, "initdb"),
		"-D", s.dataDir(), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync")
	initdb.Env = s.env
	prepare(initdb, cred, false)
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	if s.Port, err = freePort(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.Port)
	if err := s.start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

func (s *Server) dataDir() string { return filepath.Join(s.baseDir, "data") }
func (s *Server) logPath() string { return filepath.Join(s.baseDir, "postgres.log") }

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
func (s *Server) start() error {
	logf, err := os.OpenFile(s.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(s.binDir, "postgres"),
		"-D", s.dataDir(),
		"-k", s.baseDir,
		"-p", strconv.Itoa(s.Port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		"-c", "max_connections=300",
		"-c", "shared_buffers=128MB",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	// On Linux the kernel stops the cluster if the test binary dies
	// without cleaning up (proc_linux.go).
	cmd.Env = s.env
	prepare(cmd, s.cred, true)
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
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for delay := 5 * time.Millisecond; ; delay = min(delay*2, 200*time.Millisecond) {
		conn, err := pgx.Connect(ctx, s.URL)
		if err == nil {
			conn.Close(ctx)
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("postgres exited during start-up:\n%s", s.logTail())
		case <-ctx.Done():
			return fmt.Errorf("postgres did not accept connections within 60s: %v\n%s", err, s.logTail())
		case <-time.After(delay):
		}
	}
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(s.logPath())
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(bytes.TrimSpace(b))
}

// stop shuts the cluster down (fast shutdown: clients are disconnected).
func (s *Server) stop() error {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = interrupt(s, cmd.Process)
	select {
	case <-exited:
		return nil
	case <-time.After(30 * time.Second):
		_ = quit(cmd.Process)
		<-exited
		return errors.New("postgres did not stop within 30s; sent SIGQUIT")
	}
}

// Restart stops the server and starts it again on the same port and data
// directory, which drops every connection. It is only for a server from
// [StartServer].
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	if !s.owned {
		tb.Fatalf("pgtest: Restart needs a throwaway server from StartServer")
	}
	if err := s.stop(); err != nil {
		tb.Fatalf("pgtest: restart: %v", err)
	}
	if err := s.start(); err != nil {
		tb.Fatalf("pgtest: restart: %v", err)
	}
}

// Close stops a throwaway cluster and removes its files. It does nothing
// for a server named by DATABASE_URL.
func (s *Server) Close() error {
	if !s.owned {
		return nil
	}
	err := s.stop()
	if rmErr := os.RemoveAll(s.baseDir); err == nil {
		err = rmErr
	}
	return err
}
