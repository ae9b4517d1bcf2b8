// Package runas starts the project's test servers (PostgreSQL, its
// standbys, PgBouncer) as an unprivileged user when the process is root,
// since those servers refuse to run as root, and ties a server's life to
// this process where the platform can: the one copy of that machinery for
// internal/pgcluster, internal/pgstandby and internal/pgbouncer.
package runas
