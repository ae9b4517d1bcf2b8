// Package pgtest gives tests a real PostgreSQL with orgperm's schema: for
// this repository's tests, and for an app's own tests of code that uses
// orgperm.
//
// When DATABASE_URL is set, tests use that server (its user needs the right
// to create databases). Otherwise the first test to ask starts a throwaway
// cluster from the local PostgreSQL binaries, one per test binary: in a temp
// directory, with its socket there, on a free 127.0.0.1 port, with
// durability off for speed. The binaries are taken from the directory
// ORGPERM_PG_BIN names when it is set (it must hold initdb and postgres; to
// test against another PostgreSQL version, as `make test-pg` does), else
// from initdb on PATH, else from /usr/lib/postgresql/*/bin (Debian, Ubuntu),
// /usr/pgsql-*/bin (RHEL) or /usr/local/pgsql/bin, newest version first.
//
// Platforms: Linux and macOS; on Windows the package compiles and runs
// clusters as the current user. initdb refuses to run as root, so as root
// (Unix) the cluster runs as the unprivileged user postgres (or nobody). On
// Linux the kernel stops a cluster whose test binary died without cleaning
// up; elsewhere such a cluster runs on until stopped.
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
