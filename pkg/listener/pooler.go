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
// two agree there is nothing to look for. When they differ, a second
// client asks for its backend's process ID right after this one: a pooler
// that pins a server connection to each client (session mode) gives the
// second client another backend, while one that hands server connections
// out per transaction gives it the backend this client just released
// (PgBouncer reuses the most recently released one first). Seeing the same
// backend from two clients is proof; not seeing it proves nothing (the
// app's own traffic may have taken that backend meanwhile), and the proof
// of delivery remains the judge, as for any other connection.
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
	for i := range poolerProbes {
		if i > 0 {
			if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
				return fmt.Errorf("listener: reading the listening backend's process ID: %w", err)
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
	}
	return nil
}

// PoolerError is the reason (Err) of a Listener whose listening connection
// goes through a pooler in transaction mode: it never LISTENs there, and
// tries again, with backoff, as after any failed connect. It matches
// ErrTransactionPooler and ErrNoProof.
type PoolerError struct {
	// Backend is the process ID of the PostgreSQL backend that two of the
	// listener's connections were both handed.
	Backend uint32
}

// Error implements error.
func (e *PoolerError) Error() string {
	return fmt.Sprintf("%v: two of its connections were handed the same server backend (pid %d); give the listener a direct or session-mode connection (listener.Config.Connect, membership.Config.ListenerConnect)", ErrTransactionPooler, e.Backend)
}

// Unwrap returns ErrTransactionPooler, which matches ErrNoProof.
func (e *PoolerError) Unwrap() error { return ErrTransactionPooler }
