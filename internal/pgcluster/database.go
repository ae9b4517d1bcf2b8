package pgcluster

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver

	"github.com/orgperm/orgperm/migrations"
)

// ConnString returns a connection string for database name on the server
// that adminURL (a connection string, URL or keyword/value) reaches.
func ConnString(adminURL, name string) string {
	if u, err := url.Parse(adminURL); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.Path = "/" + name
		return u.String()
	}
	return adminURL + " dbname=" + name
}

// Exec runs one statement on the server that adminURL reaches, on a
// connection of its own.
func Exec(ctx context.Context, adminURL, statement string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, statement)
	return err
}

// RandomName returns prefix followed by 16 random hexadecimal digits: a
// database name no other run picks.
func RandomName(prefix string) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// DropDatabase drops database name, disconnecting its clients and
// dropping its logical replication slots first (the wal transport's relay
// makes one; a database with a slot cannot be dropped). A slot made again
// meanwhile by a relay still running is dropped on a second try.
func DropDatabase(ctx context.Context, adminURL, name string) error {
	var err error
	for range 3 {
		if err = DropSlots(ctx, adminURL, name); err != nil {
			return err
		}
		err = Exec(ctx, adminURL, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "55006" { // object_in_use: a slot
			break
		}
	}
	if err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

// DropSlots drops every logical replication slot of database name ("":
// the database url connects to), terminating the walsenders that stream
// them, and returns once none is left or ctx ends.
func DropSlots(ctx context.Context, url, name string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("drop the replication slots of %s: %w", name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	const slots = `FROM pg_catalog.pg_replication_slots WHERE database = coalesce(nullif($1, ''), current_database())`
	for {
		var left int
		_, err := conn.Exec(ctx, `SELECT pg_catalog.pg_terminate_backend(active_pid) `+slots+` AND active_pid IS NOT NULL`, name)
		if err == nil {
			_, err = conn.Exec(ctx, `SELECT count(pg_catalog.pg_drop_replication_slot(slot_name)) `+slots+` AND NOT active`, name)
		}
		if err == nil {
			err = conn.QueryRow(ctx, `SELECT count(*)::int `+slots, name).Scan(&left)
		}
		if err != nil {
			return fmt.Errorf("drop the replication slots of %s: %w", name, err)
		}
		if left == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("drop the replication slots of %s: %d left: %w", name, left, ctx.Err())
		case <-time.After(10 * time.Millisecond): // polling for the walsenders' exit
		}
	}
}

// NewMigrated creates a fresh database on the server that adminURL reaches
// (its user needs CREATEDB), applies orgperm's migrations, and returns its
// name and connection string, for programs (the demo, the soak, the
// benchmark driver); drop it with [DropDatabase]. Tests take theirs from
// pkg/pgtest, copied from a template.
func NewMigrated(ctx context.Context, adminURL string) (name, url string, err error) {
	name = RandomName("orgperm_run_")
	if err := Exec(ctx, adminURL, "CREATE DATABASE "+name); err != nil {
		return "", "", fmt.Errorf("create database: %w", err)
	}
	url = ConnString(adminURL, name)
	db, err := sql.Open("pgx", url)
	if err == nil {
		_, err = migrations.Up(ctx, db)
		db.Close()
	}
	if err != nil {
		_ = DropDatabase(context.WithoutCancel(ctx), adminURL, name)
		return "", "", fmt.Errorf("migrate %s: %w", name, err)
	}
	return name, url, nil
}
