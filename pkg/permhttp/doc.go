// Package permhttp is net/http middleware that lets a request through only
// when its user holds the required permissions in its organization: the
// seed design's organization_console view decorator.
//
// The user comes from the request's context, where the app's own
// authentication middleware put it with [WithUser]; the organization comes
// from the request, by default the {org} wildcard of the route pattern. Both
// are pluggable through [Config].
//
//	client, err := membership.New(ctx, pool, membership.Config{})
//	...
//	requireInvoices, err := permhttp.Require(permhttp.Config{Checker: client}, "billing.view_invoice")
//	...
//	mux.Handle("GET /orgs/{org}/invoices", requireInvoices(invoicesHandler))
//	http.ListenAndServe(addr, authenticate(mux)) // authenticate calls permhttp.WithUser
//
// # Where the organization and the user come from
//
// The middleware looks for each in this order, and takes the first
// non-empty one:
//
//  1. the request's context: [WithOrg], [WithUser], or both at once with
//     [WithPrincipal];
//  2. Config.Org (default: [OrgFromPath]("org")) and Config.User (default:
//     [UserFromContext], which reads what step 1 reads).
//
// Step 1 is how any router works with it: a framework whose path
// parameters net/http cannot see (echo, gin) reads the org in its own
// middleware and stores it with WithOrg before this middleware runs; the
// examples/echo and examples/gin modules of the repository show both.
//
// # Status codes
//
// By default every denial has a small JSON body, the same bytes for every
// request that gets that status (Config.Deny replaces the body and the
// status mapping; see [Denial]):
//
//   - 401 {"error":"unauthorized"}: the request has no user. Every 401
//     carries a WWW-Authenticate challenge (default: Bearer realm="api";
//     see Config.AuthScheme and Config.Realm).
//   - 400 {"error":"bad_request"}: the request names no organization (an
//     empty path value or a missing header). Nothing about any organization
//     is revealed by it; with [OrgFromPath] it usually means that the route
//     pattern lacks the wildcard.
//   - 403 {"error":"forbidden"}: not allowed. The answer is the same whether
//     the organization does not exist, the user is not a member, the
//     membership is not active, or a permission is missing; and an
//     organization ID that is not even valid (too long, control
//     characters) gets it too, so that no caller can tell which
//     organizations exist. So does a user ID that is not valid: such a
//     user cannot be a member of anything.
//   - 503 {"error":"unavailable"}: the check failed (the database cannot be
//     asked, the request was cancelled). It fails closed: nothing is granted
//     and the handler is not called.
//
// Denials carry Cache-Control: no-store. The reason behind a 403 is logged
// at Debug level (see Config.Logger); use membership's Explain to tell a user
// why.
//
// # In the handler
//
// On success the middleware calls the handler with a context that carries
// the checked permission set, read with [Permissions], and a request-scoped
// cache (membership.WithRequestCache): every further check of the same
// (organization, user) in the request is answered from it, without
// touching the shared cache or the database.
//
// # Readiness
//
// [Ready] builds a probe handler over any [ReadinessChecker], such as
// the membership client:
//
//	ready, err := permhttp.Ready(permhttp.ReadyConfig{Checker: client})
//	...
//	mux.Handle("GET /readyz", ready) // 200 when the cache is proven, 503 otherwise
package permhttp
