// Package pgstandby starts a throwaway streaming standby (a hot standby
// that answers read-only queries) of a running PostgreSQL server, from the
// local binaries, for tests and benchmarks of replica reads: no Docker.
//
// [Start] takes the primary's connection string (a superuser, as pgcluster's
// clusters have), copies the primary with pg_basebackup -R (which writes
// standby.signal and primary_conninfo), and runs postgres on that copy on a
// free 127.0.0.1 port, optionally with recovery_min_apply_delay to force a
// replay lag. It returns once the standby accepts connections in recovery.
// [Standby.Promote] makes it a primary (a failover), and [Standby.Close]
// stops it and removes its files.
//
// The primary must allow replication connections from 127.0.0.1 (initdb's
// default pg_hba.conf does, with -A trust) and run with wal_level replica
// or logical (the default) and a free WAL sender. The binaries are found
// the way internal/pgcluster finds them (pg_basebackup on PATH, or under
// /usr/lib/postgresql/<major>/bin, the primary's major version first). As
// root, the standby runs as the unprivileged user postgres (or nobody),
// like pgcluster's.
//
// The standby replicates the whole cluster: a database created on the
// primary (pgtest.NewDatabase) appears on the standby once replayed; use
// [Standby.ConnString] to reach it, and [Standby.WaitReplay] to wait for a
// WAL position.
package pgstandby
