// Package soak is orgperm's consistency soak: writers change memberships,
// role assignments, role names and permissions and data grants with raw
// SQL (on a pool of their own, not through the library), while readers
// check permission sets and user-wide answers on several app instances
// (Clients in one process, each with its own pool), and faults cut the
// instances' listeners off: a terminated listener backend, a server
// restart. It counts every read that is stale beyond the notification
// bound, which must be none. cmd/soak runs it; the integration tests run a
// short one.
//
// # What "stale" means here
//
// Notifications reach an instance some microseconds after a commit, so a
// read may miss a write that committed a moment ago: that is the bound the
// design accepts. A read is stale only if it misses a write whose
// notification the reading instance had already applied before the read
// began. The soak makes that decidable with no timing guesswork:
//
//   - Components. The data is cut into components, each written by exactly
//     one writer goroutine (a writer owns whole organizations), so the
//     commit order of a component is its writer's order: per (org, user)
//     key the membership row, the role assignment set and the data grants;
//     per role of an org its name and its permission set. Every write bumps
//     the component's version and writes it into the data (see layout), so
//     that a permission set reveals the version of every component it
//     shows. Each writer records a version as committed once its commit
//     returned, and as begun before it tries.
//
//   - Sentinels. A clock goroutine, every 20 to 50 ms, snapshots the
//     committed version of every component, then commits a sentinel
//     notification (orgperm.evict_user('soak-sentinel-<n>')). PostgreSQL
//     delivers notifications in commit order, and the listener applies
//     them in that order before calling OnInvalidate; so when an instance's
//     OnInvalidate sees sentinel n, it has applied the notification of
//     every write in snapshot n. That snapshot becomes the instance's
//     watermark.
//
//   - Reads. A reader loads its instance's watermark W, then reads. The
//     cache's first rule says an entry present after an invalidation of its
//     key was applied began its fill after it, hence after the write
//     committed: a correct instance can only show versions at or above W.
//     A version below W is a stale read. A version above the highest begun
//     when the read returned was never written: that, a torn set, or an
//     error returned together with an answer is an inconsistent read. An
//     error alone (the server is down) is a failed-closed read, never stale.
//
// A user-wide answer (UserHasActiveMembership) is a boolean; each user is a
// member of one org only, so the answer must be the status of some version
// of that membership between W's and the highest begun when the read
// returned.
//
// # Faults and the watermark
//
// While an instance is unsynced its reads bypass the cache and go to the
// database, so they see every committed write: W stays a valid lower
// bound, and is kept. Notifications sent meanwhile are lost, sentinels
// included, so W does not advance. When LISTEN is back the cache is purged
// and any fill begun before the purge is refused; every entry from then on
// began its fill after the writes of W committed (they committed before W
// was even taken). So W is still a lower bound after the resync, and the
// next sentinel the instance applies advances it again, by the same
// argument as before. Nothing about the fault needs to be timed.
//
// # Verification
//
// After each fault, once every instance has resynced, and at the end, the
// soak pauses the writers and readers, sends a sentinel, waits until every
// instance has applied it, and reads every key on every instance: through
// the cache, and with membership.FullyConsistent. They must be identical
// (everything but ComputedAt).
package soak
