package promcollector

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/orgperm/orgperm/pkg/listener"
	"github.com/orgperm/orgperm/pkg/membership"
)

// StatsSource is what the collector reads: *membership.Client implements
// it.
type StatsSource interface {
	// Stats returns a snapshot of the cache and listener counters.
	Stats() membership.Stats
}

var _ StatsSource = (*membership.Client)(nil)

// Option configures New.
type Option func(*Collector)

// WithConstLabels adds labels with fixed values to every metric, for an
// app that registers more than one client (one per database, say) with the
// same registry: give each collector a distinct label, such as
// prometheus.Labels{"database": "billing"}. Defaults to none.
func WithConstLabels(labels prometheus.Labels) Option {
	return func(c *Collector) { c.constLabels = labels }
}

// metric is one metric with no variable label, and how to read its value
// from a Stats snapshot; ok false leaves it out of this scrape.
type metric struct {
	desc  *prometheus.Desc
	typ   prometheus.ValueType
	value func(st *membership.Stats, now time.Time) (v float64, ok bool)
}

// Collector is a prometheus.Collector over the counters of a
// [StatsSource]. It keeps no state of its own: every scrape reads one Stats
// snapshot and reports it as constant metrics. Create it with [New].
type Collector struct {
	src         StatsSource
	constLabels prometheus.Labels
	now         func() time.Time // for seconds_since_sync; a test hook

	metrics   []metric
	evictions *prometheus.Desc // orgperm_cache_evictions_total{reason}
}

var _ prometheus.Collector = (*Collector)(nil)

// New returns a Collector over src, usually a *membership.Client:
//
//	prometheus.MustRegister(promcollector.New(client))
func New(src StatsSource, opts ...Option) *Collector {
	if src == nil {
		panic("promcollector: New with a nil StatsSource")
	}
	c := &Collector{src: src, now: time.Now}
	for _, opt := range opts {
		opt(c)
	}
	c.build()
	return c
}

// counter returns a value func for a counter that is always reported.
func counter(f func(st *membership.Stats) uint64) func(*membership.Stats, time.Time) (float64, bool) {
	return func(st *membership.Stats, _ time.Time) (float64, bool) { return float64(f(st)), true }
}

