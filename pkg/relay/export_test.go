package relay

import "time"

// SetStatementTimeout sets the first deadline of r's statements (before
// Start), for tests that need it short.
func SetStatementTimeout(r *Relay, d time.Duration) { r.baseTimeout = d }

// KeepaliveSQL is the statement that sets the keepalives of a relay's
// session.
const KeepaliveSQL = keepaliveSQL
