// Package pgcluster runs throwaway PostgreSQL clusters from the local
// binaries, for orgperm's own tests and programs (cmd/demo, cmd/soak,
// bench): no Docker. It is the process machinery behind pkg/pgtest, and
// the server that tests restart ([Cluster.Restart]) or cut.
//
// [Start] runs initdb in a scratch directory (scratch.go: memory when the
// machine has a tmpfs with room, else the temp directory) and postgres on a
// free 127.0.0.1 port with its socket there and durability off for speed, as
// the superuser postgres with trust authentication. The binaries are taken
// from the directory $ORGPERM_PG_BIN names when it is set (it must hold
// initdb and postgres; `make test-pg` sets it to test another PostgreSQL
// version; a lib directory beside it goes first on the servers'
// LD_LIBRARY_PATH), else from initdb on PATH, else from
// /usr/lib/postgresql/*/bin (Debian, Ubuntu), /usr/pgsql-*/bin (RHEL) or
// /usr/local/pgsql/bin, newest version first. initdb runs once per
// installation: its output is kept in the user's cache directory and later
// clusters start from a copy (initcache.go).
//
// Platforms: Linux and macOS; on Windows the package compiles and runs
// clusters as the current user. initdb refuses to run as root, so as root
// (Unix) the cluster runs as the unprivileged user postgres (or nobody). On
// Linux the kernel stops a cluster whose parent process died without
// cleaning up; elsewhere such a cluster runs on until stopped.
//
// The package does not import testing, so that programs linking it stay
// free of it; [StartTB] takes the part of testing.TB it needs.
package pgcluster
