package listener

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	// DefaultChannel is the channel the invalidation triggers NOTIFY on.
	DefaultChannel = "orgperm_invalidate"

	// ApplicationName is the application_name of the default listening
	// connection, which finds it in pg_stat_activity.
	ApplicationName = "orgperm_listener"

	// DefaultProofChannel is the channel proofs of delivery travel on,
	// shared by every instance (one proof serves them all).
	DefaultProofChannel = "orgperm_proof"

	// DefaultProofTimeout is the default of Config.ProofTimeout.
	DefaultProofTimeout = 2 * time.Second
	// DefaultReconnectDelay is the default of Config.ReconnectDelay.
	DefaultReconnectDelay = 50 * time.Millisecond
	// DefaultMaxReconnectDelay is the default of Config.MaxReconnectDelay.
	DefaultMaxReconnectDelay = 5 * time.Second
	// DefaultConnectTimeout is the default of Config.ConnectTimeout.
	DefaultConnectTimeout = 10 * time.Second

	// maxIdentifier is PostgreSQL's limit on a channel name (NAMEDATALEN-1).
	maxIdentifier = 63
)

// Config configures a Listener. Its zero value means "all defaults".
type Config struct {
	// Channel is the channel the invalidation payloads arrive on. Defaults
	// to DefaultChannel ("orgperm_invalidate").
	Channel string

	// ProofChannel is the channel proofs of delivery are sent on, through
	// the pool, to come back on the listening connection. Every instance
	// of one database should use the same. Defaults to
	// DefaultProofChannel ("orgperm_proof").
	ProofChannel string

	// Connect opens the dedicated listening connection; it is called on
	// every (re)connect, and the listener closes what it returns. It must be
	// a direct connection to PostgreSQL (or through a session-mode
	// pooler), never one through a transaction pooler, which accepts
	// LISTEN and delivers nothing: proofs then never come back and the
	// Target stays unsynced, with Err matching ErrNoProof. Defaults to
	// pgx.ConnectConfig with a copy of the pool's ConnConfig and
	// application_name "orgperm_listener".
	Connect func(ctx context.Context) (*pgx.Conn, error)

	// ProofTimeout is how long sending a proof of delivery through the
	// pool may take, and then how long it may take to come back on the
	// listening connection. One that is sent and comes back late marks the
	// Target unsynced and replaces the connection, as does a proof
	// statement that fails or runs past it; one that gets no connection
	// from the pool in time leaves both alone (ErrProofNotSent). Defaults
	// to 2 seconds.
	ProofTimeout time.Duration

	// Verify, when set, checks the database side before every sync (after
	// a (re)connect, a "ddl" notification, or a proof whose schema
	// fingerprint changed), with the fingerprint the proof carried. Until
	// it returns nil the Target stays unsynced and Err returns its error;
	// it is retried with backoff. Defaults to nil: no check.
	Verify func(ctx context.Context, fingerprint string) error

	// ReconnectDelay is the delay before the first reconnect after a lost
	// connection; each further attempt doubles it, up to MaxReconnectDelay,
	// and the actual wait is drawn at random from [delay/2, delay]. It is
	// reset once a connection proves healthy (a heartbeat came back, or it
	// synced when heartbeats are disabled). Defaults to 50 milliseconds.
	ReconnectDelay time.Duration

	// MaxReconnectDelay caps the reconnect delay. Defaults to 5 seconds, or
	// ReconnectDelay if that is longer.
	MaxReconnectDelay time.Duration

	// ConnectTimeout bounds one attempt from connecting to LISTEN being in
	// place (and the first connect of Start): an attempt that takes longer,
	// as on a network that went silent, is abandoned and retried. Defaults
	// to 10 seconds.
	ConnectTimeout time.Duration

	// InstanceID tells this instance's proofs from other instances'. At
	// most 63 bytes of [A-Za-z0-9_]. Defaults to a random ID.
	InstanceID string

	// Logger receives state changes (synced at Info; unsynced, connection
	// errors and malformed payloads at Warn; reconnect attempts at Info).
	// Defaults to a logger that discards everything.
	Logger *slog.Logger

	// Now is the clock the Target counts its lease and lifetimes on; only
	// its monotonic reading is used. The listener compares it with the
	// wall clock every ClockWatchInterval: when it has fallen behind by
	// more than that (it stood still, as Go's monotonic clock does while a
	// Linux or macOS machine is suspended), the Target is purged and synced
	// again (ErrClockStopped). For tests. Defaults to time.Now.
	Now func() time.Time

	// OnNotification is a test hook, called on the listening goroutine after
	// the Target has processed a payload of the invalidation channel, with
	// the Invalidation the Target got and the parse error if the payload did
	// not parse (the Invalidation is then All, with Source SourceMalformed).
	// Defaults to a no-op.
	OnNotification func(Invalidation, error)

	// OnStateChange is a test hook, called on every change of State, after
	// the Target has been told. It runs under the listener's sync lock: it
	// must not block, and may call State and Stats but not Start or Stop.
	// Defaults to a no-op.
	OnStateChange func(State)

	// onProof, a test hook, is called after every own proof with its
	// outcome. Set it through a test in this package only.
	onProof func(error)
}

