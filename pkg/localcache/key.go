package localcache

// Key identifies a cached value: the permission set of User in Org.
//
// Org == "" is reserved for user-wide keys, values about a user across all
// organizations (such as "does the user hold an active membership anywhere").
// InvalidateOrg("") evicts every user-wide key, and InvalidateUser reaches
// them like any other key of that user.
type Key struct {
	Org, User string
}

// scopeKind names what an invalidation covers. Its values index
// counters.evicted.
type scopeKind uint8

const (
	scopeKey scopeKind = iota
	scopeOrg
	scopeUser
	scopeAll
	numScopes
)

// scope is an invalidation scope: one key, every key of an org (key.Org),
// every key of a user (key.User), or everything.
type scope struct {
	kind scopeKind
	key  Key
	hash uint64 // the key's hash, for scopeKey
}

// covers reports whether k is inside the scope.
func (sc scope) covers(k Key) bool {
	switch sc.kind {
	case scopeKey:
		return k == sc.key
	case scopeOrg:
		return k.Org == sc.key.Org
	case scopeUser:
		return k.User == sc.key.User
	default:
		return true
	}
}
