package promcollector

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/orgperm/orgperm/pkg/listener"
	"github.com/orgperm/orgperm/pkg/localcache"
	"github.com/orgperm/orgperm/pkg/membership"
	"github.com/orgperm/orgperm/pkg/relay"
)

// fixedSource returns the same Stats on every call. It is a fake of this
// package's own one-method interface, not of the client.
type fixedSource membership.Stats

func (s fixedSource) Stats() membership.Stats { return membership.Stats(s) }

var lastSync = time.Unix(1_700_000_000, 0)

// everyField has a distinct value in every field, so that a metric wired
// to the wrong field shows.
var everyField = fixedSource{
	Cache: localcache.Stats{
		Hits: 1, Misses: 2, Bypassed: 3, Loads: 4, Coalesced: 5, Fills: 6,
		StaleFills: 7, Expired: 8, CapacityEvictions: 9, EvictedKey: 10,
		EvictedOrg: 11, EvictedUser: 12, EvictedAll: 13, Entries: 14, InFlight: 15,
	},
	Listener: listener.Stats{
		Notifications: 16, Malformed: 17, Reconnects: 18, ProofsSent: 19,
		ProofFailures: 20, PoolerRefusals: 2, ClockJumps: 3, LastProofRTT: 1500 * time.Microsecond,
		LastSync: lastSync, State: listener.Synced,
	},
	Relay: relay.Stats{
		Running: true, Leading: true, Leaderships: 21, Rounds: 22, Relayed: 23, Errors: 24,
		WALSlotsCreated: 25, WALRetainedBytes: 26,
		LastRound: lastSync.Add(60 * time.Second),
	},
}

// newFixed returns a collector over src whose clock reads 90 seconds after
// lastSync.
func newFixed(src StatsSource, opts ...Option) *Collector {
	c := New(src, opts...)
	c.now = func() time.Time { return lastSync.Add(90 * time.Second) }
	return c
}

