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

	// HeartbeatChannelPrefix prefixes Config.InstanceID to name the
	// instance's own heartbeat channel.
	HeartbeatChannelPrefix = "orgperm_hb_"

	// DefaultHeartbeatInterval is the default of Config.HeartbeatInterval.
	DefaultHeartbeatInterval = 5 * time.Second
	// DefaultHeartbeatTimeout is the default of Config.HeartbeatTimeout.
	DefaultHeartbeatTimeout = 2 * time.Second
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

	// Connect opens the dedicated listening connection; it is called on
	// every (re)connect, and the listener closes what it returns. It must be
	// a direct connection to PostgreSQL, never one through a transaction
	// pooler (which would swallow LISTEN; the heartbeat would then keep the
	// Target unsynced). Defaults to pgx.ConnectConfig with a copy of the
	// pool's ConnConfig and application_name "orgperm_listener".
	Connect func(ctx context.Context) (*pgx.Conn, error)

	// HeartbeatInterval is how often, while synced, a heartbeat is sent
	// through the pool to come back on the listening connection. Negative
	// disables the heartbeat (a half-open connection then goes unnoticed
	// until the kernel gives up on it). Defaults to 5 seconds.
	HeartbeatInterval time.Duration

	// HeartbeatTimeout is how long a heartbeat may take, from sending it
	// through the pool to receiving it back; a late one marks the Target
	// unsynced and replaces the connection. Defaults to 2 seconds.
	HeartbeatTimeout time.Duration

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

	// InstanceID names this instance's heartbeat channel,
	// "orgperm_hb_<InstanceID>", so that instances do not receive each
	// other's heartbeats. At most 52 bytes of [A-Za-z0-9_]. Defaults to a
	// random ID.
	InstanceID string

	// Logger receives state changes (synced at Info; unsynced, connection
	// errors and malformed payloads at Warn; reconnect attempts at Info).
	// Defaults to a logger that discards everything.
	Logger *slog.Logger

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
}

// resolve fills the defaults of cfg and validates it.
func (cfg Config) resolve() (Config, error) {
	if cfg.Channel == "" {
		cfg.Channel = DefaultChannel
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if cfg.HeartbeatTimeout == 0 {
		cfg.HeartbeatTimeout = DefaultHeartbeatTimeout
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
	case cfg.HeartbeatTimeout < 0:
		return cfg, &ConfigError{Field: "HeartbeatTimeout", Reason: "must be >= 0", Value: cfg.HeartbeatTimeout}
	case cfg.ReconnectDelay < 0:
		return cfg, &ConfigError{Field: "ReconnectDelay", Reason: "must be >= 0", Value: cfg.ReconnectDelay}
	case cfg.MaxReconnectDelay < cfg.ReconnectDelay:
		return cfg, &ConfigError{Field: "MaxReconnectDelay", Reason: "must be >= ReconnectDelay", Value: cfg.MaxReconnectDelay}
	case cfg.ConnectTimeout < 0:
		return cfg, &ConfigError{Field: "ConnectTimeout", Reason: "must be >= 0", Value: cfg.ConnectTimeout}
	case len(HeartbeatChannelPrefix)+len(cfg.InstanceID) > maxIdentifier || !isWord(cfg.InstanceID):
		return cfg, &ConfigError{Field: "InstanceID", Reason: "must be at most 52 bytes of [A-Za-z0-9_]", Value: cfg.InstanceID}
	case HeartbeatChannelPrefix+cfg.InstanceID == cfg.Channel:
		return cfg, &ConfigError{Field: "Channel", Reason: "must differ from the heartbeat channel", Value: cfg.Channel}
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
