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
	// ProofsSent is the number of proofs of delivery this instance sent;
	// ProofFailures those that could not be sent or did not come back in
	// time.
	ProofsSent, ProofFailures uint64
	// PoolerRefusals is the number of listening connections refused,
	// without a LISTEN, because they went through a pooler in transaction
	// mode (see PoolerError).
	PoolerRefusals uint64
	// ForeignProofs is the number of other instances' proofs received
	// (each may refresh this instance's lease at no cost); MalformedProofs
	// the payloads on the proof channel that did not parse (ignored).
	ForeignProofs, MalformedProofs uint64
	// ClockJumps is the number of times the monotonic clock was found to
	// have stood still while the wall clock went on (a system suspend, or
	// the wall clock set forward): each purged the Target and proved
	// delivery again (see ClockWatchInterval).
	ClockJumps uint64
	// LastProofRTT is the round trip of the last own proof.
	LastProofRTT time.Duration
	// LastSync is when the Target was last synced; LastProof when an own
	// proof last came back. Zero if never.
	LastSync, LastProof time.Time
	// ProvenLSN and ProvenTimeline are the position (Position) of the
	// furthest own proof back while synced (0 if none since the last
	// sync).
	ProvenLSN      uint64
	ProvenTimeline uint32
	// State is the current state, and Reason why it is not Synced (nil
	// when it is; see Listener.Err).
	State  State
	Reason error
}
