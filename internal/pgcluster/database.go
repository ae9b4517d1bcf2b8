package pgcluster

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"

	"github.com/jackc/pgx/v5"
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

// DropDatabase drops database name, disconnecting its clients.
func DropDatabase(ctx context.Context, adminURL, name string) error {
	if err := Exec(ctx, adminURL, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
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
