package membership

import (
	"github.com/orgperm/orgperm/pkg/listener"
	"github.com/orgperm/orgperm/pkg/localcache"
)

// sourceEvict is the source of explicit evictions (Client.Evict*, and the
// orgperm.evict_* SQL functions).
const sourceEvict = "evict"

// collapseScopes is the number of org and user scopes in one invalidation
// above which it empties the whole cache instead: one purge costs what the
// cache holds, once, while a payload naming thousands of orgs (a flood of
// spoofed notifications, or a bulk write) would cost a lookup per name and
// shard.
const collapseScopes = 64

// evictor is what evict drives: the local cache, or a recorder in tests.
type evictor interface {
	InvalidateKey(localcache.Key)
	InvalidateOrg(org string)
	InvalidateUser(user string)
	InvalidateAll()
}

// evict is the one eviction policy: what an invalidation removes from a
// cache, whether it came as a notification, from this instance's own write,
// or from an explicit eviction.
//
// Permission sets are keyed by (org, user); user-wide answers by (org "",
// user). A user-wide answer depends only on the memberships table, so
// invalidations from tables that cannot change a membership (roles,
// role_permissions, membership_roles, data_access) leave them alone; every
// other source, including "evict", "ddl", malformed payloads and unknown
// future sources, evicts them too.
func evict(c evictor, inv listener.Invalidation) {
	if inv.All || len(inv.Orgs)+len(inv.Users) > collapseScopes {
		c.InvalidateAll()
		return
	}
	userWide := affectsUserWide(inv.Source)
	for _, o := range inv.Orgs {
		c.InvalidateOrg(o)
	}
	if userWide && len(inv.Orgs) > 0 {
		c.InvalidateOrg("") // every user-wide key
	}
	for _, m := range inv.Members {
		c.InvalidateKey(localcache.Key{Org: m.Org, User: m.User})
		if userWide {
			c.InvalidateKey(localcache.Key{User: m.User})
		}
	}
	for _, u := range inv.Users {
		c.InvalidateUser(u) // its sets and its user-wide key
	}
}

func affectsUserWide(source string) bool {
	switch source {
	case "roles", "role_permissions", "membership_roles", "data_access":
		return false
	}
	return true
}

// evictRoles is the eviction policy of the role definitions, cached per
// org under Key{Org: org}: what can change a role's definition (its name,
// its permissions, a codename, the org's grants to it) notifies its org, or
// everything for a system role, the catalog, TRUNCATE and DDL. So every
// org scope and every "all" evicts them, whatever the source: member scopes
// cannot change a definition, and an org scope that could not either (a
// bulk membership write collapsed to its org) costs one extra read of the
// org's definitions.
func evictRoles(c evictor, inv listener.Invalidation) {
	if inv.All || len(inv.Orgs) > collapseScopes {
		c.InvalidateAll()
		return
	}
	for _, o := range inv.Orgs {
		c.InvalidateKey(localcache.Key{Org: o})
	}
}
