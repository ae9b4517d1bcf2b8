package membership

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrInvalidActor reports an actor (WithActor) that is longer than 256
// bytes, not valid UTF-8 or that holds a control character. The write is
// refused: nothing is written without the actor the app asked for.
var ErrInvalidActor = errors.New("membership: invalid actor")

// maxActorBytes is the longest actor WithActor accepts.
const maxActorBytes = 256

// actorKey is the context key of WithActor.
type actorKey struct{}

// WithActor returns a context whose Store writes record actor (an
// application user ID, a service name: whoever the app says made the
// change) in the audit trail: each write transaction of the Store sets the
// transaction-local setting orgperm.actor to it, which the audit triggers
// read. Raw SQL can set the same setting:
//
//	BEGIN;
//	SELECT set_config('orgperm.actor', 'admin:42', true);
//	UPDATE orgperm.memberships ...;
//	COMMIT;
//
// An empty actor records none. An invalid one (ErrInvalidActor) fails the
// write.
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey{}, actor)
}

// ActorFrom returns the actor WithActor put in ctx, "" if none.
func ActorFrom(ctx context.Context) string {
	a, _ := ctx.Value(actorKey{}).(string)
	return a
}

// setActor sets orgperm.actor for the transaction tx from ctx's actor; it
// sends nothing when ctx has none.
func setActor(ctx context.Context, tx pgx.Tx) error {
	a := ActorFrom(ctx)
	if a == "" {
		return nil
	}
	if !validText(a, maxActorBytes) {
		return invalid("actor", a, ErrInvalidActor)
	}
	_, err := tx.Exec(ctx, `SELECT set_config('orgperm.actor', $1, true)`, a)
	return err
}

// ErrInvalidRetention reports a PruneAudit age that is not positive.
var ErrInvalidRetention = errors.New("membership: invalid audit retention: must be positive")

// AuditEntry is one row of the audit trail (orgperm.audit_log; see
// sql/audit.sql): one changed row of one statement, or one TRUNCATE.
type AuditEntry struct {
	// ID orders the entries: a later write has a higher ID (within one
	// statement, in no particular order).
	ID int64
	// At is the statement's time (statement_timestamp()), shared by every
	// entry of one statement.
	At time.Time
	// TxID is the writing transaction's ID: the entries of one
	// transaction share it.
	TxID int64
	// Table is the table written, without the schema: "memberships".
	Table string
	// Operation is INSERT, UPDATE, DELETE or TRUNCATE.
	Operation string
	// Org and User are the row's organization and user, where it has them
	// ("" otherwise; a role_permissions row has its role's organization).
	Org, User string
	// Key is the row's key as a JSON object ({"org_id":..,"user_id":..},
	// {"id":..}); nil for TRUNCATE.
	Key json.RawMessage
	// Old and New are the row before and after the change as JSON objects
	// (every column but created_at and updated_at); nil on the side that
	// does not exist (Old of an INSERT, New of a DELETE, both for
	// TRUNCATE).
	Old, New json.RawMessage
	// DBUser is the database role that wrote (the session's SET ROLE,
	// else its login role).
	DBUser string
	// Actor is the application's actor (WithActor, or the orgperm.actor
	// setting of raw SQL); "" when none was set.
	Actor string
}

// AuditQuery selects the history AuditHistory returns: an organization's
// (Org), one member's (Org and User), or an actor's (Actor, optionally in
// one Org). ListOptions.At is not used.
type AuditQuery struct {
	ListOptions
	// Org keeps the entries of this organization. Required unless Actor is
	// set.
	Org string
	// User, with Org, keeps the entries of this member: their membership,
	// role assignments and data grants made to them (not the changes to
	// their roles' permissions, which are the org's).
	User string
	// Actor keeps the entries written under this actor.
	Actor string
}

// AuditHistory returns the audit trail selected by q, newest first, one
// page at a time, in one statement. It reads orgperm.audit_log, so the
// database role needs SELECT on it. Not cached.
func (s *Store) AuditHistory(ctx context.Context, q AuditQuery) (Page[AuditEntry], error) {
	var p Page[AuditEntry]
	var (
		where []string
		args  []any
	)
	arg := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if q.Org == "" && q.Actor == "" {
		return p, invalid("org", "", ErrInvalidID)
	}
	if q.Org != "" {
		if err := checkID("org", q.Org); err != nil {
			return p, err
		}
		arg("a.org_id = $%d", q.Org)
	}
	if q.User != "" {
		if q.Org == "" {
			return p, invalid("org", "", ErrInvalidID)
		}
		if err := checkID("user", q.User); err != nil {
			return p, err
		}
		arg("a.user_id = $%d", q.User)
	}
	if q.Actor != "" {
		if !validText(q.Actor, maxActorBytes) {
			return p, invalid("actor", q.Actor, ErrInvalidActor)
		}
		arg("a.actor = $%d", q.Actor)
	}
	n, err := q.limit()
	if err != nil {
		return p, err
	}
	before, err := cursorID(curAudit, q.Cursor)
	if err != nil {
		return p, err
	}
	if before != nil {
		arg("a.id < $%d", *before)
	}
	args = append(args, n+1)
	rows, err := s.db.Query(ctx, `
		SELECT a.id, a.at, a.txid, a.table_name, a.operation, a.org_id, a.user_id,
		       a.row_key, a.old_values, a.new_values, a.db_user, a.actor
		FROM ONLY orgperm.audit_log a
		WHERE `+strings.Join(where, " AND ")+`
		ORDER BY a.id DESC
		LIMIT $`+strconv.Itoa(len(args)), args...)
	if err != nil {
		return p, dbError("audit history", err)
	}
	for rows.Next() {
		var (
			e                AuditEntry
			org, user, actor *string
			key, oldV, newV  []byte
		)
		if err := rows.Scan(&e.ID, &e.At, &e.TxID, &e.Table, &e.Operation, &org, &user,
			&key, &oldV, &newV, &e.DBUser, &actor); err != nil {
			rows.Close()
			return Page[AuditEntry]{}, dbError("audit history", err)
		}
		e.At = e.At.UTC()
		e.Org, e.User, e.Actor = deref(org), deref(user), deref(actor)
		e.Key, e.Old, e.New = rawJSON(key), rawJSON(oldV), rawJSON(newV)
		p.Items = append(p.Items, e)
	}
	if err := rows.Err(); err != nil {
		return Page[AuditEntry]{}, dbError("audit history", err)
	}
	if len(p.Items) > n {
		p.Items = p.Items[:n]
		p.Next = encodeCursor(curAudit, strconv.FormatInt(p.Items[n-1].ID, 10))
	}
	return p, nil
}

// PruneAudit deletes the audit entries older than olderThan (by their At,
// against the database's time) with orgperm.prune_audit, and returns how
// many it deleted. The database role needs DELETE on orgperm.audit_log. Run
// it on a schedule to keep the trail to a retention period.
func (s *Store) PruneAudit(ctx context.Context, olderThan time.Duration) (int64, error) {
	if olderThan <= 0 {
		return 0, invalid("older_than", olderThan.String(), ErrInvalidRetention)
	}
	var n int64
	if err := s.db.QueryRow(ctx, `SELECT orgperm.prune_audit($1::bigint * interval '1 microsecond')`,
		olderThan.Microseconds()).Scan(&n); err != nil {
		return 0, dbError("prune audit", err)
	}
	return n, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func rawJSON(b []byte) json.RawMessage {
	if b == nil {
		return nil
	}
	return json.RawMessage(b)
}
