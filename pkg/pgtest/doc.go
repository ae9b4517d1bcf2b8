// Package pgtest gives tests a real PostgreSQL with orgperm's schema: for
// this repository's tests, and for an app's own tests of code that uses
// orgperm.
//
// When DATABASE_URL is set, tests use that server (its user needs the right
// to create databases). Otherwise the first test to ask starts a throwaway
// cluster from the local PostgreSQL binaries (initdb on PATH, or under
// /usr/lib/postgresql/*/bin), one per test binary: in a temp directory, with
// its socket there, on a free 127.0.0.1 port, with durability off for speed.
// initdb refuses to run as root, so as root the cluster runs as the
// unprivileged user postgres (or nobody).
//
// Every test gets a fresh database, copied from a template that holds the
// migrations (copying is much faster than migrating), and dropped when the
// test ends:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }
//
//	func TestSomething(t *testing.T) {
//		pool := pgtest.NewPool(t)
//		...
//	}
//
// On a DATABASE_URL server the template (orgperm_tmpl_<hash of the
// migrations>) stays for the next run; a changed migration makes a new one.
// To remove an old one: ALTER DATABASE ... IS_TEMPLATE false, then DROP
// DATABASE.
//
// Tests that restart or cut their server take one of their own with
// [StartServer]; [NewProxy] puts a TCP proxy in front of a server that a
// test can cut silently.
package pgtest
