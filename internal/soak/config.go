package soak

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Config configures a soak. Its zero value means "defaults", except
// DatabaseURL, which is required.
type Config struct {
	// DatabaseURL names a database with orgperm's migrations applied and no
	// soak data yet; the soak writes its data there (IDs prefixed "soak-").
	// Required.
	DatabaseURL string

	// Duration is how long the writers write and the readers check, before
	// the final verification. Defaults to 10 minutes.
	Duration time.Duration

	// Writers is the number of writer goroutines; each owns the
	// organizations whose index modulo Writers is its own. It must not
	// exceed Orgs. Defaults to 4.
	Writers int

	// Readers is the number of reader goroutines, each checking random keys
	// on random instances. Defaults to 4.
	Readers int

	// Instances is the number of app instances (Clients, each with a pool
	// of its own) in this process. Defaults to 4.
	Instances int

	// Orgs is the number of organizations. Defaults to 16.
	Orgs int

	// UsersPerOrg is the number of members of each organization (each user
	// is a member of one organization). Defaults to 32.
	UsersPerOrg int

	// FaultEvery is the interval between injected faults; after each one
	// the soak waits for every instance to resync and verifies every key
	// on every instance. Faults cycle through: one listener backend
	// terminated, a server restart (when Restart is set), every listener
	// backend terminated. Negative turns faults off. Defaults to 30
	// seconds.
	FaultEvery time.Duration

	// Restart, when set, restarts the database server (dropping every
	// connection) and returns once it accepts connections again. Only a
	// throwaway server can be restarted; leave it nil for a server of your
	// own. Defaults to nil: no restarts.
	Restart func() error

	// WriteEvery paces each writer: one write per interval. Defaults to 5
	// milliseconds.
	WriteEvery time.Duration

	// Logger receives the soak's events (faults, verifications) at Info.
	// Defaults to a logger that discards everything.
	Logger *slog.Logger

	// ClientLogger is every Client's Logger (with an "instance" attribute).
	// Defaults to Logger, at Warn and above only: the listeners log each
	// reconnect at Info, noise in a soak that causes them on purpose.
	ClientLogger *slog.Logger

	// Progress, when set, receives the running totals every ProgressEvery.
	// Defaults to nil.
	Progress func(Report)

	// ProgressEvery is the interval between Progress calls. Defaults to 10
	// seconds.
	ProgressEvery time.Duration

	// wrap, in this package's tests only, wraps the reader of instance i
	// (to make it deliberately stale).
	wrap func(i int, r reader) reader
}

// ErrInvalidConfig is matched (errors.Is) by every configuration error.
var ErrInvalidConfig = errors.New("soak: invalid config")

func configError(field, reason string) error {
	return fmt.Errorf("%w: Config.%s %s", ErrInvalidConfig, field, reason)
}

func (cfg Config) resolve() (Config, error) {
	if cfg.DatabaseURL == "" {
		return cfg, configError("DatabaseURL", "is required")
	}
	for _, f := range []struct {
		name string
		v    *int
		def  int
	}{
		{"Writers", &cfg.Writers, 4},
		{"Readers", &cfg.Readers, 4},
		{"Instances", &cfg.Instances, 4},
		{"Orgs", &cfg.Orgs, 16},
		{"UsersPerOrg", &cfg.UsersPerOrg, 32},
	} {
		if *f.v < 0 {
			return cfg, configError(f.name, "must not be negative")
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	if cfg.Writers > cfg.Orgs {
		return cfg, configError("Writers", fmt.Sprintf("(%d) must not exceed Orgs (%d): each writer owns whole organizations", cfg.Writers, cfg.Orgs))
	}
	for _, f := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"Duration", &cfg.Duration, 10 * time.Minute},
		{"WriteEvery", &cfg.WriteEvery, 5 * time.Millisecond},
		{"ProgressEvery", &cfg.ProgressEvery, 10 * time.Second},
	} {
		if *f.v < 0 {
			return cfg, configError(f.name, "must not be negative")
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	if cfg.FaultEvery == 0 {
		cfg.FaultEvery = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ClientLogger == nil {
		cfg.ClientLogger = slog.New(minLevel{cfg.Logger.Handler(), slog.LevelWarn})
	}
	return cfg, nil
}
