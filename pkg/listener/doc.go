// Package listener keeps an in-process cache coherent with PostgreSQL: it
// LISTENs for the notifications orgperm's triggers send, parses them, and
// drives a Target (the cache wiring) with what to evict and when the cache
// cannot be trusted. It knows nothing of permissions, only the payload
// protocol and the Target interface. It is built on
// github.com/jackc/pgxlisten.
//
// # Protocol
//
// The triggers of sql/triggers.sql, and the orgperm.evict_* functions, send
// one JSON object per statement and scope on the channel
// "orgperm_invalidate" (version 1):
//
//	{"v":1,"t":"<source>","all":true}                   everything
//	{"v":1,"t":"<source>","orgs":["o1","o2"]}           every key of these orgs
//	{"v":1,"t":"<source>","members":[["o1","u1"]]}      these (org, user) keys
//	{"v":1,"t":"<source>","users":["u1"]}               every key of these users
//
// ParsePayload reads it strictly, with a hand-written parser (it runs for
// every write on every instance: it allocates only the ID slices, is several
// times faster than encoding/json, and is fuzzed). Unknown fields are
// skipped so that version 1 can grow; another version is
// ErrUnsupportedVersion. A payload only ever removes, so anyone who can
// NOTIFY on the channel can at worst cause misses; the listener therefore
// answers a payload it cannot parse by evicting everything
// (Source "malformed"), never by ignoring it, and never crashes on one.
//
// # State machine
//
//	Connecting --LISTEN in place, own proof back, Verify passes, Target.Resync--> Synced
//	Synced --connection error, proof lost or late, Stop--> Unsynced (Target.MarkUnsynced)
//	Synced --"ddl" payload, a proof with another schema fingerprint--> Unsynced
//	Unsynced --(re)connected or re-verified, own proof back, Verify passes--> Synced
//
// Start marks the Target unsynced, connects once synchronously (so that a
// bad DSN fails there), and listens in the background. LISTEN succeeding
// proves nothing (a transaction pooler accepts it and delivers nothing), so
// on every connection, once LISTEN is in place on both channels (pgxlisten's
// HandleBacklog), the listener sends a proof of delivery through the pool
// and waits for it on the listening connection; then it runs Config.Verify
// (the schema guard); only then is the Target purged and synced (Resync)
// and its lease started (Prove). Whatever was committed before the purge is
// covered by it; whatever is committed after the proof's LISTEN arrives as
// a notification. Err says why the Target is not synced.
//
// Before LISTEN, every connection is checked for a pooler in transaction
// mode (a backend process ID that differs from the one the connection
// reported, and a second connection handed the same backend): such a
// connection is closed without a LISTEN, since a LISTEN left on a pooled
// server connection can crash the pooler, and Err matches
// ErrTransactionPooler (a *PoolerError) until a later connect passes.
//
// Notifications lost while the connection was down or in doubt are never
// trusted away (DESIGN.md rule 2): pgxlisten has no "disconnected" signal,
// so the listener calls Target.MarkUnsynced on every error pgxlisten logs
// (LogError), before every connect, on a lost proof and on Stop, and the
// cache bypasses itself until the next Resync. pgxlisten also waits a fixed
// minute between reconnects by default; the listener sets that delay to
// nothing and waits in its own Connect instead, with exponential backoff and
// jitter (Config.ReconnectDelay, Config.MaxReconnectDelay), reset once a
// connection proves healthy. A connection attempt that has not listened
// within Config.ConnectTimeout (a network gone silent mid-handshake) is
// abandoned.
//
// # Proofs of delivery and the lease
//
// A half-open TCP connection (a peer gone without a FIN), or a pooler that
// accepted LISTEN and will never deliver, looks healthy from the client:
// reads just never return. The Target's freshness lease bounds what that can
// cost (DESIGN.md rule 3): the cache answers only while its newest proof is
// younger than the lease, and asks (RequestProof) for a new one while
// lookups arrive. A proof is a notification on the shared channel
// "orgperm_proof", sent through the pool by orgperm.prove (NOTIFY, or
// through the queue and its relay in queue mode), carrying the database's WAL
// insert position and clock and orgperm.fingerprint(); see proof.go for
// what each instance concludes from its own proofs and from the proofs of
// others (one proof serves every instance, so proof traffic is
// O(instances) in all, not O(instances²)). A proof sent that does not
// come back within Config.ProofTimeout marks the Target unsynced and
// replaces the connection: the listener cancels the context of that
// pgxlisten.Listen session, which makes pgx close the socket even if the
// peer is silent, and listens again. A proof that never reaches the
// server (ErrProofNotSent: no connection from the pool within
// Config.ProofTimeout, or a failure before anything was written) says
// nothing about the listening connection: the
// listener keeps it and leaves the Target's contents alone, the Target's
// lease runs out (its owner reads the database), Sync and WaitPosition
// fail at once, and the listener sends the next proof after a backoff;
// when it comes back the lease resumes on what the Target held, which
// the listening connection kept current all along.
//
// Sync and WaitLSN give read-your-writes on request: they return once an
// own proof sent after the call (or past a WAL position) has come back,
// sharing proofs with every concurrent caller and with the lease.
//
// # Goroutines
//
// The listener owns its goroutines: one runs pgxlisten, one (the prover)
// sends proofs and runs the sync steps, and a short-lived one bounds each
// connection attempt. Stop cancels them all and waits for them to exit.
package listener
