package listener

import (
	"strconv"
	"time"
)

// State is where the listener stands with respect to its Target.
type State int32

const (
	// Connecting: the listener has not been synced yet (before Start, and
	// from Start until LISTEN is first in place). The Target is unsynced.
	Connecting State = iota
	// Synced: LISTEN is in place and the Target has been purged since; every
	// later write reaches the Target.
	Synced
	// Unsynced: the connection was lost or is in doubt (and after Stop);
	// notifications may be lost, the Target is unsynced.
	Unsynced
)

// String returns "connecting", "synced" or "unsynced".
func (s State) String() string {
	switch s {
	case Connecting:
		return "connecting"
	case Synced:
		return "synced"
	case Unsynced:
		return "unsynced"
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// Stats are the listener's counters since New.
type Stats struct {
	// Notifications is the number of payloads received on the invalidation
	// channel, malformed ones included.
	Notifications uint64
	// Malformed is the number of payloads that failed to parse (each evicted
	// everything).
	Malformed uint64
	// Reconnects is the number of connections established after the first.
	Reconnects uint64
	// HeartbeatsSent is the number of heartbeats sent (or attempted) through
	// the pool.
	HeartbeatsSent uint64
	// HeartbeatFailures is the number of heartbeats that failed to be sent
	// or did not come back within Config.HeartbeatTimeout.
	HeartbeatFailures uint64
	// LastHeartbeatRTT is the round trip of the last successful heartbeat:
	// from sending it through the pool to receiving it on the listening
	// connection.
	LastHeartbeatRTT time.Duration
	// LastSync is when the Target was last resynced; zero if never.
	LastSync time.Time
	// State is the current state.
	State State
}
