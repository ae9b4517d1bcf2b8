package membership

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// RequiredSchemaVersion is the lowest orgperm.schema_version() this package
// works with: the migration that added orgperm.prove, through which proofs
// of delivery follow the transport (migrations/00006_queue.sql).
const RequiredSchemaVersion = 6

// ErrSchema is matched (errors.Is) by every [SchemaError].
var ErrSchema = errors.New("membership: orgperm's invalidation side is not whole")

// SchemaError says why the database cannot keep a cache correct: the
// schema is missing or older than RequiredSchemaVersion, or a notify
// trigger is missing, disabled or altered. While it holds, a Client
// started with Config.AllowUncached reads the database on every check.
type SchemaError struct {
	// Version is orgperm.schema_version(), 0 if unknown.
	Version int
	// Problems lists what is wrong, one "object: problem" each.
	Problems []string
}

func (e *SchemaError) Error() string {
	return "membership: the cache cannot be trusted: " + strings.Join(e.Problems, "; ")
}

// Unwrap returns ErrSchema.
func (e *SchemaError) Unwrap() error { return ErrSchema }

// guardSQL checks the database side in one statement: the schema version,
// its fingerprint and every problem orgperm.inspect() finds.
const guardSQL = `SELECT orgperm.schema_version(), orgperm.fingerprint(),
    coalesce((SELECT array_agg(i.severity || '|' || i.object || '|' || i.problem ORDER BY i.severity, i.object)
              FROM orgperm.inspect() i), '{}')`

// verify runs the guard and records its outcome for Check: it returns the
// schema fingerprint, and a *SchemaError if the invalidation side is not
// whole. Warnings are logged.
func (c *Client) verify(ctx context.Context) (string, error) {
	fp, err := c.runGuard(ctx)
	c.guardMu.Lock()
	c.guardErr = err
	c.guardMu.Unlock()
	return fp, err
}

func (c *Client) runGuard(ctx context.Context) (string, error) {
	var (
		version int
		fp      string
		rows    []string
	)
	err := c.pool.QueryRow(ctx, guardSQL).Scan(&version, &fp, &rows)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == "3F000" || pgErr.Code == "42883" || pgErr.Code == "42P01") {
		// invalid_schema_name, undefined_function, undefined_table
		return "", &SchemaError{Problems: []string{fmt.Sprintf(
			"schema orgperm: missing or older than version %d (run its migrations): %s", RequiredSchemaVersion, pgErr.Message)}}
	}
	if err != nil {
		return "", fmt.Errorf("membership: verify the schema: %w", err)
	}
	se := &SchemaError{Version: version}
	if version < RequiredSchemaVersion {
		se.Problems = append(se.Problems, fmt.Sprintf("schema orgperm: version %d, need %d (run its migrations)", version, RequiredSchemaVersion))
	}
	for _, r := range rows {
		sev, rest, _ := strings.Cut(r, "|")
		obj, problem, _ := strings.Cut(rest, "|")
		if sev == "error" {
			se.Problems = append(se.Problems, obj+": "+problem)
		} else {
			c.cfg.Logger.Warn("orgperm: schema check", "object", obj, "problem", problem)
		}
	}
	if len(se.Problems) > 0 {
		return fp, se
	}
	return fp, nil
}
