// Package membership is orgperm's domain: organization-scoped memberships,
// roles, permissions and record-level data access, stored in PostgreSQL
// (schema orgperm), read as one immutable PermissionSet per (org, user) in
// one database round trip, and checked in memory.
//
// # The model
//
// Organizations and users belong to the app; their IDs are text (1 to 128
// bytes, no control characters). In each organization a user may hold a
// membership with a status (active, invited, suspended, revoked) and an
// optional window [valid_from, valid_until). A member holds roles, each
// optionally until a time (time-bound elevation): system roles (org_id NULL,
// offered in every organization) and roles of that organization, never a
// role of another one (the database's guard trigger refuses it, and Load
// ignores one that slipped in anyway). A role is a named set of permission
// codenames from the catalog, Django style (billing.view_invoice). Data
// access grants, made in one organization to a user or to a role, cover one
// record of a resource type or all records of it.
//
// # The permission set
//
// [Store.Load] evaluates everything at one instant: the database's clock,
// read in the fill's own statement (so that every instance, whatever its
// host's clock says, gives the same answer), or an instant the caller
// passes. Bounds of 'infinity' and '-infinity' compare as PostgreSQL orders
// them ('infinity' as an end is an open end; as a start, a window that never
// opens):
//
//   - Active: status active, valid_from <= at (inclusive; NULL is open) and
//     at < valid_until (exclusive; NULL is open). Exactly at valid_from the
//     member is in; exactly at valid_until they are out.
//   - Roles: held when the assignment's valid_until is NULL or after at;
//     exactly at valid_until the role is gone.
//   - Permissions: the union of the held roles' codenames.
//   - Data access, per resource type: all of the type, or a set of IDs,
//     from grants of the set's organization to the user or to a held role.
//   - ValidUntil: the first instant after at at which the set would change
//     with no write (a valid_from to come, valid_until, the end of a held
//     role's assignment); a cache may keep the set until then.
//
// Deny by default: a nil set, a user with no membership, a membership that
// is not active or outside its window grants nothing at all, neither
// permissions nor data access; a grant never crosses organizations. The
// checks ([PermissionSet.Has], HasAny, HasAll, CanAccess, AccessibleIDs) are
// map lookups that do not allocate; [PermissionSet.Explain] and
// [PermissionSet.ExplainAccess] say which role or grant allowed a check, or
// why it was denied ([Reason]).
//
// # JSON
//
// A PermissionSet encodes to a stable, documented JSON form (the seeds'
// "permission JSON"), for front ends, and decodes from it:
//
//	{"org":"acme","user":"alice","status":"active","active":true,
//	 "window":{"from":null,"until":null},
//	 "roles":[{"id":1,"name":"viewer","system":true,"valid_until":null}],
//	 "permissions":["billing.view_invoice"],
//	 "data_access":{"invoice":{"all":false,"ids":["inv-1"]},"customer":{"all":true,"ids":[]}},
//	 "valid_until":null,"computed_at":"2030-01-01T12:00:00Z"}
//
// Lists are sorted; times are RFC 3339 in UTC, null for none. See
// [PermissionSet.MarshalJSON].
//
// # Reads and writes
//
// [Store.Load] is one SQL statement (one snapshot) whatever the size of the
// set; [Store.LoadMany] is one pgx batch; [Store.LoadUserActive] answers the
// first seed's user_has_active_membership in one statement. The admin
// writes ([Store.AddMember], [Store.CreateRole], [Store.AssignRole],
// [Store.GrantDataAccess], ...) each run in one transaction; through a
// Client ([Client.Store], [Client.WriteTx]) they evict the Client's own
// cache at once with the same invalidation the triggers send, under the
// same eviction policy; the database's triggers tell every other process.
// Rows of tables that inherit from orgperm's are not part of the model:
// every read is FROM ONLY.
//
// # Reading the model
//
// Admin screens and scripts read the model through the Store, never the
// cache: [Store.ListMembers] (status, window and roles; by status, by
// role), [Store.UserOrgs] (an org switcher, with the user-wide answer),
// [Store.ListRoles] and [Store.RoleByName], [Store.WhoHas] and
// [Store.WhoCanAccess] (the effective holders, through roles, honouring
// windows and role expiry), [Store.ListGrants]. Each is one statement,
// org-scoped, paginated with an opaque cursor ([Page].Next), evaluated at
// an instant ([ListOptions].At; zero is the database's time), and its
// answer is exactly what Store.Load of every member would give. These
// reads are not cached.
//
// Setup scripts write idempotently: [Store.EnsurePermissions],
// [Store.EnsureRole] (exactly this set of codenames),
// [Store.RenameRoleByName].
//
// # Audit trail
//
// Every change to the six tables, by any path, is recorded in
// orgperm.audit_log in the same transaction (sql/audit.sql): when, which
// table and operation, the row's key, its old and new values, the database
// role, and the actor that [WithActor] puts in a context (raw SQL sets
// orgperm.actor itself). [Store.AuditHistory] reads the history of an org,
// a member or an actor; [Store.PruneAudit] applies a retention period.
//
// # The Client and its cache
//
// [New] returns a [Client]: every check goes request memo
// ([WithRequestCache]) → local cache (pkg/localcache) → single flight →
// [Store]. A listener (pkg/listener) applies the triggers' notifications to
// the cache; while it is not synced, or its freshness lease has run out
// (Config.Lease), checks go to the database (still coalesced, never joining
// a load that began before them). [FullyConsistent] bypasses the cache for
// one context; [Client.Sync], [Client.Token] with [WithToken], and
// [Client.WriteTx] give read-your-writes on request; [Client.Check] says
// whether the cache is in service, and why not. A check's reads are
// bounded by Config.FillTimeout whatever its context, so that a pooled
// connection a silent network drop left dead cannot hold it for long.
//
// The cache holds two kinds of values: the permission set of (org, user),
// and the user-wide answer of [Client.UserHasActiveMembership] under a key of
// the user alone. A notification evicts:
//
//   - (org, user): that set; and, from the memberships table or an explicit
//     orgperm.evict_member, the user's user-wide answer too (the user's
//     membership row may have changed);
//   - an org from the memberships table (a bulk write collapsed to the org),
//     or from an explicit orgperm.evict_org: every set of the org, and every
//     user-wide answer, since the notification does not say which users'
//     memberships changed;
//   - an org, or (org, user), from roles, role_permissions,
//     membership_roles or data_access: the sets only. Those tables cannot
//     change whether a membership is active, which is all the user-wide
//     answer depends on;
//   - a user (orgperm.evict_user): every set of the user and the user-wide
//     answer;
//   - everything (a system role, the permission catalog, TRUNCATE,
//     orgperm.evict_all, a payload that does not parse): everything.
//
// A notification from a source this version does not know evicts the
// user-wide answers too: only sources proven harmless leave them.
//
// # Role definitions
//
// A Client's fill does not read the role tables for every member. It keeps
// the role definitions of each org (every role usable there, its own and
// the system roles: name, codenames, the org's data grants to it) in a
// second local cache (Config.RoleCapacity orgs), reads them in the same
// round trip as the first fill in the org, and then fills a set with one
// statement over the member's own rows (the membership, the roles it holds
// with their expiry, the grants to the user), composing what the held roles
// grant in Go. The set is the one [Store.Load] returns. Every notification
// of an org, and every "everything", evicts the org's definitions before
// the sets, under the same rules (a read that began before an eviction is
// not kept; nothing is kept or used while the cache is unsynced or past its
// lease). A held role the definitions do not know (created after they were
// read: a new role sends no notification) makes that fill read every table
// and the definitions again. Fully consistent reads, replica fills and
// batch warm-ups always read every table.
//
// # The same checks in SQL, and row-level security
//
// Migration 00004 adds SQL functions with the answers of the checks above
// (orgperm.has_permission, orgperm.can_access, orgperm.accessible_ids, ...)
// and orgperm.protect_table, which writes a row-level security policy for an
// app's table from the same grants. The policy's principal is set per
// transaction: [SetPrincipal], or [SetPrincipalFromContext] with the
// principal an HTTP middleware put in the context ([WithPrincipal]). See the
// README's "SQL interface".
//
// # Errors
//
// Bad input is rejected before any SQL with a [*ValidationError] that
// unwraps to a sentinel ([ErrInvalidID], [ErrInvalidCodename], ...); a
// broken rule only the database can see (an unknown role, a role of another
// organization, a name taken) maps the violated constraint to its sentinel
// ([ErrUnknownRole], [ErrRoleOrgMismatch], [ErrRoleExists], ...), so
// errors.Is works either way and nothing is written. Any other database
// error is returned wrapped, with no set: callers must deny (fail closed).
package membership
