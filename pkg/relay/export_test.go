package relay

import "time"

// SetStatementTimeout sets the first deadline of r's statements (before
// Start), for tests that need it short.
func SetStatementTimeout(r *Relay, d time.Duration) { r.baseTimeout = d }

// KeepaliveSQL is the statement that sets the keepalives of a relay's
// session.
var KeepaliveSQL = keepaliveSQL

// WaitVisible is waitVisible.
var WaitVisible = waitVisible

// ScopeSet is a source's scopes, for TestScopeSetBounded.
type ScopeSet = scopeSet

// MaxScopes is walMaxScopes.
const MaxScopes = walMaxScopes

// Member, Org and Counts expose a ScopeSet.
func (s *ScopeSet) Member(o, u string) { s.member(o, u) }
func (s *ScopeSet) Org(o string)       { s.org(o) }
func (s *ScopeSet) Counts() (everything bool, orgs, members int) {
	return s.everything, len(s.orgs), len(s.members)
}