const wantEveryField = `
# HELP orgperm_cache_bypassed_total Lookups that skipped the local cache because it was unsynced (the listener could not vouch for it) and went to the database.
# TYPE orgperm_cache_bypassed_total counter
orgperm_cache_bypassed_total 3
# HELP orgperm_cache_coalesced_total Lookups that joined a database load of the same key already in flight instead of starting one.
# TYPE orgperm_cache_coalesced_total counter
orgperm_cache_coalesced_total 5
# HELP orgperm_cache_entries Entries held in the local cache, including expired entries no lookup has removed yet.
# TYPE orgperm_cache_entries gauge
orgperm_cache_entries 14
# HELP orgperm_cache_evictions_total Entries removed from the local cache, by reason: capacity (least recently used, to make room), or an invalidation of one key, of an organization, of a user, or of everything (a resync included).
# TYPE orgperm_cache_evictions_total counter
orgperm_cache_evictions_total{reason="all"} 13
orgperm_cache_evictions_total{reason="capacity"} 9
orgperm_cache_evictions_total{reason="key"} 10
orgperm_cache_evictions_total{reason="org"} 11
orgperm_cache_evictions_total{reason="user"} 12
# HELP orgperm_cache_expired_total Entries found past their valid_until or the safety TTL, and values already past it when about to be stored.
# TYPE orgperm_cache_expired_total counter
orgperm_cache_expired_total 8
# HELP orgperm_cache_fills_in_flight Fills registered and not yet finished: database loads running and warm-up fills not yet stored.
# TYPE orgperm_cache_fills_in_flight gauge
orgperm_cache_fills_in_flight 15
# HELP orgperm_cache_fills_total Loaded values stored in the local cache (warm-up included).
# TYPE orgperm_cache_fills_total counter
orgperm_cache_fills_total 6
# HELP orgperm_cache_hits_total Lookups answered from the local cache.
# TYPE orgperm_cache_hits_total counter
orgperm_cache_hits_total 1
# HELP orgperm_cache_loads_total Database loads started on a miss or a bypass.
# TYPE orgperm_cache_loads_total counter
orgperm_cache_loads_total 4
# HELP orgperm_cache_misses_total Lookups that found no live entry in the local cache while it was synced (an expired entry counts here and in orgperm_cache_expired_total).
# TYPE orgperm_cache_misses_total counter
orgperm_cache_misses_total 2
# HELP orgperm_cache_stale_fills_total Loaded values refused by the local cache because an invalidation covering the key, or a loss of sync, happened while they loaded.
# TYPE orgperm_cache_stale_fills_total counter
orgperm_cache_stale_fills_total 7
# HELP orgperm_listener_clock_jumps_total Times the local monotonic clock was found to have stood still while the wall clock went on (a system suspend, or the wall clock set forward); each purged the cache and proved delivery again.
# TYPE orgperm_listener_clock_jumps_total counter
orgperm_listener_clock_jumps_total 3
# HELP orgperm_listener_proof_failures_total Proofs of delivery that could not be sent or did not come back in time; each marked the cache unsynced and replaced the listening connection.
# TYPE orgperm_listener_proof_failures_total counter
orgperm_listener_proof_failures_total 20
# HELP orgperm_listener_pooler_refusals_total Listening connections refused without a LISTEN because they went through a pooler in transaction mode, which cannot deliver notifications; the cache stays bypassed until the listener gets a direct or session-mode connection.
# TYPE orgperm_listener_pooler_refusals_total counter
orgperm_listener_pooler_refusals_total 2
# HELP orgperm_listener_proof_rtt_seconds Round trip of the last own proof of delivery, from the pool to the listening connection. Absent until one has succeeded.
# TYPE orgperm_listener_proof_rtt_seconds gauge
orgperm_listener_proof_rtt_seconds 0.0015
# HELP orgperm_listener_proofs_total Proofs of delivery sent (or attempted) through the pool.
# TYPE orgperm_listener_proofs_total counter
orgperm_listener_proofs_total 19
# HELP orgperm_listener_last_sync_timestamp_seconds Unix time of the listener's last resync (LISTEN in place and the cache purged). Absent until the first.
# TYPE orgperm_listener_last_sync_timestamp_seconds gauge
orgperm_listener_last_sync_timestamp_seconds 1.7e+09
# HELP orgperm_listener_malformed_total Invalidation notifications whose payload failed to parse; each evicted everything.
# TYPE orgperm_listener_malformed_total counter
orgperm_listener_malformed_total 17
# HELP orgperm_listener_notifications_total Invalidation notifications received, malformed ones included.
# TYPE orgperm_listener_notifications_total counter
orgperm_listener_notifications_total 16
# HELP orgperm_listener_reconnects_total Listening connections established after the first.
# TYPE orgperm_listener_reconnects_total counter
orgperm_listener_reconnects_total 18
# HELP orgperm_listener_seconds_since_sync Seconds since the listener's last resync. While synced it is the age of the listening connection, not a staleness: read it with orgperm_listener_synced. Absent until the first resync.
# TYPE orgperm_listener_seconds_since_sync gauge
orgperm_listener_seconds_since_sync 90
# HELP orgperm_listener_synced 1 while the listener is synced and the local cache answers, 0 while lookups bypass it (connecting, or the connection is in doubt).
# TYPE orgperm_listener_synced gauge
orgperm_listener_synced 1
# HELP orgperm_relay_errors_total Relay connections that failed or were lost, and rounds that failed; each is retried with backoff.
# TYPE orgperm_relay_errors_total counter
orgperm_relay_errors_total 24
# HELP orgperm_relay_last_round_timestamp_seconds Unix time at which this instance's relay last finished a round. Absent until its first.
# TYPE orgperm_relay_last_round_timestamp_seconds gauge
orgperm_relay_last_round_timestamp_seconds 1.70000006e+09
# HELP orgperm_relay_leaderships_total Times this instance's relay took the relay lock and began to lead.
# TYPE orgperm_relay_leaderships_total counter
orgperm_relay_leaderships_total 21
# HELP orgperm_relay_leading 1 while this instance's queue relay holds the relay lock and relays orgperm.queue, 0 while another instance's relay leads (or none can be reached). Across instances, the sum is 1 when exactly one leads.
# TYPE orgperm_relay_leading gauge
orgperm_relay_leading 1
# HELP orgperm_relay_rounds_total Rounds of this instance's relay: calls of orgperm.relay() that returned.
# TYPE orgperm_relay_rounds_total counter
orgperm_relay_rounds_total 22
# HELP orgperm_relay_rows_total Rows of orgperm.queue this instance's relay took and sent: invalidation payloads and proofs of delivery.
# TYPE orgperm_relay_rows_total counter
orgperm_relay_rows_total 23
# HELP orgperm_relay_seconds_since_round Seconds since this instance's relay last finished a round. While it leads, more than a few relay intervals means its rounds are stuck and every cache bypasses itself; while it does not lead it is the time since it last led. Absent until its first round.
# TYPE orgperm_relay_seconds_since_round gauge
orgperm_relay_seconds_since_round 30
# HELP orgperm_relay_wal_retained_bytes While this instance's relay leads in wal mode: the WAL the server keeps for the slot, read about once a second (0 otherwise). It grows while the relay falls behind; if the relay stops, the slot keeps the WAL from this point on, up to max_slot_wal_keep_size.
# TYPE orgperm_relay_wal_retained_bytes gauge
orgperm_relay_wal_retained_bytes 26
# HELP orgperm_relay_wal_slots_created_total Replication slots of the wal transport this instance's relay made, each followed by evicting every cache: a first start, and a slot found missing or invalidated by PostgreSQL (past max_slot_wal_keep_size). After the first, each one means writes were never decoded.
# TYPE orgperm_relay_wal_slots_created_total counter
orgperm_relay_wal_slots_created_total 25
`

