package pgbouncer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/orgperm/orgperm/internal/runas"
)

var (
	// ErrNotInstalled is returned by Start when no pgbouncer binary can be
	// found.
	ErrNotInstalled = errors.New("pgbouncer: not installed (apt-get install pgbouncer)")

	// ErrInvalidConfig is matched (errors.Is) by every configuration error.
	ErrInvalidConfig = errors.New("pgbouncer: invalid config")
)

// Config configures a throwaway PgBouncer. Its zero value means
// "defaults", except ServerHost and ServerPort, which are required.
type Config struct {
	// ServerHost and ServerPort are the PostgreSQL server PgBouncer connects
	// to (TCP). Required.
	ServerHost string
	ServerPort int

	// Users are the user names clients may connect as (auth "trust": no
	// password is checked, but PgBouncer still wants every user listed).
	// Defaults to ["postgres"].
	Users []string

	// PoolMode is PgBouncer's pool_mode: "transaction", "session" or
	// "statement". Defaults to "transaction".
	PoolMode string

	// PoolSize is default_pool_size: server connections per (database,
	// user). Defaults to 20.
	PoolSize int

	// Binary is the pgbouncer executable. Defaults to pgbouncer on PATH, or
	// /usr/sbin/pgbouncer.
	Binary string

	// StartTimeout bounds the wait for PgBouncer to accept connections.
	// Defaults to 30 seconds.
	StartTimeout time.Duration
}

func configError(field, reason string) error {
	return fmt.Errorf("%w: Config.%s %s", ErrInvalidConfig, field, reason)
}

func (cfg Config) resolve() (Config, error) {
	if cfg.ServerHost == "" {
		return cfg, configError("ServerHost", "is required")
	}
	if cfg.ServerPort <= 0 || cfg.ServerPort > 65535 {
		return cfg, configError("ServerPort", fmt.Sprintf("(%d) is not a TCP port", cfg.ServerPort))
	}
	if len(cfg.Users) == 0 {
		cfg.Users = []string{"postgres"}
	}
	for _, u := range cfg.Users {
		if u == "" || strings.ContainsAny(u, "\"\n\r\x00") {
			return cfg, configError("Users", fmt.Sprintf("holds %q: empty, or a character the userlist cannot hold", u))
		}
	}
	switch cfg.PoolMode {
	case "":
		cfg.PoolMode = "transaction"
	case "transaction", "session", "statement":
	default:
		return cfg, configError("PoolMode", fmt.Sprintf("is %q, want transaction, session or statement", cfg.PoolMode))
	}
	if cfg.PoolSize < 0 {
		return cfg, configError("PoolSize", "must not be negative")
	}
	if cfg.PoolSize == 0 {
		cfg.PoolSize = 20
	}
	if cfg.StartTimeout < 0 {
		return cfg, configError("StartTimeout", "must not be negative")
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 30 * time.Second
	}
	if strings.ContainsAny(cfg.ServerHost, " \n\r=\x00'") {
		return cfg, configError("ServerHost", fmt.Sprintf("%q is not a host name", cfg.ServerHost))
	}
	return cfg, nil
}

// Find returns the path of the pgbouncer binary: on PATH, or
// /usr/sbin/pgbouncer. The error is ErrNotInstalled.
func Find() (string, error) {
	if p, err := exec.LookPath("pgbouncer"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/sbin/pgbouncer"); err == nil {
		return "/usr/sbin/pgbouncer", nil
	}
	return "", ErrNotInstalled
}

// Bouncer is a running throwaway PgBouncer.
type Bouncer struct {
	// Host and Port are where it listens.
	Host string
	Port int

	dir    string
	cmd    *exec.Cmd
	exited chan struct{}
	once   sync.Once
	err    error
}

// Start starts a PgBouncer as cfg says and returns once it accepts
// connections, or an error with the tail of its log. ctx bounds the start
// only; the process runs until Close (or until this process dies: it is
// sent SIGTERM then).
func Start(ctx context.Context, cfg Config) (*Bouncer, error) {
	cfg, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	bin := cfg.Binary
	if bin == "" {
		if bin, err = Find(); err != nil {
			return nil, err
		}
	}
	cred, err := runas.Unprivileged("PgBouncer")
	if err != nil {
		return nil, fmt.Errorf("pgbouncer: %w", err)
	}
	dir, err := os.MkdirTemp("", "orgperm-pgbouncer-")
	if err != nil {
		return nil, fmt.Errorf("pgbouncer: %w", err)
	}
	b := &Bouncer{Host: "127.0.0.1", dir: dir, exited: make(chan struct{})}
	if err := b.start(ctx, cfg, bin, cred); err != nil {
		b.stop()
		os.RemoveAll(dir)
		return nil, err
	}
	return b, nil
}

