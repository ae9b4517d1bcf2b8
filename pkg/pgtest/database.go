package pgtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/orgperm/orgperm/migrations"
)

// NewDatabase creates a fresh database with orgperm's migrations applied on
// the shared server and returns its connection string. The database is
// dropped when the test ends.
func NewDatabase(tb testing.TB) string {
	tb.Helper()
	return Shared(tb).NewDatabase(tb)
}

// NewPool returns a pool on a fresh migrated database of the shared server,
// closed when the test ends.
func NewPool(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	return Shared(tb).NewPool(tb)
}

// NewPool returns a pool on a fresh migrated database of s, closed when the
// test ends.
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
// holds orgperm's migrations, and returns its connection string. The
// database is dropped (WITH (FORCE)) when the test ends.
func (s *Server) NewDatabase(tb testing.TB) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	url, name, err := s.CreateDatabase(ctx)
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := s.DropDatabase(ctx, name); err != nil {
			tb.Errorf("pgtest: %v", err)
		}
	})
	return url
}

// CreateDatabase creates a fresh migrated database on s, for programs that
// are not tests, and returns its connection string and name. Drop it with
// DropDatabase.
func (s *Server) CreateDatabase(ctx context.Context) (url, name string, err error) {
	tmpl, err := s.template(ctx)
	if err != nil {
		return "", "", fmt.Errorf("template: %w", err)
	}
	name = "orgperm_test_" + randomHex(8)
	if err := s.exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", name, tmpl)); err != nil {
		return "", "", fmt.Errorf("create database: %w", err)
	}
	return s.ConnString(name), name, nil
}

// DropDatabase drops the database name, disconnecting its clients.
func (s *Server) DropDatabase(ctx context.Context, name string) error {
	if err := s.exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database: %w", err)
	}
	return nil
}

// NewEmptyDatabase creates a database without orgperm's schema, for tests
// of the migrations themselves. It is dropped when the test ends.
func (s *Server) NewEmptyDatabase(tb testing.TB) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := "orgperm_empty_" + randomHex(8)
	if err := s.exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("pgtest: create database: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := s.exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			tb.Errorf("pgtest: drop database: %v", err)
		}
	})
	return s.ConnString(name)
}

// ConnString returns a connection string for database name on s.
func (s *Server) ConnString(name string) string {
	if u, err := url.Parse(s.URL); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.Path = "/" + name
		return u.String()
	}
	return s.URL + " dbname=" + name
}

func (s *Server) exec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, s.URL)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, sql)
	return err
}

// template returns the name of a database that holds the current migrations,
// creating it once per server. Its name carries a hash of the migrations, so
// a server shared by several test binaries (DATABASE_URL) reuses it, and a
// changed migration gets a new one. An advisory lock serializes its creation
// across processes; a template half made by a crashed run is not marked
// IS_TEMPLATE and is made again.
func (s *Server) template(ctx context.Context) (string, error) {
	s.tmplMu.Lock()
	defer s.tmplMu.Unlock()
	if s.tmpl != "" || s.tmplErr != nil {
		return s.tmpl, s.tmplErr
	}
	name := "orgperm_tmpl_" + migrationsHash()
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
	} else if err != pgx.ErrNoRows {
		return err
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return err
	}
	db, err := sql.Open("pgx", s.ConnString(name))
	if err != nil {
		return err
	}
	_, err = migrations.Up(ctx, db)
	db.Close()
	if err != nil {
		return err
	}
	_, err = conn.Exec(ctx, "ALTER DATABASE "+name+" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false")
	return err
}

var _ = stdlib.GetDefaultDriver // registers the "pgx" database/sql driver

func migrationsHash() string {
	h := sha256.New()
	_ = fs.WalkDir(migrations.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(migrations.FS, path)
		if err != nil {
			return err
		}
		h.Write([]byte(path))
		h.Write(b)
		return nil
	})
	return strings.ToLower(hex.EncodeToString(h.Sum(nil))[:12])
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