// build makes the descriptors, once, in New.
func (c *Collector) build() {
	desc := func(subsystem, name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName("orgperm", subsystem, name), help, labels, c.constLabels)
	}
	add := func(subsystem, name, help string, typ prometheus.ValueType, value func(*membership.Stats, time.Time) (float64, bool)) {
		c.metrics = append(c.metrics, metric{desc: desc(subsystem, name, help), typ: typ, value: value})
	}
	cnt := prometheus.CounterValue
	gauge := prometheus.GaugeValue

	// The local cache.
	add("cache", "hits_total", "Lookups answered from the local cache.",
		cnt, counter(func(st *membership.Stats) uint64 { return st.Cache.Hits }))
	add("cache", "misses_total", "Lookups that found no live entry in the local cache while it was synced (an expired entry counts here and in orgperm_cache_expired_total).",
		cnt, counter(func(st *membership.Stats) uint64 { return st.Cache.Misses }))
	add("cache", "bypassed_total", "Lookups that skipped the local cache because it was unsynced (the listener could not vouch for it) and went to the database.",
		cnt, counter(func(st *membership.Stats) uint64 { return st.Cache.Bypassed }))
	add("cache", "loads_total", "Database loads started on a miss or a bypass.",
		cnt, counter(func(st *membership.Stats) uint64 { return st.Cache.Loads }))
	add("cache", "coalesced_total", "Lookups that joined a database load of the same key already in flight instead of starting one.",
		cnt, counter(func(st *membership.Stats) uint64 { return st.Cache.Coalesced }))
	add("cache", "fills_total", "Loaded values stored in the local cache (warm-up included).",
		cnt, counter(func(st *membership.Stats) uint64 { return st.Cache.Fills }))
	add("cache", "stale_fills_total", "Loaded values refused by the local cache because an invalidation covering the key, or a loss of sync, happened while they loaded.",
		cnt, counter(func(st *membership.Stats) uint64 { return st.Cache.StaleFills }))
	add("cache", "expired_total", "Entries found past their valid_until or the safety TTL, and values already past it when about to be stored.",
		cnt, counter(func(st *membership.Stats) uint64 { return st.Cache.Expired }))
	add("cache", "entries", "Entries held in the local cache, including expired entries no lookup has removed yet.",
		gauge, func(st *membership.Stats, _ time.Time) (float64, bool) { return float64(st.Cache.Entries), true })
	add("cache", "fills_in_flight", "Fills registered and not yet finished: database loads running and warm-up fills not yet stored.",
		gauge, func(st *membership.Stats, _ time.Time) (float64, bool) { return float64(st.Cache.InFlight), true })
	c.evictions = desc("cache", "evictions_total", "Entries removed from the local cache, by reason: capacity (least recently used, to make room), or an invalidation of one key, of an organization, of a user, or of everything (a resync included).", "reason")

	// The listener.
	add("listener", "notifications_total", "Invalidation notifications received, malformed ones included.",
		cnt, counter(func(st *membership.Stats) uint64 { return st.Listener.Notifications }))
	add("listener", "malformed_total", "Invalidation notifications whose payload failed to parse; each evicted everything.",
		cnt, counter(func(st *membership.Stats) uint64 { return st.Listener.Malformed }))
	add("listener", "reconnects_total", "Listening connections established after the first.",
		cnt, counter(func(st *membership.Stats) uint64 { return st.Listener.Reconnects }))
	add("listener", "proofs_total", "Proofs of delivery sent (or attempted) through the pool.",
		cnt, counter(func(st *membership.Stats) uint64 { return st.Listener.ProofsSent }))
	add("listener", "proof_failures_total", "Proofs of delivery that could not be sent or did not come back in time; each marked the cache unsynced and replaced the listening connection.",
		cnt, counter(func(st *membership.Stats) uint64 { return st.Listener.ProofFailures }))
	add("listener", "pooler_refusals_total", "Listening connections refused without a LISTEN because they went through a pooler in transaction mode, which cannot deliver notifications; the cache stays bypassed until the listener gets a direct or session-mode connection.",
		cnt, counter(func(st *membership.Stats) uint64 { return st.Listener.PoolerRefusals }))
	add("listener", "clock_jumps_total", "Times the local monotonic clock was found to have stood still while the wall clock went on (a system suspend, or the wall clock set forward); each purged the cache and proved delivery again.",
		cnt, counter(func(st *membership.Stats) uint64 { return st.Listener.ClockJumps }))
	add("listener", "proof_rtt_seconds", "Round trip of the last own proof of delivery, from the pool to the listening connection. Absent until one has succeeded.",
		gauge, func(st *membership.Stats, _ time.Time) (float64, bool) {
			rtt := st.Listener.LastProofRTT
			return rtt.Seconds(), rtt > 0
		})
	add("listener", "synced", "1 while the listener is synced and the local cache answers, 0 while lookups bypass it (connecting, or the connection is in doubt).",
		gauge, func(st *membership.Stats, _ time.Time) (float64, bool) {
			if st.Listener.State == listener.Synced {
				return 1, true
			}
			return 0, true
		})
	lastSync := func(st *membership.Stats) (time.Time, bool) { return st.Listener.LastSync, true }
	add("listener", "last_sync_timestamp_seconds", "Unix time of the listener's last resync (LISTEN in place and the cache purged). Absent until the first.",
		gauge, timestamp(lastSync))
	add("listener", "seconds_since_sync", "Seconds since the listener's last resync. While synced it is the age of the listening connection, not a staleness: read it with orgperm_listener_synced. Absent until the first resync.",
		gauge, secondsSince(lastSync))

	// The queue relay (membership.Config.Relay): reported only while the
	// client runs one.
	relayCounter := func(f func(st *membership.Stats) uint64) func(*membership.Stats, time.Time) (float64, bool) {
		return func(st *membership.Stats, _ time.Time) (float64, bool) { return float64(f(st)), st.Relay.Running }
	}
	add("relay", "leading", "1 while this instance's queue relay holds the relay lock and relays orgperm.queue, 0 while another instance's relay leads (or none can be reached). Across instances, the sum is 1 when exactly one leads.",
		gauge, func(st *membership.Stats, _ time.Time) (float64, bool) {
			if st.Relay.Leading {
				return 1, st.Relay.Running
			}
			return 0, st.Relay.Running
		})
	add("relay", "leaderships_total", "Times this instance's relay took the relay lock and began to lead.",
		cnt, relayCounter(func(st *membership.Stats) uint64 { return st.Relay.Leaderships }))
	add("relay", "rounds_total", "Rounds of this instance's relay: calls of orgperm.relay() that returned.",
		cnt, relayCounter(func(st *membership.Stats) uint64 { return st.Relay.Rounds }))
	add("relay", "rows_total", "Rows of orgperm.queue this instance's relay took and sent: invalidation payloads and proofs of delivery.",
		cnt, relayCounter(func(st *membership.Stats) uint64 { return st.Relay.Relayed }))
	add("relay", "errors_total", "Relay connections that failed or were lost, and rounds that failed; each is retried with backoff.",
		cnt, relayCounter(func(st *membership.Stats) uint64 { return st.Relay.Errors }))
	add("relay", "wal_slots_created_total", "Replication slots of the wal transport this instance's relay made, each followed by evicting every cache: a first start, and a slot found missing or invalidated by PostgreSQL (past max_slot_wal_keep_size). After the first, each one means writes were never decoded.",
		cnt, relayCounter(func(st *membership.Stats) uint64 { return st.Relay.WALSlotsCreated }))
	add("relay", "wal_retained_bytes", "While this instance's relay leads in wal mode: the WAL the server keeps for the slot, read about once a second (0 otherwise). It grows while the relay falls behind; if the relay stops, the slot keeps the WAL from this point on, up to max_slot_wal_keep_size.",
		gauge, func(st *membership.Stats, _ time.Time) (float64, bool) {
			return float64(st.Relay.WALRetainedBytes), st.Relay.Running
		})
	lastRound := func(st *membership.Stats) (time.Time, bool) { return st.Relay.LastRound, st.Relay.Running }
	add("relay", "last_round_timestamp_seconds", "Unix time at which this instance's relay last finished a round. Absent until its first.",
		gauge, timestamp(lastRound))
	add("relay", "seconds_since_round", "Seconds since this instance's relay last finished a round. While it leads, more than a few relay intervals means its rounds are stuck and every cache bypasses itself; while it does not lead it is the time since it last led. Absent until its first round.",
		gauge, secondsSince(lastRound))
}

