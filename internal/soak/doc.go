// Package soak is orgperm's consistency soak: writers change memberships,
// role assignments, role names and permissions and data grants with raw
// SQL (on a pool of their own, not through the library), while readers
// check permission sets and user-wide answers on several app instances
// (Clients in one process, each with its own pool), and faults cut the
// instances off, loudly or silently. Every read is judged by two
// detectors; cmd/soak runs a long soak, the integration tests short ones.
//
// # Components and versions
//
// The data is cut into components, each written by exactly one writer
// goroutine (a writer owns whole organizations), so the commit order of a
// component is its writer's order: per (org, user) key the membership row,
// the role assignment set and the data grants; per role of an org its name
// and its permission set. Every write bumps the component's version and
// writes it into the data (see layout), so that a permission set reveals
// the version of every component it shows.
//
// # Detector 1: the writers' commit timeline (trusts nothing but the writers)
//
// Each writer records, per version it writes, the instant on the local
// monotonic clock just before the write was sent and the instant just
// after its commit returned (or failed). A reader notes the instant rs
// before a read. A read that shows version v of a component is fresh if no
// later version's commit had returned before rs: then v was the newest
// committed version when the read began, or its successor was still in
// flight. Otherwise the read is stale by rs minus the instant the first
// later committed version's commit returned. That is a lower bound of the
// true staleness (the later version was visible to every transaction begun
// after its commit returned), so there are no false alarms, and it needs
// nothing from the client: notifications lost, a listener that believes
// it is synced, a cache that ignores what it is told all show up. A write
// that returned an error may or may not have committed: it is skipped as a
// bound, and accepted if a read shows it. A read's staleness is the
// largest of its components'; a user-wide answer (a boolean; each user is
// a member of one org only) is judged as the freshest membership version
// whose status gives that answer.
//
// Notification delay makes some reads stale by microseconds to
// milliseconds: that is allowed. A read stale by more than Config.Bound
// (default: the client's freshness lease, 1 s, plus 50 ms: "no answer
// older than the lease under any fault") fails the soak. The report gives
// the number of stale reads, their staleness (p50, p99, max), the number
// beyond the bound, and how many stale reads wrongly allowed (granted
// something the data no longer granted when the read began) or wrongly
// denied; and breaks the reads down by the fault last injected.
//
// # Detector 2: the sentinel watermark (exact, while notifications flow)
//
// A clock goroutine, every 20 to 50 ms, snapshots the committed version of
// every component, then commits a sentinel notification
// (orgperm.evict_user('soak-sentinel-<n>')). PostgreSQL delivers
// notifications in commit order, and the listener applies them in that
// order before calling OnInvalidate; so once an instance's OnInvalidate
// sees sentinel n, it has applied the notification of every write in
// snapshot n, which becomes its watermark. The cache's first rule says an
// entry present after an invalidation of its key was applied began its
// fill after it: a correct instance can only show versions at or above its
// watermark. A read below it is a failure, however recent the write.
//
// It is kept because it is exact where the timeline detector tolerates the
// bound: a missed eviction (a trigger or an eviction scope that forgets a
// key) is caught at once, with no bound. It cannot see lost notifications:
// when they stop arriving the watermark stops too, and nothing is judged
// against it. That is what detector 1 is for. While an instance is
// unsynced its reads go to the database, and after a resync every entry
// began its fill after the purge, so the watermark stays a valid lower
// bound across faults.
//
// A version above the highest any writer had begun when the read returned
// was never written: that, a torn set, or an error returned together with
// an answer is an inconsistent read. An error alone (the server is down, a
// read timed out in a black hole) is a failed-closed read, never stale.
//
// # Faults
//
// Config.Faults lists the faults injected, one every FaultEvery, cycling:
//
//   - terminate-one, terminate-all: listener backends terminated;
//   - restart: the server restarted (a throwaway server only);
//   - storm: a role created for the soak with LOGIN and no orgperm
//     privilege sends spoofed 8 KB payloads naming about a thousand
//     organizations each on orgperm_invalidate, StormRate a second for
//     FaultHold, while the writes go on;
//   - blackhole-listener: the listeners' connections, which go through a
//     TCP proxy (internal/faultproxy, via membership.Config.ListenerConnect),
//     black-holed for FaultHold: bytes dropped, nothing closed;
//   - blackhole-all: the listeners' and the pools' proxies black-holed
//     together; the writers, on their own connections, go on.
//
// Config.PoolerURL puts a transaction pooler (internal/pgbouncer) between
// the instances and the database, pool and listener alike.
//
// The default list is the loud faults and the storm; cmd/soak adds the
// silent ones. The silent faults (the black holes, the pooler) defeat a
// client that trusts its cache on LISTEN alone: before the freshness
// lease, they made reads stale by up to 4.8 s (black holes) and 6.2 s
// (PgBouncer), which this soak reported and failed on.
//
// # Verification
//
// After each fault, and at the end, the soak pauses the writers and
// readers, and reads every key on every instance, through the cache and
// with membership.FullyConsistent: they must be identical (everything but
// ComputedAt). It compares as soon as every instance has applied a
// sentinel sent after the pause (so every write), or, when none arrives
// within the bound (notifications lost, a pooler), once the bound has
// passed since the pause: from then on no answer may miss a write that
// committed before it. Before the final round, when faults were injected,
// it waits (a minute at most, else the run fails) until every instance is
// synced again (not through a pooler): a cache that never comes back into
// service after the last fault is an error, though it bypasses itself
// correctly.
//
// In queue mode (Config.Queue) and wal mode (Config.WAL) Config.Relays
// instances run the relay; with
// the black holes, the relays connect through the listeners' proxy, so
// that both black holes cut the relay too.
package soak
