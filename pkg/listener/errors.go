package listener

import (
	"errors"
	"fmt"
)

var (
	// ErrMalformedPayload is matched (with errors.Is) by every *PayloadError
	// for a payload that is not a well-formed version-1 payload.
	ErrMalformedPayload = errors.New("listener: malformed payload")

	// ErrUnsupportedVersion is matched (with errors.Is) by every
	// *PayloadError for a payload whose "v" is a number other than 1: a
	// writer newer than this listener.
	ErrUnsupportedVersion = errors.New("listener: unsupported payload version")

	// ErrInvalidConfig is matched (with errors.Is) by every error New returns
	// for a Config it cannot accept. The concrete error is a *ConfigError
	// naming the field.
	ErrInvalidConfig = errors.New("listener: invalid config")

	// ErrAlreadyStarted is returned by Start when the listener was started
	// before.
	ErrAlreadyStarted = errors.New("listener: already started")

	// ErrStopped is returned by Start when Stop was called before.
	ErrStopped = errors.New("listener: stopped")

	// ErrNoProof is matched by Err (and wrapped by the cause of the
	// cancelled session) when a proof of delivery could not be sent or did
	// not come back on the listening connection within
	// Config.ProofTimeout: notifications cannot be shown to arrive (a
	// transaction pooler between the listener and PostgreSQL, a silent
	// network).
	ErrNoProof = errors.New("listener: no proof of delivery")

	// ErrProofNotSent matches ErrNoProof: a proof never reached the
	// server: the pool had no connection for it within Config.ProofTimeout
	// (exhausted), or the attempt failed before anything was written. A
	// proof statement that was sent and failed or ran too long is
	// ErrNoProof, as one that does not come back. It says nothing about the
	// listening connection, which is kept, nor about the Target's
	// contents, which stay: the lease runs out, and until a proof can be
	// sent Sync and WaitPosition return it at once. It is Err's reason
	// only while a sync waits for it.
	ErrProofNotSent = fmt.Errorf("%w: a proof could not be sent through the pool", ErrNoProof)

	// ErrTransactionPooler is matched by Err when the listening connection
	// was found to go through a pooler in transaction mode, which cannot
	// deliver notifications; the listener then does not LISTEN on it (see
	// PoolerError). It matches ErrNoProof too.
	ErrTransactionPooler = fmt.Errorf("%w: the listening connection goes through a pooler in transaction mode", ErrNoProof)

	// ErrNotSynced is what Err says before the first sync.
	ErrNotSynced = errors.New("listener: not synced yet")

	// ErrReconnecting is what Err says while the listening connection is
	// being replaced.
	ErrReconnecting = errors.New("listener: reconnecting")

	// ErrSchemaChanged is what Err says after a "ddl" notification, or a
	// proof whose schema fingerprint differs from the one verified, until
	// Config.Verify passes again.
	ErrSchemaChanged = errors.New("listener: orgperm's schema changed; verifying it again")

	// ErrClockStopped is what Err says after the local monotonic clock was
	// found to have stood still while the wall clock went on (a system
	// suspend, or a step of the wall clock forward), until delivery has
	// been proven again. The Target was purged: every lifetime and lease it
	// counted on the stopped clock is too long by the time it missed.
	ErrClockStopped = errors.New("listener: the monotonic clock stood still while the wall clock went on (a system suspend?); proving delivery again")

	// ErrConnectTimeout is the cause of the cancelled session when a
	// connection was not listening within Config.ConnectTimeout.
	ErrConnectTimeout = errors.New("listener: connect timed out")
)

// PayloadError reports a payload ParsePayload rejected. It unwraps to
// ErrMalformedPayload or ErrUnsupportedVersion.
type PayloadError struct {
	// Err is ErrMalformedPayload or ErrUnsupportedVersion.
	Err error
	// Offset is the byte offset in the payload where the problem was found.
	Offset int
	// Reason says what was wrong, such as `"orgs" holds an empty ID`.
	Reason string
}

// Error implements error: `listener: malformed payload: "orgs" holds an
// empty ID (at byte 24)`.
func (e *PayloadError) Error() string {
	return fmt.Sprintf("%v: %s (at byte %d)", e.Err, e.Reason, e.Offset)
}

// Unwrap returns Err.
func (e *PayloadError) Unwrap() error { return e.Err }

// ConfigError reports a Config field that New rejected. It unwraps to
// ErrInvalidConfig.
type ConfigError struct {
	// Field is the name of the rejected field, such as "HeartbeatTimeout".
	Field string
	// Reason says what the field must be, such as "must be >= 0".
	Reason string
	// Value is the rejected value.
	Value any
}

// Error implements error: "listener: Config.HeartbeatTimeout must be >= 0 (got -1s)".
func (e *ConfigError) Error() string {
	return fmt.Sprintf("listener: Config.%s %s (got %v)", e.Field, e.Reason, e.Value)
}

// Unwrap returns ErrInvalidConfig.
func (e *ConfigError) Unwrap() error { return ErrInvalidConfig }
