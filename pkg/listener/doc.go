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
//	Connecting --LISTEN in place, Target.Resync--> Synced
//	Synced --connection error, failed heartbeat, Stop--> Unsynced (Target.MarkUnsynced)
//	Unsynced --reconnected, LISTEN in place, Target.Resync--> Synced
//
// Start marks the Target unsynced, connects once synchronously (so that a
// bad DSN fails there), and listens in the background. On every
// connection, once LISTEN is in place on every channel (pgxlisten's
// HandleBacklog), the listener calls Target.Resync: the cache is purged and
// trusted again. Whatever was committed before LISTEN is covered by the
// purge; whatever is committed after it arrives as a notification.
//
// Notifications lost while the connection was down or in doubt are never
// trusted away (DESIGN.md rule 2): pgxlisten has no "disconnected" signal,
// so the listener calls Target.MarkUnsynced on every error pgxlisten logs
// (LogError), before every connect, on a failed heartbeat and on Stop, and
// the cache bypasses itself until the next Resync. pgxlisten also waits a
// fixed minute between reconnects by default; the listener sets that delay
// to nothing and waits in its own Connect instead, with exponential backoff
// and jitter (Config.ReconnectDelay, Config.MaxReconnectDelay), reset once
// a connection proves healthy. A connection attempt that has not synced
// within Config.ConnectTimeout (a network gone silent mid-handshake) is
// abandoned.
//
// # Heartbeat
//
// A half-open TCP connection (a peer gone without a FIN), or a pooler that
// accepted LISTEN and will never deliver, looks healthy from the client:
// reads just never return. So while synced, every Config.HeartbeatInterval
// the listener sends pg_notify('orgperm_hb_<InstanceID>', '<seq>') through
// the pool, which must come back on the listening connection within
// Config.HeartbeatTimeout (DESIGN.md rule 3). Each instance pings on a
// channel of its own, so a hundred instances do not each receive a hundred
// heartbeats. When a heartbeat fails, the Target is marked unsynced and the
// connection replaced: the listener cancels the context of that
// pgxlisten.Listen session, which makes pgx close the socket even if the
// peer is silent, and listens again. A heartbeat the pool fails to send
// counts as a failure too (fail safe: nothing proves notifications still
// arrive).
//
// # Goroutines
//
// The listener owns its goroutines: one runs pgxlisten, one sends
// heartbeats, and a short-lived one bounds each connection attempt. Stop
// cancels them all and waits for them to exit.
package listener