func TestCollectEveryField(t *testing.T) {
	t.Parallel()
	// CollectAndCompare registers the collector with a pedantic registry,
	// which also checks that Collect sends only what Describe declared.
	if err := testutil.CollectAndCompare(newFixed(everyField), strings.NewReader(wantEveryField)); err != nil {
		t.Error(err)
	}
}

func TestCollectBeforeFirstSync(t *testing.T) {
	t.Parallel()
	c := newFixed(fixedSource{}) // a listener still connecting
	const want = `
# HELP orgperm_listener_synced 1 while the listener is synced and the local cache answers, 0 while lookups bypass it (connecting, or the connection is in doubt).
# TYPE orgperm_listener_synced gauge
orgperm_listener_synced 0
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "orgperm_listener_synced"); err != nil {
		t.Error(err)
	}
	for _, name := range []string{
		"orgperm_listener_proof_rtt_seconds",
		"orgperm_listener_last_sync_timestamp_seconds",
		"orgperm_listener_seconds_since_sync",
	} {
		if n := testutil.CollectAndCount(c, name); n != 0 {
			t.Errorf("%s: %d series before the first proof and resync, want none", name, n)
		}
	}
	// Every other metric is there, at 0: the 21 metrics with no variable
	// label less those 3, and the 5 eviction reasons; none of the relay's
	// (the client runs none).
	if n := testutil.CollectAndCount(c); n != 18+5 {
		t.Errorf("collected %d series, want %d", n, 18+5)
	}
}

// relayMetrics are the relay's metrics, reported only while a relay runs.
var relayMetrics = []string{
	"orgperm_relay_leading",
	"orgperm_relay_leaderships_total",
	"orgperm_relay_rounds_total",
	"orgperm_relay_rows_total",
	"orgperm_relay_errors_total",
	"orgperm_relay_last_round_timestamp_seconds",
	"orgperm_relay_seconds_since_round",
}

func TestCollectRelay(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name  string
		relay relay.Stats
		want  map[string]int // series per metric; absent from the map: 1
	}{
		{"no relay", relay.Stats{}, map[string]int{
			"orgperm_relay_leading": 0, "orgperm_relay_leaderships_total": 0, "orgperm_relay_rounds_total": 0,
			"orgperm_relay_rows_total": 0, "orgperm_relay_errors_total": 0,
			"orgperm_relay_last_round_timestamp_seconds": 0, "orgperm_relay_seconds_since_round": 0,
		}},
		{"stopped", relay.Stats{Leaderships: 1, Rounds: 5, LastRound: lastSync}, map[string]int{
			"orgperm_relay_leading": 0, "orgperm_relay_leaderships_total": 0, "orgperm_relay_rounds_total": 0,
			"orgperm_relay_rows_total": 0, "orgperm_relay_errors_total": 0,
			"orgperm_relay_last_round_timestamp_seconds": 0, "orgperm_relay_seconds_since_round": 0,
		}},
		{"running, no round yet", relay.Stats{Running: true}, map[string]int{
			"orgperm_relay_last_round_timestamp_seconds": 0, "orgperm_relay_seconds_since_round": 0,
		}},
		{"leading", relay.Stats{Running: true, Leading: true, Rounds: 1, LastRound: lastSync}, nil},
	} {
		src := everyField
		src.Relay = tt.relay
		c := newFixed(src)
		for _, name := range relayMetrics {
			want, ok := tt.want[name]
			if !ok {
				want = 1
			}
			if n := testutil.CollectAndCount(c, name); n != want {
				t.Errorf("%s: %s has %d series, want %d", tt.name, name, n, want)
			}
		}
	}
}

func TestSyncedFollowsState(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		state listener.State
		want  float64
	}{
		{listener.Connecting, 0},
		{listener.Synced, 1},
		{listener.Unsynced, 0},
	} {
		src := everyField
		src.Listener.State = tt.state
		c := newFixed(src)
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(c)
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var got float64 = -1
		for _, mf := range mfs {
			if mf.GetName() == "orgperm_listener_synced" {
				got = mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		if got != tt.want {
			t.Errorf("state %s: synced = %v, want %v", tt.state, got, tt.want)
		}
	}
}

func TestLintClean(t *testing.T) {
	t.Parallel()
	problems, err := testutil.CollectAndLint(newFixed(everyField))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

func TestConstLabelsTellClientsApart(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(
		newFixed(everyField, WithConstLabels(prometheus.Labels{"database": "billing"})),
		newFixed(fixedSource{}, WithConstLabels(prometheus.Labels{"database": "crm"})),
	)
	const want = `
# HELP orgperm_cache_hits_total Lookups answered from the local cache.
# TYPE orgperm_cache_hits_total counter
orgperm_cache_hits_total{database="billing"} 1
orgperm_cache_hits_total{database="crm"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "orgperm_cache_hits_total"); err != nil {
		t.Error(err)
	}
	// Without labels, a second client collides.
	reg2 := prometheus.NewRegistry()
	reg2.MustRegister(New(everyField))
	if err := reg2.Register(New(everyField)); err == nil {
		t.Error("registering two unlabelled collectors succeeded, want a conflict")
	}
}
