// Package pgtest gives an app's tests a real PostgreSQL with orgperm's
// schema (and, optionally, the app's own): a fresh database per test,
// dropped when the test ends.
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }
//
//	func TestSomething(t *testing.T) {
//		pool := pgtest.NewPool(t)
//		...
//	}
//
// The server: when TEST_DATABASE_URL is set, tests use the server it names
// (its user needs the right to create databases). Otherwise the first test
// to ask starts a throwaway cluster from the local PostgreSQL binaries, one
// per test binary, stopped by [Run]: in memory (/dev/shm on Linux, when it
// is a tmpfs with 2 GiB free; else the temp directory; $ORGPERM_PG_SCRATCH
// names another place), on a free 127.0.0.1 port, with durability off for
// speed: copying the template into a fresh database takes about 20 ms in
// memory and about 340 ms on a disk. The binaries are taken from
// $ORGPERM_PG_BIN when it is set, else from initdb on PATH, else from
// /usr/lib/postgresql/*/bin (Debian, Ubuntu), /usr/pgsql-*/bin (RHEL) or
// /usr/local/pgsql/bin, newest version first. The first cluster's initdb
// output is kept in the user's cache directory (orgperm/initdb, about 40 MB
// per PostgreSQL installation) and later clusters start from a copy, which
// is faster. DATABASE_URL is not read: it is the variable apps give their
// production database.
//
// Platforms: Linux and macOS; on Windows the package compiles and runs
// clusters as the current user. As root (Unix) the cluster runs as the
// unprivileged user postgres (or nobody), since initdb refuses root. On
// Linux the kernel stops a cluster whose test binary died without cleaning
// up; elsewhere such a cluster runs on until stopped.
//
// Every database is copied from a template that holds the migrations
// (copying is much faster than migrating): orgperm's, then the app's own
// when [Run] is given [WithMigrations]. On a TEST_DATABASE_URL server the
// template (orgperm_tmpl_<hash of the migrations>) stays for the next run;
// a changed migration makes a new one. To remove an old one: ALTER DATABASE
// ... IS_TEMPLATE false, then DROP DATABASE.
package pgtest
