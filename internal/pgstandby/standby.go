package pgstandby

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
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orgperm/orgperm/internal/runas"
)

var (
	// ErrNoBinaries is returned by Start when no pg_basebackup and postgres
	// can be found.
	ErrNoBinaries = errors.New("pgstandby: no PostgreSQL binaries (pg_basebackup) on PATH or under /usr/lib/postgresql/*/bin")

	// ErrInvalidConfig is matched (errors.Is) by every configuration error.
	ErrInvalidConfig = errors.New("pgstandby: invalid config")
)

// Config configures a throwaway standby. Its zero value means "defaults",
// except PrimaryURL, which is required.
type Config struct {
	// PrimaryURL is a connection string for the primary, as a user allowed
	// to replicate (a superuser). Its host and port must be reachable by
	// TCP. Required.
	PrimaryURL string

	// ApplyDelay is recovery_min_apply_delay: the standby applies a commit
	// no sooner than this after the primary committed it (WAL is still
	// received at once). Defaults to 0: no delay.
	ApplyDelay time.Duration

	// BinDir holds pg_basebackup and postgres. Defaults to the directory
	// of pg_basebackup on PATH, or /usr/lib/postgresql/<major>/bin with the
	// primary's major version first.
	BinDir string

	// StartTimeout bounds the base backup and the start. Defaults to 2
	// minutes.
	StartTimeout time.Duration
}

func configError(field, reason string) error {
	return fmt.Errorf("%w: %s %s", ErrInvalidConfig, field, reason)
}

// Standby is a running throwaway streaming standby.
type Standby struct {
	// Host and Port are where the standby listens for TCP connections.
	Host string
	Port int

	user    string
	dir     string // temp dir holding data/, the socket and the log
	cmd     *exec.Cmd
	exited  chan struct{}
	closeMu sync.Once
	err     error
}

// TB is the part of testing.TB that StartTB needs (this package does not
// import testing, so that programs linking it stay free of it).
type TB interface {
	Helper()
	Skip(args ...any)
	Fatal(args ...any)
	Error(args ...any)
	Cleanup(func())
}

// StartTB is Start for a test: the standby is closed when the test ends,
// and the test is skipped where none can be made here (ErrNoBinaries: no
// pg_basebackup of the primary's major version). It waits at most two
// minutes.
func StartTB(tb TB, cfg Config) *Standby {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sb, err := Start(ctx, cfg)
	if err != nil {
		if errors.Is(err, ErrNoBinaries) {
			tb.Skip(err)
		}
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := sb.Close(); err != nil {
			tb.Error(err)
		}
	})
	return sb
}

// Start copies the primary that cfg names and starts a hot standby on the
// copy. The caller must Close it.
func Start(ctx context.Context, cfg Config) (*Standby, error) {
	if cfg.PrimaryURL == "" {
		return nil, configError("PrimaryURL", "is required")
	}
	if cfg.ApplyDelay < 0 {
		return nil, configError("ApplyDelay", "must not be negative")
	}
	if cfg.StartTimeout < 0 {
		return nil, configError("StartTimeout", "must not be negative")
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 2 * time.Minute
	}
	pcfg, err := pgx.ParseConfig(cfg.PrimaryURL)
	if err != nil {
		return nil, configError("PrimaryURL", err.Error())
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()

	// Hot standby refuses to start with fewer connections (and a few more
	// settings) than the primary: copy them.
	settings, major, err := primarySettings(ctx, cfg.PrimaryURL)
	if err != nil {
		return nil, err
	}
	bin := cfg.BinDir
	if bin == "" {
		if bin, err = findBinDir(major); err != nil {
			return nil, err
		}
	}
	cred, err := runas.Unprivileged("PostgreSQL")
	if err != nil {
		return nil, fmt.Errorf("pgstandby: %w", err)
	}
	dir, err := os.MkdirTemp("", "orgperm-standby-")
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(dir)
		}
	}()
	if err := runas.GiveTo(dir, cred); err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	bb := exec.CommandContext(ctx, filepath.Join(bin, "pg_basebackup"),
		"-h", pcfg.Host, "-p", strconv.Itoa(int(pcfg.Port)), "-U", pcfg.User,
		"-D", data, "-X", "stream", "-R", "--no-sync", "-c", "fast", "-w")
	runas.Prepare(bb, cred, 0)
	if out, err := bb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("pgstandby: pg_basebackup: %w\n%s", err, bytes.TrimSpace(out))
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &Standby{Host: "127.0.0.1", Port: port, user: pcfg.User, dir: dir}
	args := []string{"-D", data, "-k", dir, "-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "hot_standby=on",
		"-c", "fsync=off",
		"-c", "full_page_writes=off",
		"-c", "recovery_min_apply_delay=" + strconv.FormatInt(cfg.ApplyDelay.Milliseconds(), 10) + "ms",
		// Report replay progress to the primary often (pg_stat_replication).
		"-c", "wal_receiver_status_interval=1s",
	}
	for _, kv := range settings {
		args = append(args, "-c", kv)
	}
	logf, err := os.OpenFile(s.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(bin, "postgres"), args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Where the platform allows, the kernel stops the standby if this
	// process dies without cleaning up (proc_linux.go).
	runas.Prepare(cmd, cred, syscall.SIGQUIT) // immediate shutdown if this process dies
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("pgstandby: start postgres: %w", err)
	}
	s.cmd, s.exited = cmd, make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(s.exited)
	}()
	if err := s.awaitRecovery(ctx); err != nil {
		_ = s.stop()
		return nil, err
	}
	ok = true
	return s, nil
}