// resolve fills the defaults of cfg and validates it.
func (cfg Config) resolve() (Config, error) {
	if cfg.Channel == "" {
		cfg.Channel = DefaultChannel
	}
	if cfg.ProofChannel == "" {
		cfg.ProofChannel = DefaultProofChannel
	}
	if cfg.ProofTimeout == 0 {
		cfg.ProofTimeout = DefaultProofTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.onProof == nil {
		cfg.onProof = func(error) {}
	}
	if cfg.ReconnectDelay == 0 {
		cfg.ReconnectDelay = DefaultReconnectDelay
	}
	if cfg.MaxReconnectDelay == 0 {
		cfg.MaxReconnectDelay = max(DefaultMaxReconnectDelay, cfg.ReconnectDelay)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.InstanceID == "" {
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		cfg.InstanceID = hex.EncodeToString(b)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.OnNotification == nil {
		cfg.OnNotification = func(Invalidation, error) {}
	}
	if cfg.OnStateChange == nil {
		cfg.OnStateChange = func(State) {}
	}

	switch {
	case len(cfg.Channel) > maxIdentifier:
		return cfg, &ConfigError{Field: "Channel", Reason: "must be at most 63 bytes", Value: cfg.Channel}
	case len(cfg.ProofChannel) > maxIdentifier:
		return cfg, &ConfigError{Field: "ProofChannel", Reason: "must be at most 63 bytes", Value: cfg.ProofChannel}
	case cfg.ProofChannel == cfg.Channel:
		return cfg, &ConfigError{Field: "ProofChannel", Reason: "must differ from Channel", Value: cfg.ProofChannel}
	case cfg.ProofTimeout < 0:
		return cfg, &ConfigError{Field: "ProofTimeout", Reason: "must be >= 0", Value: cfg.ProofTimeout}
	case cfg.ReconnectDelay < 0:
		return cfg, &ConfigError{Field: "ReconnectDelay", Reason: "must be >= 0", Value: cfg.ReconnectDelay}
	case cfg.MaxReconnectDelay < cfg.ReconnectDelay:
		return cfg, &ConfigError{Field: "MaxReconnectDelay", Reason: "must be >= ReconnectDelay", Value: cfg.MaxReconnectDelay}
	case cfg.ConnectTimeout < 0:
		return cfg, &ConfigError{Field: "ConnectTimeout", Reason: "must be >= 0", Value: cfg.ConnectTimeout}
	case len(cfg.InstanceID) > maxIdentifier || !isWord(cfg.InstanceID):
		return cfg, &ConfigError{Field: "InstanceID", Reason: "must be at most 63 bytes of [A-Za-z0-9_]", Value: cfg.InstanceID}
	}
	return cfg, nil
}

func isWord(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}
