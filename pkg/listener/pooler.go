package listener

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// poolerProbes is how many times checkPooler looks for a shared server
// connection before it lets the connection LISTEN.
const poolerProbes = 3

// checkPooler refuses a listening connection that goes through a pooler
// in transaction (or statement) mode, before anything LISTENs on it.
//
// Such a pooler accepts LISTEN and delivers nothing, so the proof that
// follows would fail anyway; but the LISTEN itself stays behind on a
// pooled server connection, and a notification that reaches that server
// connection while no client is linked to it crashes some PgBouncer
// versions ("got packet 'A' from server when not linked", seen with 1.18),
// taking the application's pool down with it. So the listener looks first.
//
// A direct connection reports its backend's process ID in BackendKeyData;
// a pooler makes up its own (it must route cancel requests), so when the
// two agree there is nothing to look for. When they differ, the listener
// looks for one of two proofs, poolerProbes times over. A pooler that pins
// a server connection to each client (session mode) keeps a client on one
// backend and gives another client another backend. One that hands server
// connections out per transaction gives a second client, asking right
// after this one, the backend this client just released (PgBouncer reuses
// the most recently released one first); and when other clients take that
// backend first, as an application's traffic does, it moves this client
// (or the second) to another backend between two transactions. So the
// same backend seen by two clients, or one client's backend changing, is
// proof. Seeing neither proves nothing, and the proof of delivery remains
// the judge, as for any other connection.
func (l *Listener) checkPooler(ctx context.Context, conn *pgx.Conn) error {
	var pid uint32
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		return fmt.Errorf("listener: reading the listening backend's process ID: %w", err)
	}
	if pid == conn.PgConn().PID() {
		return nil // no pooler in between
	}
	other, err := l.cfg.Connect(ctx)
	if err == nil && other == nil {
		return nil // checked and reported by the caller on the next connect
	}
	if err != nil {
		// The probe could not look; the proof will judge this connection.
		l.log.Debug("listener: pooler check: second connection failed", "err", err)
		return nil
	}
	defer other.Close(context.WithoutCancel(ctx))
	var otherPID uint32
	for i := range poolerProbes {
		if i > 0 {
			prev := pid
			if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
				return fmt.Errorf("listener: reading the listening backend's process ID: %w", err)
			}
			if pid != prev {
				return &PoolerError{Backend: pid, Previous: prev}
			}
		}
		var seen uint32
		if err := other.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&seen); err != nil {
			l.log.Debug("listener: pooler check: second connection failed", "err", err)
			return nil
		}
		if seen == pid {
			return &PoolerError{Backend: pid}
		}
		if otherPID != 0 && seen != otherPID {
			return &PoolerError{Backend: seen, Previous: otherPID}
		}
		otherPID = seen
	}
	return nil
}

// PoolerError is the reason (Err) of a Listener whose listening connection
// goes through a pooler in transaction mode: it never LISTENs there, and
// tries again, with backoff, as after any failed connect. It matches
// ErrTransactionPooler and ErrNoProof.
type PoolerError struct {
	// Backend is the process ID of the PostgreSQL backend that two of the
	// listener's connections were both handed, or, when Previous is not
	// zero, the one a connection was handed after Previous.
	Backend uint32
	// Previous, when not zero, is the backend one of the listener's
	// connections had in its previous transaction: it moved, which a
	// direct or session-mode connection never does.
	Previous uint32
}

// Error implements error.
func (e *PoolerError) Error() string {
	const fix = "give the listener a direct or session-mode connection (listener.Config.Connect, membership.Config.ListenerConnect)"
	if e.Previous != 0 {
		return fmt.Sprintf("%v: one of its connections moved from server backend pid %d to pid %d between two transactions; %s", ErrTransactionPooler, e.Previous, e.Backend, fix)
	}
	return fmt.Sprintf("%v: two of its connections were handed the same server backend (pid %d); %s", ErrTransactionPooler, e.Backend, fix)
}

// Unwrap returns ErrTransactionPooler, which matches ErrNoProof.
func (e *PoolerError) Unwrap() error { return ErrTransactionPooler }