// timestamp is a gauge of the instant get returns, in Unix seconds; absent
// while get says not to report it or the instant is zero (never yet).
func timestamp(get func(*membership.Stats) (time.Time, bool)) func(*membership.Stats, time.Time) (float64, bool) {
	return func(st *membership.Stats, _ time.Time) (float64, bool) {
		t, ok := get(st)
		return float64(t.UnixNano()) / 1e9, ok && !t.IsZero()
	}
}

// secondsSince is a gauge of the seconds from the instant get returns to
// the scrape (never negative); absent as for timestamp.
func secondsSince(get func(*membership.Stats) (time.Time, bool)) func(*membership.Stats, time.Time) (float64, bool) {
	return func(st *membership.Stats, now time.Time) (float64, bool) {
		t, ok := get(st)
		return max(now.Sub(t).Seconds(), 0), ok && !t.IsZero()
	}
}

// Describe sends the descriptors of every metric the collector may report.
// It implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.metrics {
		ch <- m.desc
	}
	ch <- c.evictions
}

// Collect reads one Stats snapshot and sends it as constant metrics. It
// implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	st := c.src.Stats()
	now := c.now()
	for _, m := range c.metrics {
		if v, ok := m.value(&st, now); ok {
			ch <- prometheus.MustNewConstMetric(m.desc, m.typ, v)
		}
	}
	for _, e := range []struct {
		reason string
		n      uint64
	}{
		{"capacity", st.Cache.CapacityEvictions},
		{"key", st.Cache.EvictedKey},
		{"org", st.Cache.EvictedOrg},
		{"user", st.Cache.EvictedUser},
		{"all", st.Cache.EvictedAll},
	} {
		ch <- prometheus.MustNewConstMetric(c.evictions, prometheus.CounterValue, float64(e.n), e.reason)
	}
}
