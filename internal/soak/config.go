package soak

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
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
	// the soak verifies every key on every instance (see the package
	// documentation). Negative turns faults off. Defaults to 30 seconds.
	FaultEvery time.Duration

	// Faults is the list of faults injected, one every FaultEvery, in this
	// order, cycling. Defaults to [DefaultFaults]: the loud faults (a
	// terminated listener backend, a server restart when Restart is set,
	// every listener backend terminated) and the NOTIFY storm; add
	// [SilentFaults] (black holes) for the faults only a proof of delivery
	// can tell (cmd/soak injects them all by default).
	Faults []Fault

	// FaultRounds, when positive, ends the load once that many faults have
	// been injected and verified, before Duration if need be (Duration
	// still bounds it): a short soak then covers every fault it lists
	// however slow the machine. Defaults to 0: the load lasts Duration.
	FaultRounds int

	// FaultHold is how long a fault that lasts (a black hole, a NOTIFY
	// storm) is held before the network is restored or the storm stops.
	// Defaults to 10 seconds.
	FaultHold time.Duration

	// Restart, when set, restarts the database server (dropping every
	// connection) and returns once it accepts connections again. Only a
	// throwaway server can be restarted; leave it nil for a server of your
	// own. Required when Faults holds FaultRestart. Defaults to nil: no
	// restarts.
	Restart func() error

	// Bound is the staleness a read may have, measured against the
	// writers' commit timeline (see the package documentation): a read
	// stale by more fails the soak. Defaults to 1.05 seconds, the client's
	// freshness lease (1 s) plus 50 ms.
	Bound time.Duration

	// PoolerURL, when set, is where the instances connect instead of
	// DatabaseURL, pool and listener alike: a transaction pooler in front
	// of the same database (see internal/pgbouncer; with pgx it needs
	// default_query_exec_mode=exec or simple_protocol). The writers, the
	// sentinels and the storm still use DatabaseURL. Through a pooler no
	// listener can be expected to sync, so the soak waits for no listener
	// state. Defaults to "": the instances use DatabaseURL.
	PoolerURL string

	// Queue puts the database in queue mode (orgperm.set_transport('queue'),
	// README "Scaling") before the instances start, and runs the relay on
	// every instance (membership.Config.Relay): the writers' payloads and
	// the proofs then reach the listeners through orgperm.queue. Defaults to
	// false: the transport the database has.
	Queue bool

	// WAL puts the database in wal mode (orgperm.set_transport('wal'),
	// README "Scaling"; wal_level logical, PostgreSQL 14) before the
	// instances start, and runs the relay on Relays instances: no trigger
	// fires, and the relay decodes the writes from the WAL. At the end the
	// soak drops the database's replication slot. Not with Queue. Defaults
	// to false.
	WAL bool

	// Relays is the number of instances (the first ones) that run the
	// relay in queue mode. With one, a fault that cuts the relay's
	// connection leaves nothing to relay until that relay reconnects.
	// When the black-hole faults are configured, the relays connect
	// through the listeners' proxy: a black hole cuts them with the
	// listeners. It must not exceed Instances, and needs Queue. Defaults
	// to every instance.
	Relays int

	// StormRate is the number of 8 KB spoofed payloads per second the
	// NOTIFY storm sends. Defaults to 50.
	StormRate int

	// ReadTimeout bounds each checked read: a read that does not return
	// in time (on a black-holed connection) fails closed. Defaults to 2
	// seconds.
	ReadTimeout time.Duration

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
		{"FaultRounds", &cfg.FaultRounds, 0},
		{"Relays", &cfg.Relays, 0},
	} {
		if *f.v < 0 {
			return cfg, configError(f.name, "must not be negative")
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	if cfg.Queue && cfg.WAL {
		return cfg, configError("WAL", "and Queue are both set: one transport at a time")
	}
	if cfg.Relays > 0 && !cfg.relayed() {
		return cfg, configError("Relays", "is set, but Queue and WAL are false: no relay runs")
	}
	if cfg.Relays > cfg.Instances {
		return cfg, configError("Relays", fmt.Sprintf("(%d) must not exceed Instances (%d)", cfg.Relays, cfg.Instances))
	}
	if cfg.relayed() && cfg.Relays == 0 {
		cfg.Relays = cfg.Instances
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
		{"FaultHold", &cfg.FaultHold, 10 * time.Second},
		{"Bound", &cfg.Bound, 1050 * time.Millisecond},
		{"ReadTimeout", &cfg.ReadTimeout, 2 * time.Second},
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
	if cfg.StormRate < 0 {
		return cfg, configError("StormRate", "must not be negative")
	}
	if cfg.StormRate == 0 {
		cfg.StormRate = 50
	}
	if cfg.Faults == nil {
		cfg.Faults = DefaultFaults(cfg.Restart != nil)
	}
	for _, f := range cfg.Faults {
		if !f.valid() {
			return cfg, configError("Faults", fmt.Sprintf("holds %q, which is not a fault (%s)", f, faultNames()))
		}
		if f == FaultTerminateRelay && !cfg.relayed() {
			return cfg, configError("Faults", "holds terminate-relay, but Queue and WAL are false: no relay runs")
		}
		if f == FaultRestart && cfg.Restart == nil {
			return cfg, configError("Faults", "holds restart, but Restart is nil: only a throwaway server can be restarted")
		}
	}
	if cfg.FaultEvery > 0 && len(cfg.Faults) == 0 {
		return cfg, configError("Faults", "is empty while FaultEvery is positive; set FaultEvery negative for no faults")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ClientLogger == nil {
		cfg.ClientLogger = slog.New(minLevel{cfg.Logger.Handler(), slog.LevelWarn})
	}
	return cfg, nil
}

// Fault is a kind of fault the soak injects.
type Fault string

// The faults. The loud ones cut connections in a way the client is told
// about; the silent ones ([SilentFaults]) leave connections open with
// nothing arriving on them, which only a proof of delivery can tell.
const (
	// FaultTerminateOne terminates one listener backend
	// (pg_terminate_backend).
	FaultTerminateOne Fault = "terminate-one"
	// FaultRestart restarts the server (Config.Restart).
	FaultRestart Fault = "restart"
	// FaultTerminateAll terminates every listener backend.
	FaultTerminateAll Fault = "terminate-all"
	// FaultStorm is a NOTIFY storm for FaultHold: a database role with no
	// orgperm privilege, created for the soak, sends StormRate spoofed 8 KB
	// payloads a second on orgperm_invalidate, each naming about a
	// thousand organizations that do not exist, while the writes go on.
	FaultStorm Fault = "storm"
	// FaultBlackholeListener black-holes the listeners' connections for
	// FaultHold (a TCP proxy drops every byte, closes nothing): the
	// listeners get no notification and no error.
	FaultBlackholeListener Fault = "blackhole-listener"
	// FaultBlackholeAll black-holes the listeners' and the pools'
	// connections together for FaultHold. The writers, on a connection of
	// their own, go on writing.
	FaultBlackholeAll Fault = "blackhole-all"
	// FaultTerminateRelay terminates the leading queue relay's backend
	// (Config.Queue only): until another instance's relay takes the lead,
	// nothing is relayed, proofs included, and every cache bypasses itself.
	FaultTerminateRelay Fault = "terminate-relay"
)

var allFaults = []Fault{FaultTerminateOne, FaultRestart, FaultTerminateAll, FaultStorm, FaultBlackholeListener, FaultBlackholeAll, FaultTerminateRelay}

func (f Fault) valid() bool {
	for _, g := range allFaults {
		if f == g {
			return true
		}
	}
	return false
}

func (f Fault) blackhole() bool { return f == FaultBlackholeListener || f == FaultBlackholeAll }

func faultNames() string {
	names := make([]string, len(allFaults))
	for i, f := range allFaults {
		names[i] = string(f)
	}
	return strings.Join(names, ", ")
}

// DefaultFaults returns the default of Config.Faults: the loud faults
// (with a server restart if restart is true) and the NOTIFY storm.
func DefaultFaults(restart bool) []Fault {
	if restart {
		return []Fault{FaultTerminateOne, FaultRestart, FaultTerminateAll, FaultStorm}
	}
	return []Fault{FaultTerminateOne, FaultTerminateAll, FaultStorm}
}

// SilentFaults returns the faults that leave connections open and silent:
// the listeners black-holed, and the listeners and the pools black-holed
// together. A client that trusts its cache on LISTEN alone serves stale
// answers under them for as long as it takes to notice.
func SilentFaults() []Fault { return []Fault{FaultBlackholeListener, FaultBlackholeAll} }

// ParseFaults parses a comma-separated list of faults, as cmd/soak's -inject
// flag takes it: fault names, "default" (DefaultFaults(restart)),
// "silent" (SilentFaults) and "all" (both). The error matches
// ErrInvalidConfig.
func ParseFaults(list string, restart bool) ([]Fault, error) {
	var out []Fault
	for _, name := range strings.Split(list, ",") {
		switch name = strings.TrimSpace(name); name {
		case "":
		case "default":
			out = append(out, DefaultFaults(restart)...)
		case "silent":
			out = append(out, SilentFaults()...)
		case "all":
			out = append(out, DefaultFaults(restart)...)
			out = append(out, SilentFaults()...)
		default:
			if f := Fault(name); f.valid() {
				out = append(out, f)
				continue
			}
			return nil, fmt.Errorf("%w: unknown fault %q (want default, silent, all, or of %s)", ErrInvalidConfig, name, faultNames())
		}
	}
	return out, nil
}

// relayed reports whether the transport needs relays: queue or wal.
func (cfg Config) relayed() bool { return cfg.Queue || cfg.WAL }
