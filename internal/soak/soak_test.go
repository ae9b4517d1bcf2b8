package soak

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/orgperm/orgperm/pkg/membership"
	"github.com/orgperm/orgperm/pkg/pgtest"
)

func TestMain(m *testing.M) {
	os.Exit(pgtest.Run(m, pgtest.After(func() error { return goleak.Find() })))
}

// frozen is a broken cache in front of a reader: it keeps the first answer
// for each key forever, whatever the notifications say.
type frozen struct {
	r     reader
	mu    sync.Mutex
	sets  map[[2]string]*membership.PermissionSet
	users map[string]bool
}

func (f *frozen) Permissions(ctx context.Context, org, user string) (*membership.PermissionSet, error) {
	f.mu.Lock()
	s, ok := f.sets[[2]string{org, user}]
	f.mu.Unlock()
	if ok {
		return s, nil
	}
	s, err := f.r.Permissions(ctx, org, user)
	if err == nil {
		f.mu.Lock()
		f.sets[[2]string{org, user}] = s
		f.mu.Unlock()
	}
	return s, err
}

func (f *frozen) UserHasActiveMembership(ctx context.Context, user string) (bool, error) {
	f.mu.Lock()
	a, ok := f.users[user]
	f.mu.Unlock()
	if ok {
		return a, nil
	}
	a, err := f.r.UserHasActiveMembership(ctx, user)
	if err == nil {
		f.mu.Lock()
		f.users[user] = a
		f.mu.Unlock()
	}
	return a, err
}

// smallSoak is a few seconds of soak on a small data set, without faults.
func smallSoak(t *testing.T) Config {
	return Config{
		DatabaseURL: pgtest.NewDatabase(t),
		Duration:    2 * time.Second,
		Writers:     2,
		Readers:     2,
		Instances:   2,
		Orgs:        2,
		UsersPerOrg: 4,
		FaultEvery:  -1,
	}
}

// TestRunCountsStaleReads proves the soak can fail: one instance answers
// through a cache that ignores every notification, while its listener
// still applies the sentinels. Both detectors must see it: its reads are
// stale by the commit timeline (beyond the bound, since it never updates),
// and below the watermark; and the final verification must find it out.
func TestRunCountsStaleReads(t *testing.T) {
	t.Parallel()
	cfg := smallSoak(t)
	cfg.wrap = func(i int, r reader) reader {
		if i != 1 {
			return r
		}
		return &frozen{r: r, sets: map[[2]string]*membership.PermissionSet{}, users: map[string]bool{}}
	}
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", rep)
	if rep.Stale == 0 || rep.BeyondBound == 0 || rep.BelowWatermark == 0 || rep.Mismatches == 0 || rep.OK() {
		t.Errorf("a frozen cache went unnoticed: stale %d, beyond the bound %d, below the watermark %d, mismatches %d",
			rep.Stale, rep.BeyondBound, rep.BelowWatermark, rep.Mismatches)
	}
	if rep.WronglyAllowed == 0 || rep.WronglyDenied == 0 {
		t.Errorf("wrongly allowed %d, wrongly denied %d; a frozen cache does both", rep.WronglyAllowed, rep.WronglyDenied)
	}
	if rep.StalenessMax <= cfg.Duration/2 {
		t.Errorf("max staleness %v; a cache frozen for %v is staler", rep.StalenessMax, cfg.Duration)
	}
	if rep.Inconsistent != 0 {
		t.Errorf("inconsistent = %d, want 0: a frozen answer is old, not torn", rep.Inconsistent)
	}
}

