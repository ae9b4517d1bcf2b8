// Package promcollector exports the counters of a membership.Client (its
// cache, its listener and its queue relay) to Prometheus: the seed
// design's "monitor cache hit ratios". It is a package of its own so that
// an app that does not use Prometheus imports nothing of
// client_golang.
//
//	client, err := membership.New(ctx, pool, membership.Config{})
//	...
//	prometheus.MustRegister(promcollector.New(client))
//	http.Handle("/metrics", promhttp.Handler())
//
// The collector holds no state: each scrape takes one snapshot of
// client.Stats() and reports it. To register two clients with one registry,
// tell them apart with [WithConstLabels].
//
// # Metrics
//
// The local cache (one lookup is one check that reached the shared cache;
// checks answered by a request's memo are not counted):
//
//	orgperm_cache_hits_total                 counter  lookups answered from the cache
//	orgperm_cache_misses_total               counter  lookups with no live entry, while synced
//	orgperm_cache_bypassed_total             counter  lookups that skipped the cache while unsynced
//	orgperm_cache_loads_total                counter  database loads started
//	orgperm_cache_coalesced_total            counter  lookups that joined a load in flight
//	orgperm_cache_fills_total                counter  loaded values stored
//	orgperm_cache_stale_fills_total          counter  loaded values refused (invalidated while loading)
//	orgperm_cache_expired_total              counter  entries past valid_until or the safety TTL
//	orgperm_cache_evictions_total{reason}    counter  entries removed; reason is capacity, key, org, user or all
//	orgperm_cache_entries                    gauge    entries held
//	orgperm_cache_fills_in_flight            gauge    loads and warm-up fills not yet finished
//
// The listener:
//
//	orgperm_listener_notifications_total           counter  notifications received
//	orgperm_listener_malformed_total               counter  payloads that failed to parse (each evicted everything)
//	orgperm_listener_reconnects_total              counter  connections after the first
//	orgperm_listener_proofs_total                  counter  proofs of delivery sent
//	orgperm_listener_proof_failures_total          counter  proofs lost or late
//	orgperm_listener_pooler_refusals_total         counter  connections refused: a pooler in transaction mode
//	orgperm_listener_clock_jumps_total             counter  monotonic clock stood still (a suspend); each purged
//	orgperm_listener_proof_rtt_seconds             gauge    round trip of the last own proof
//	orgperm_listener_synced                        gauge    1 while the cache answers, 0 while it is bypassed
//	orgperm_listener_last_sync_timestamp_seconds   gauge    Unix time of the last resync
//	orgperm_listener_seconds_since_sync            gauge    seconds since the last resync
//
// The queue relay (membership.Config.Relay, docs/DECISIONS.md 53), only
// while the client runs one; a client without a relay reports none of these:
//
//	orgperm_relay_leading                        gauge    1 while this instance's relay holds the relay lock
//	orgperm_relay_leaderships_total              counter  times it took the lock
//	orgperm_relay_rounds_total                   counter  orgperm.relay() calls that returned
//	orgperm_relay_rows_total                     counter  queue rows relayed (payloads and proofs)
//	orgperm_relay_errors_total                   counter  relay connections lost or failed, rounds failed
//	orgperm_relay_last_round_timestamp_seconds   gauge    Unix time the last round finished
//	orgperm_relay_seconds_since_round            gauge    seconds since the last round finished
//	orgperm_relay_wal_slots_created_total        counter  wal slots made, each followed by evicting everything
//	orgperm_relay_wal_retained_bytes             gauge    WAL the server keeps for the wal slot (leader, wal mode)
//
// In wal mode, orgperm_relay_wal_slots_created_total rising after the first
// slot means writes were never decoded (a slot dropped, or invalidated past
// max_slot_wal_keep_size) and every cache was purged; alert on
// orgperm_relay_wal_retained_bytes well below max_slot_wal_keep_size.
//
// In queue mode, sum(orgperm_relay_leading) over the instances is 1 while
// a relay leads; at 0, or with orgperm_relay_seconds_since_round of the
// leader above a few relay intervals, invalidations wait in orgperm.queue,
// proofs stop and every cache bypasses itself (orgperm_listener_synced
// falls to 0). `orgperm doctor` shows the queue's backlog and the leader
// from the database's side.
//
// The hit ratio is rate(orgperm_cache_hits_total[5m]) divided by the rate of
// hits + misses + bypassed. A bypassed rate above zero for long, or
// orgperm_listener_synced at 0, means every check goes to the database.
//
// proof_rtt_seconds, last_sync_timestamp_seconds, seconds_since_sync and
// the relay's last_round_timestamp_seconds and seconds_since_round are
// absent until what they report has happened once (a proof, a resync, a
// round), rather than reporting a misleading 0. The
// time since the last resync is the age of the listening connection while
// synced, not a staleness: the cache is exact while synced, and bypassed
// while not.
package promcollector