func (b *Bouncer) start(ctx context.Context, cfg Config, bin string, cred runas.Who) error {
	port, err := freePort()
	if err != nil {
		return fmt.Errorf("pgbouncer: %w", err)
	}
	b.Port = port
	var users strings.Builder
	for _, u := range cfg.Users {
		fmt.Fprintf(&users, "%q \"\"\n", u)
	}
	ini := fmt.Sprintf(`[databases]
* = host=%s port=%d

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s
pool_mode = %s
default_pool_size = %d
max_client_conn = 2000
ignore_startup_parameters = extra_float_digits
logfile = %s
log_connections = 0
log_disconnections = 0
`, cfg.ServerHost, cfg.ServerPort, port, filepath.Join(b.dir, "userlist.txt"), cfg.PoolMode, cfg.PoolSize, b.logPath())
	for name, body := range map[string]string{"userlist.txt": users.String(), "pgbouncer.ini": ini} {
		if err := os.WriteFile(filepath.Join(b.dir, name), []byte(body), 0o644); err != nil {
			return fmt.Errorf("pgbouncer: %w", err)
		}
	}
	if err := runas.GiveTo(b.dir, cred); err != nil {
		return fmt.Errorf("pgbouncer: %w", err)
	}
	cmd := exec.Command(bin, filepath.Join(b.dir, "pgbouncer.ini"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	runas.Prepare(cmd, cred, syscall.SIGTERM) // as cred, in its own process group, stopped with this process on Linux
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pgbouncer: start %s: %w", bin, err)
	}
	b.cmd = cmd
	go func() {
		_ = cmd.Wait()
		close(b.exited)
	}()

	ctx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()
	addr := net.JoinHostPort(b.Host, strconv.Itoa(port))
	for delay := 5 * time.Millisecond; ; delay = min(2*delay, 200*time.Millisecond) {
		var d net.Dialer
		if c, err := d.DialContext(ctx, "tcp", addr); err == nil {
			c.Close()
			return nil
		}
		select {
		case <-b.exited:
			return fmt.Errorf("pgbouncer: exited during start-up:\n%s%s", out.String(), b.logTail())
		case <-ctx.Done():
			return fmt.Errorf("pgbouncer: not accepting connections on %s: %w\n%s", addr, ctx.Err(), b.logTail())
		case <-time.After(delay):
		}
	}
}

// ConnString returns a connection string for database dbname as user
// through the bouncer, with default_query_exec_mode=exec (see the package
// documentation).
func (b *Bouncer) ConnString(user, dbname string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(user),
		Host:     net.JoinHostPort(b.Host, strconv.Itoa(b.Port)),
		Path:     "/" + dbname,
		RawQuery: "sslmode=disable&default_query_exec_mode=exec",
	}
	return u.String()
}

// Close stops the bouncer (SIGINT: PgBouncer's immediate shutdown, closing
// every client connection) and removes its files. It is idempotent. If the
// bouncer had exited before, the error says so, with its log's tail.
func (b *Bouncer) Close() error {
	b.once.Do(func() {
		b.err = b.stop()
		if err := os.RemoveAll(b.dir); b.err == nil {
			b.err = err
		}
	})
	return b.err
}

func (b *Bouncer) stop() error {
	if b.cmd == nil {
		return nil
	}
	select {
	case <-b.exited:
		return fmt.Errorf("pgbouncer: exited before Close (%v):\n%s", b.cmd.ProcessState, b.logTail())
	default:
	}
	_ = interrupt(b.cmd.Process)
	select {
	case <-b.exited:
		return nil
	case <-time.After(10 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.exited
		return errors.New("pgbouncer: did not stop within 10s; killed")
	}
}

func (b *Bouncer) logPath() string { return filepath.Join(b.dir, "pgbouncer.log") }

func (b *Bouncer) logTail() string {
	out, _ := os.ReadFile(b.logPath())
	if len(out) > 4000 {
		out = out[len(out)-4000:]
	}
	return string(bytes.TrimSpace(out))
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
