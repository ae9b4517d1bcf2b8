package pgtest

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orgperm/orgperm/internal/pgcluster"
)

// URLEnv names the environment variable that, when set, is the connection
// string of the PostgreSQL server tests use instead of a throwaway cluster.
// Its user needs the right to create databases.
const URLEnv = "TEST_DATABASE_URL"

// An Option configures [Run] or [NewServer].
type Option func(*options)

type options struct {
	migrations fs.FS
	migrate    func(ctx context.Context, db *sql.DB) error
	after      []func() error
}

func buildOptions(opts []Option) options {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// WithMigrations puts the app's own migrations in the template every new
// database is copied from: they run after orgperm's, once per template.
// fsys holds them; the names and contents of its files go into the
// template's name, so a changed migration makes a new template (on a
// [URLEnv] server, the old one stays). migrate applies them to the
// template; nil means goose, with the SQL files at the root of fsys and
// goose's default version table, goose_db_version. A migrate function must
// apply what fsys holds and nothing else: it is not part of the template's
// name.
//
//	//go:embed migrations/*.sql
//	var appMigrations embed.FS
//
//	func TestMain(m *testing.M) {
//		sub, _ := fs.Sub(appMigrations, "migrations")
//		os.Exit(pgtest.Run(m, pgtest.WithMigrations(sub, nil)))
//	}
func WithMigrations(fsys fs.FS, migrate func(ctx context.Context, db *sql.DB) error) Option {
	return func(o *options) { o.migrations, o.migrate = fsys, migrate }
}

// After runs check once the tests have passed (a goroutine leak check,
// say): an error fails the run. It is an option of [Run] only.
//
//	os.Exit(pgtest.Run(m, pgtest.After(func() error { return goleak.Find() })))
func After(check func() error) Option {
	return func(o *options) { o.after = append(o.after, check) }
}

var (
	sharedOnce sync.Once
	shared     *Server
	sharedErr  error
	sharedOpts options
)

// Run runs the tests of m with opts applied to the shared server, stops the
// shared throwaway cluster if one was started, and then, if the tests
// passed, runs the checks of [After]. Call it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }
func Run(m *testing.M, opts ...Option) int {
	sharedOpts = buildOptions(opts)
	code := m.Run()
	if shared != nil && shared.cluster != nil {
		if err := shared.cluster.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	for _, check := range sharedOpts.after {
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

// Shared returns the server of this test binary: the one [URLEnv] names
// when it is set, otherwise a throwaway cluster started on first use and
// stopped by [Run]. It fails tb when no server can be had.
func Shared(tb testing.TB) *Server {
	tb.Helper()
	s, err := sharedServer()
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	return s
}

func sharedServer() (*Server, error) {
	sharedOnce.Do(func() {
		if url := os.Getenv(URLEnv); url != "" {
			if _, err := pgx.ParseConfig(url); err != nil {
				sharedErr = fmt.Errorf("%s: %w", URLEnv, err)
				return
			}
			shared = NewServer(url)
			shared.opts = sharedOpts
			return
		}
		c, err := pgcluster.Start()
		if err != nil {
			sharedErr = fmt.Errorf("%w; or set %s", err, URLEnv)
			return
		}
		shared = NewServer(c.URL)
		shared.opts, shared.cluster = sharedOpts, c
	})
	return shared, sharedErr
}

// Server is a PostgreSQL server that tests create databases on.
type Server struct {
	// URL is a connection string for the server's maintenance database,
	// with the right to create and drop databases.
	URL string

	cluster *pgcluster.Cluster // the throwaway cluster of the shared server, if any
	opts    options

	tmplMu  sync.Mutex
	tmpl    string
	tmplErr error
}

// NewServer returns a Server on the PostgreSQL that url reaches (its user
// needs the right to create databases), for tests that need one besides
// the shared server, with its own options ([WithMigrations]; [After] is
// ignored here). Nothing is started or stopped, nor connected yet: a bad
// url fails the first test that asks s for a database.
func NewServer(url string, opts ...Option) *Server {
	o := buildOptions(opts)
	o.after = nil
	return &Server{URL: url, opts: o}
}

// NewDatabase creates a fresh database on the shared server, copied from
// the template (orgperm's migrations, and the app's: [WithMigrations]), and
// returns its connection string. The database is dropped when the test
// ends.
func NewDatabase(tb testing.TB) string {
	tb.Helper()
	return Shared(tb).NewDatabase(tb)
}

// NewPool returns a pool on a fresh database of the shared server
// ([NewDatabase]), closed when the test ends.
func NewPool(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	return Shared(tb).NewPool(tb)
}

// CreateDatabase is [NewDatabase] for code that has no testing.TB, such as
// Example functions: it creates a fresh database on the shared server and
// returns its connection string and a function that drops it.
func CreateDatabase(ctx context.Context) (url string, drop func() error, err error) {
	s, err := sharedServer()
	if err != nil {
		return "", nil, fmt.Errorf("pgtest: %w", err)
	}
	return s.CreateDatabase(ctx)
}
