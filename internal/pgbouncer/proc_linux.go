package pgbouncer

import "syscall"

// deathSignal makes the kernel stop PgBouncer if this process dies.
func deathSignal(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGTERM }
