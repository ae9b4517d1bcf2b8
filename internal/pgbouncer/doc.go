// Package pgbouncer starts a throwaway PgBouncer in front of a PostgreSQL
// server, for tests and the soak: a transaction pooler is a setup apps run
// in production, and one in which LISTEN is accepted but notifications are
// not delivered to the client that asked for them (in transaction mode the
// server connection that ran LISTEN goes back to the pool when the
// statement ends).
//
// [Start] writes an ini file and a userlist in a temp directory, runs the
// pgbouncer binary (on PATH, or /usr/sbin/pgbouncer as Debian and Ubuntu
// install it; apt package "pgbouncer") on a free 127.0.0.1 port with auth
// "trust", and returns once it accepts connections. PgBouncer refuses to run
// as root: as root it runs as the unprivileged user postgres (or nobody),
// like internal/pgcluster's. [Bouncer.Close] stops it and removes its files.
//
// pgx cannot use its default extended protocol with statement caching
// through a transaction pooler (a prepared statement lives on one server
// connection): [Bouncer.ConnString] adds default_query_exec_mode=exec,
// which runs every query unnamed, in the same round trip.
package pgbouncer