// primarySettings reads the settings a hot standby must not set lower than
// its primary, and those a promoted one needs to serve as its primary did
// (wal_level and max_replication_slots: logical decoding), as
// "name=value", and the primary's major version.
func primarySettings(ctx context.Context, primaryURL string) ([]string, int, error) {
	conn, err := pgx.Connect(ctx, primaryURL)
	if err != nil {
		return nil, 0, fmt.Errorf("pgstandby: connect to the primary: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, `SELECT name, setting FROM pg_catalog.pg_settings
		WHERE name IN ('max_connections', 'max_worker_processes', 'max_wal_senders',
		               'max_prepared_transactions', 'max_locks_per_transaction',
		               'wal_level', 'max_replication_slots')
		ORDER BY name`)
	if err != nil {
		return nil, 0, fmt.Errorf("pgstandby: read the primary's settings: %w", err)
	}
	var out []string
	for rows.Next() {
		var name, value string
		if err := rows.Scan(&name, &value); err != nil {
			return nil, 0, fmt.Errorf("pgstandby: read the primary's settings: %w", err)
		}
		out = append(out, name+"="+value)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("pgstandby: read the primary's settings: %w", err)
	}
	var num int
	if err := conn.QueryRow(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&num); err != nil {
		return nil, 0, fmt.Errorf("pgstandby: read the primary's version: %w", err)
	}
	return out, num / 10000, nil
}

// awaitRecovery waits until the standby accepts connections and says it is
// in recovery.
func (s *Standby) awaitRecovery(ctx context.Context) error {
	url := s.ConnString("postgres")
	var lastErr error
	for delay := 5 * time.Millisecond; ; delay = min(delay*2, 200*time.Millisecond) {
		conn, err := pgx.Connect(ctx, url)
		if err == nil {
			var rec bool
			err = conn.QueryRow(ctx, `SELECT pg_catalog.pg_is_in_recovery()`).Scan(&rec)
			conn.Close(context.WithoutCancel(ctx))
			if err == nil && !rec {
				return errors.New("pgstandby: the copy is not in recovery (no standby.signal?)")
			}
			if err == nil {
				return nil
			}
		}
		lastErr = err
		t := time.NewTimer(delay)
		select {
		case <-s.exited:
			t.Stop()
			return fmt.Errorf("pgstandby: postgres exited during start-up:\n%s", s.logTail())
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("pgstandby: standby did not accept connections: %v (%w)\n%s", lastErr, ctx.Err(), s.logTail())
		case <-t.C:
		}
	}
}

// ConnString returns a connection string for database on the standby, as
// the primary's user.
func (s *Standby) ConnString(database string) string {
	u := url.URL{Scheme: "postgres", User: url.User(s.user), Host: net.JoinHostPort(s.Host, strconv.Itoa(s.Port)),
		Path: "/" + database, RawQuery: "sslmode=disable"}
	return u.String()
}

// ConnStringFor returns primaryURL with its host and port replaced by the
// standby's: the same database and options, on the standby.
func (s *Standby) ConnStringFor(primaryURL string) (string, error) {
	u, err := url.Parse(primaryURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", fmt.Errorf("%w: not a postgres:// URL", ErrInvalidConfig)
	}
	u.Host = net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
	return u.String(), nil
}

// ReplayLSN returns the standby's replay position (pg_last_wal_replay_lsn)
// as text.
func (s *Standby) ReplayLSN(ctx context.Context) (string, error) {
	conn, err := pgx.Connect(ctx, s.ConnString("postgres"))
	if err != nil {
		return "", err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var lsn string
	err = conn.QueryRow(ctx, `SELECT pg_catalog.pg_last_wal_replay_lsn()::text`).Scan(&lsn)
	return lsn, err
}

// WaitReplay returns once the standby has replayed the WAL up to lsn (text
// form, as pg_current_wal_insert_lsn() returns it on the primary), or ctx
// is done.
func (s *Standby) WaitReplay(ctx context.Context, lsn string) error {
	conn, err := pgx.Connect(ctx, s.ConnString("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for delay := time.Millisecond; ; delay = min(2*delay, 50*time.Millisecond) {
		var ok bool
		if err := conn.QueryRow(ctx, `SELECT pg_catalog.pg_last_wal_replay_lsn() >= $1::text::pg_lsn`, lsn).Scan(&ok); err != nil {
			return err
		}
		if ok {
			return nil
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Promote makes the standby a primary (pg_promote, waiting for the end of
// recovery) and returns once it accepts writes. What it had received of
// the WAL it replays first; the rest of the old primary's commits are lost
// (asynchronous replication), as are its unlogged tables' rows (reset from
// their init forks). It keeps its host and port.
func (s *Standby) Promote(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, s.ConnString("postgres"))
	if err != nil {
		return fmt.Errorf("pgstandby: promote: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var done bool
	if err := conn.QueryRow(ctx, `SELECT pg_catalog.pg_promote(true, 60)`).Scan(&done); err != nil {
		return fmt.Errorf("pgstandby: promote: %w", err)
	}
	if !done {
		return fmt.Errorf("pgstandby: promote: still in recovery after 60 s\n%s", s.logTail())
	}
	var rec bool
	if err := conn.QueryRow(ctx, `SELECT pg_catalog.pg_is_in_recovery()`).Scan(&rec); err != nil {
		return fmt.Errorf("pgstandby: promote: %w", err)
	}
	if rec {
		return errors.New("pgstandby: promote: pg_promote returned, but the server is still in recovery")
	}
	return nil
}

// Close stops the standby (fast shutdown) and removes its files. It is
// idempotent.
func (s *Standby) Close() error {
	s.closeMu.Do(func() {
		s.err = s.stop()
		if err := os.RemoveAll(s.dir); s.err == nil {
			s.err = err
		}
	})
	return s.err
}

func (s *Standby) stop() error {
	_ = s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.exited:
		return nil
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Signal(syscall.SIGQUIT)
		<-s.exited
		return errors.New("pgstandby: postgres did not stop within 30s; sent SIGQUIT")
	}
}

func (s *Standby) logPath() string { return filepath.Join(s.dir, "postgres.log") }

func (s *Standby) logTail() string {
	b, _ := os.ReadFile(s.logPath())
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(bytes.TrimSpace(b))
}

// findBinDir finds a directory with pg_basebackup and postgres: that of
// pg_basebackup on PATH, or one under /usr/lib/postgresql/*/bin (major
// first, then newest first).
func findBinDir(major int) (string, error) {
	has := func(d string) bool {
		for _, name := range []string{"pg_basebackup", "postgres"} {
			if _, err := os.Stat(filepath.Join(d, name)); err != nil {
				return false
			}
		}
		return true
	}
	// ORGPERM_PG_BIN (the PostgreSQL matrix) names the primary's binaries:
	// use them, or none (a standby must run the primary's major version).
	if d := os.Getenv("ORGPERM_PG_BIN"); d != "" {
		if has(d) {
			return d, nil
		}
		return "", ErrNoBinaries
	}
	// On PATH, pg_basebackup may be a wrapper (Debian's pg_wrapper) with no
	// postgres beside it: then look further.
	if p, err := exec.LookPath("pg_basebackup"); err == nil && has(filepath.Dir(p)) && versionOf(filepath.Dir(p)) == major {
		return filepath.Dir(p), nil
	}
	var dirs []string
	for _, pattern := range []string{"/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin", "/usr/local/pgsql/bin"} {
		m, _ := filepath.Glob(pattern)
		dirs = append(dirs, m...)
	}
	rank := func(d string) int {
		v := versionOf(d)
		if v == major {
			return 1 << 20
		}
		return v
	}
	sort.Slice(dirs, func(i, j int) bool { return rank(dirs[i]) > rank(dirs[j]) })
	for _, d := range dirs {
		if has(d) && versionOf(d) == major {
			return d, nil
		}
	}
	return "", ErrNoBinaries
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

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