// TestRunClean is the control: the same soak with the Clients as they are
// finds nothing.
func TestRunClean(t *testing.T) {
	t.Parallel()
	rep, err := Run(context.Background(), smallSoak(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", rep)
	if !rep.OK() || rep.Checks == 0 || rep.Verifications != 1 {
		t.Errorf("clean soak: %+v", rep)
	}
}

// TestRunStorm runs the NOTIFY storm: a role with no orgperm privilege
// floods the channel with spoofed payloads while the writes go on. It
// must send them, and no read may be stale beyond the bound.
func TestRunStorm(t *testing.T) {
	t.Parallel()
	cfg := smallSoak(t)
	cfg.Duration = 3 * time.Second
	cfg.FaultEvery = 500 * time.Millisecond
	cfg.FaultHold = time.Second
	cfg.Faults = []Fault{FaultStorm}
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", rep)
	if rep.Storms == 0 || rep.StormPayloads < 10 {
		t.Errorf("%d storms, %d payloads; want a storm of at least 10", rep.Storms, rep.StormPayloads)
	}
	if !rep.OK() {
		t.Errorf("storm soak failed")
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]Config{
		"no database":            {},
		"negative readers":       {DatabaseURL: "x", Readers: -1},
		"more writers than orgs": {DatabaseURL: "x", Writers: 3, Orgs: 2},
		"negative duration":      {DatabaseURL: "x", Duration: -time.Second},
		"negative bound":         {DatabaseURL: "x", Bound: -time.Second},
		"unknown fault":          {DatabaseURL: "x", Faults: []Fault{"unplug"}},
		"restart, no Restart":    {DatabaseURL: "x", Faults: []Fault{FaultRestart}},
		"empty fault list":       {DatabaseURL: "x", Faults: []Fault{}},
		"negative storm rate":    {DatabaseURL: "x", StormRate: -1},
		"negative fault rounds":  {DatabaseURL: "x", FaultRounds: -1},
		"relays, no queue":       {DatabaseURL: "x", Relays: 1},
		"more relays":            {DatabaseURL: "x", Queue: true, Instances: 2, Relays: 3},
		"negative relays":        {DatabaseURL: "x", Queue: true, Relays: -1},
	} {
		if _, err := Run(context.Background(), cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: err = %v, want ErrInvalidConfig", name, err)
		}
	}
}

func TestParseFaults(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in      string
		restart bool
		want    []Fault
	}{
		{"default", true, []Fault{FaultTerminateOne, FaultRestart, FaultTerminateAll, FaultStorm}},
		{"default", false, []Fault{FaultTerminateOne, FaultTerminateAll, FaultStorm}},
		{"silent", false, []Fault{FaultBlackholeListener, FaultBlackholeAll}},
		{"storm, blackhole-all", false, []Fault{FaultStorm, FaultBlackholeAll}},
		{"all", false, []Fault{FaultTerminateOne, FaultTerminateAll, FaultStorm, FaultBlackholeListener, FaultBlackholeAll}},
	} {
		got, err := ParseFaults(c.in, c.restart)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("ParseFaults(%q, %v) = %v, %v; want %v", c.in, c.restart, got, err, c.want)
		}
	}
	if _, err := ParseFaults("terminate-one,unplug", false); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("unknown fault: err = %v, want ErrInvalidConfig", err)
	}
}

// TestStormerUnprivileged: the storm's role must hold no orgperm privilege;
// if PUBLIC has been granted some, the soak refuses to call it
// unprivileged.
func TestStormerUnprivileged(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDatabase(t)
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	st, err := newStormer(ctx, pool, url)
	if err != nil {
		t.Fatalf("fresh database: %v", err)
	}
	if err := st.close(ctx, pool); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "GRANT SELECT ON orgperm.memberships TO PUBLIC"); err != nil {
		t.Fatal(err)
	}
	if _, err := newStormer(ctx, pool, url); err == nil || !strings.Contains(err.Error(), "privileges on schema orgperm") {
		t.Errorf("with SELECT on memberships granted to PUBLIC: err = %v, want a refusal", err)
	}
}

// lateCtx is a context past its deadline whose timer has not run yet: Err
// still says nothing, as on a loaded machine between the deadline and the
// timer that sets it.
type lateCtx struct {
	context.Context
	deadline time.Time
}

func (c lateCtx) Deadline() (time.Time, bool) { return c.deadline, true }

// TestEnded: the end of the load is its deadline, not the moment a timer
// gets round to saying so (a storm whose dial failed at the deadline used
// to fail the soak).
func TestEnded(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	future, cancelFuture := context.WithTimeout(context.Background(), time.Hour)
	defer cancelFuture()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		want bool
	}{
		{"no deadline", context.Background(), false},
		{"deadline ahead", future, false},
		{"cancelled", cancelled, true},
		{"deadline passed, Err not yet set", lateCtx{context.Background(), time.Now().Add(-time.Millisecond)}, true},
	} {
		if got := ended(tc.ctx); got != tc.want {
			t.Errorf("%s: ended = %v, want %v", tc.name, got, tc.want)
		}
	}
}
