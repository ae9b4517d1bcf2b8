package pgtest

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
	"github.com/pressly/goose/v3"

	"github.com/orgperm/orgperm/internal/pgcluster"
	"github.com/orgperm/orgperm/migrations"
)

// NewPool returns a pool on a fresh database of s ([Server.NewDatabase]),
// closed when the test ends.
func (s *Server) NewPool(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	pool, err := pgxpool.New(context.Background(), s.NewDatabase(tb))
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	tb.Cleanup(pool.Close)
	return pool
}

// NewDatabase creates a fresh database on s, copied from a template that
// holds orgperm's migrations (and the app's: [WithMigrations]), and returns
// its connection string. The database is dropped (WITH (FORCE)) when the
// test ends.
func (s *Server) NewDatabase(tb testing.TB) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	url, drop, err := s.CreateDatabase(ctx)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	tb.Cleanup(func() {
		if err := drop(); err != nil {
			tb.Errorf("%v", err)
		}
	})
	return url
}

// CreateDatabase is [Server.NewDatabase] for code that has no testing.TB:
// it returns the new database's connection string and a function that
// drops it.
func (s *Server) CreateDatabase(ctx context.Context) (url string, drop func() error, err error) {
	tmpl, err := s.template(ctx)
	if err != nil {
		return "", nil, fmt.Errorf("pgtest: template: %w", err)
	}
	name := pgcluster.RandomName("orgperm_test_")
	if err := pgcluster.Exec(ctx, s.URL, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", name, tmpl)); err != nil {
		return "", nil, fmt.Errorf("pgtest: create database: %w", err)
	}
	return s.ConnString(name), func() error { return s.drop(name) }, nil
}

// NewEmptyDatabase creates a database without any schema (no migrations),
// for tests of migrations themselves, and returns its connection string.
// It is dropped when the test ends.
func (s *Server) NewEmptyDatabase(tb testing.TB) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := pgcluster.RandomName("orgperm_empty_")
	if err := pgcluster.Exec(ctx, s.URL, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("pgtest: create database: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.drop(name); err != nil {
			tb.Errorf("%v", err)
		}
	})
	return s.ConnString(name)
}

// ConnString returns a connection string for database name on s.
func (s *Server) ConnString(name string) string { return pgcluster.ConnString(s.URL, name) }

func (s *Server) drop(name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := pgcluster.DropDatabase(ctx, s.URL, name); err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	return nil
}

// template returns the name of a database that holds the migrations,
// creating it once per Server. Its name carries a hash of the migrations,
// so a server shared by several test binaries ([URLEnv]) reuses it, and a
// changed migration gets a new one. An advisory lock serializes its
// creation across processes; a template half made by a crashed run is not
// marked IS_TEMPLATE and is made again.
func (s *Server) template(ctx context.Context) (string, error) {
	s.tmplMu.Lock()
	defer s.tmplMu.Unlock()
	if s.tmpl != "" || s.tmplErr != nil {
		return s.tmpl, s.tmplErr
	}
	hash, err := s.migrationsHash()
	if err != nil {
		s.tmplErr = err
		return "", err
	}
	name := "orgperm_tmpl_" + hash
	s.tmpl, s.tmplErr = name, s.makeTemplate(ctx, name)
	if s.tmplErr != nil {
		s.tmpl = ""
	}
	return s.tmpl, s.tmplErr
}

func (s *Server) makeTemplate(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, s.URL)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrations.LockID+1); err != nil {
		return err
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", migrations.LockID+1)

	var isTemplate *bool
	err = conn.QueryRow(ctx, "SELECT datistemplate FROM pg_database WHERE datname = $1", name).Scan(&isTemplate)
	if err == nil && *isTemplate {
		return nil
	}
	if err == nil {
		if _, err := conn.Exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)"); err != nil {
			return err
		}
	} else if !errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return err
	}
	db, err := sql.Open("pgx", s.ConnString(name))
	if err != nil {
		return err
	}
	err = s.migrate(ctx, db)
	db.Close()
	if err != nil {
		return err
	}
	_, err = conn.Exec(ctx, "ALTER DATABASE "+name+" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false")
	return err
}

// migrate applies orgperm's migrations, then the app's.
func (s *Server) migrate(ctx context.Context, db *sql.DB) error {
	if _, err := migrations.Up(ctx, db); err != nil {
		return err
	}
	if s.opts.migrations == nil {
		return nil
	}
	if s.opts.migrate != nil {
		if err := s.opts.migrate(ctx, db); err != nil {
			return fmt.Errorf("the app's migrations: %w", err)
		}
		return nil
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, s.opts.migrations, goose.WithDisableGlobalRegistry(true))
	if err == nil {
		_, err = p.Up(ctx)
	}
	if err != nil {
		return fmt.Errorf("the app's migrations (goose): %w", err)
	}
	return nil
}

// migrationsHash hashes orgperm's migrations and the app's: the names and
// contents of their files, and whether goose or the app's function applies
// them (a function is not hashed: it must apply what fsys holds).
func (s *Server) migrationsHash() (string, error) {
	h := sha256.New()
	if err := hashFS(h.Write, migrations.FS); err != nil {
		return "", err
	}
	if s.opts.migrations != nil {
		how := "goose\x00"
		if s.opts.migrate != nil {
			how = "func\x00"
		}
		h.Write([]byte(how))
		if err := hashFS(h.Write, s.opts.migrations); err != nil {
			return "", fmt.Errorf("the app's migrations: %w", err)
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:12], nil
}

func hashFS(write func([]byte) (int, error), fsys fs.FS) error {
	return fs.WalkDir(fsys, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, path)
		if err != nil {
			return err
		}
		write([]byte(path))
		write([]byte{0})
		write(b)
		return nil
	})
}
