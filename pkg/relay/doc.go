// Package relay runs orgperm's queue relay: in queue mode
// (orgperm.set_transport('queue'), docs/DECISIONS.md 53) the invalidation
// triggers insert their payloads into orgperm.queue instead of NOTIFYing in
// the writer's commit, and a relay sends them.
//
// Every app instance may run a Relay; one at a time leads. A Relay holds a
// dedicated connection, tries to take a session-level advisory lock
// (LockID) on it, and while it holds the lock calls orgperm.relay() every
// Config.Interval: one transaction that deletes every committed row its
// snapshot sees and NOTIFYs them, merged, on the normal channels. The
// others retry the lock every Config.LeaderRetry; when the leader's
// connection or process dies, PostgreSQL releases the lock and another
// takes over. Proofs of delivery travel the same queue, so while no relay
// runs, every instance's cache bypasses itself.
//
// Watching it: Relay.Stats (membership.Client.Stats().Relay) counts rounds,
// rows relayed, leaderships and errors, says whether the relay leads and
// when its last round finished; package promcollector exports them as the
// orgperm_relay_* metrics. From the database's side, `orgperm doctor`
// reports the transport, the rows waiting in orgperm.queue and which
// session holds LockID (pg_locks), and fails when rows wait while no relay
// leads.
//
// The package knows nothing of permissions and nothing of the payloads: the
// merging is orgperm.relay()'s, in SQL.
package relay
