// Package migrations embeds orgperm's schema migrations and runs them with
// goose.
//
// The migrations live in this directory as plain goose SQL files, so the
// stock goose CLI runs them as well:
//
//	goose -dir migrations -table orgperm_goose_db_version postgres "$DATABASE_URL" up
//
// From Go, [Up] runs them through a goose.Provider of orgperm's own: its own
// version table ([VersionTable]), its own session-lock ID ([LockID]) and no
// global registry, so it never touches the embedding app's own goose state
// (goose_db_version) and never collides with the app's migrations.
//
// With a pgx pool, get a *sql.DB from github.com/jackc/pgx/v5/stdlib:
//
//	db := stdlib.OpenDBFromPool(pool)
//	defer db.Close()
//	if _, err := migrations.Up(ctx, db); err != nil { ... }
//
// The invalidation triggers (sql/triggers.sql) ship as numbered migrations
// too: 00002 is the first release's, 00003 the second's, 00006_queue the
// third's (it adds the queue transport, orgperm.set_transport),
// 00007_triggers_v4 the current one's (cheaper one-row writes), and a later
// change to the triggers is a new migration, never an edit of a released
// one. Each triggers migration replaces every trigger and function of the
// one before, so Up brings a database at any earlier version to the current
// triggers, and Down reinstalls the previous ones. Both send the payload
// {"v":1,"t":"ddl","all":true}, so running instances purge. Migrate as a
// superuser to get the DDL event triggers (orgperm_ddl_notify,
// orgperm_ddl_notify_drop); another role gets everything else and a NOTICE.
// After migrating, orgperm.schema_version() is the triggers' version and
// orgperm.inspect() lists anything that keeps the cache from trusting them.
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"fmt"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/database"
	"github.com/pressly/goose/v3/lock"
)

// FS holds the SQL migrations.
//
//go:embed *.sql
var FS embed.FS

// VersionTable is the table in which orgperm records its applied migrations.
const VersionTable = "orgperm_goose_db_version"

// LockID is the PostgreSQL advisory lock orgperm's migrations hold while they
// run, so that instances starting at once migrate one at a time. It differs
// from goose's default lock ID.
const LockID int64 = 0x6f72677065726d // "orgperm"

// NewProvider returns a goose provider over the embedded migrations, with
// orgperm's own version table and session lock. opts are appended to
// orgperm's own options (a logger, for example).
func NewProvider(db *sql.DB, opts ...goose.ProviderOption) (*goose.Provider, error) {
	store, err := database.NewStore(database.DialectPostgres, VersionTable)
	if err != nil {
		return nil, fmt.Errorf("orgperm: migrations: %w", err)
	}
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(LockID))
	if err != nil {
		return nil, fmt.Errorf("orgperm: migrations: %w", err)
	}
	all := append([]goose.ProviderOption{
		goose.WithStore(store),
		goose.WithSessionLocker(locker),
		goose.WithDisableGlobalRegistry(true),
	}, opts...)
	p, err := goose.NewProvider("", db, FS, all...)
	if err != nil {
		return nil, fmt.Errorf("orgperm: migrations: %w", err)
	}
	return p, nil
}

// Up applies every pending migration. Running it on an up-to-date database
// is a no-op that returns no results.
func Up(ctx context.Context, db *sql.DB) ([]*goose.MigrationResult, error) {
	p, err := NewProvider(db)
	if err != nil {
		return nil, err
	}
	res, err := p.Up(ctx)
	if err != nil {
		return res, fmt.Errorf("orgperm: migrate up: %w", err)
	}
	return res, nil
}

// DownTo rolls back every applied migration newer than version; DownTo(ctx,
// db, 0) removes orgperm from the database entirely.
func DownTo(ctx context.Context, db *sql.DB, version int64) ([]*goose.MigrationResult, error) {
	p, err := NewProvider(db)
	if err != nil {
		return nil, err
	}
	res, err := p.DownTo(ctx, version)
	if err != nil {
		return res, fmt.Errorf("orgperm: migrate down: %w", err)
	}
	return res, nil
}

// Status reports every known migration and whether it is applied.
func Status(ctx context.Context, db *sql.DB) ([]*goose.MigrationStatus, error) {
	p, err := NewProvider(db)
	if err != nil {
		return nil, err
	}
	st, err := p.Status(ctx)
	if err != nil {
		return st, fmt.Errorf("orgperm: migration status: %w", err)
	}
	return st, nil
}
