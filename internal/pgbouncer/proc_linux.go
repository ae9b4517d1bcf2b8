package pgbouncer

import "syscall"

// stopWithParent has the kernel send PgBouncer SIGTERM when this process
// exits. Linux only; elsewhere a PgBouncer whose parent was killed runs on.
func stopWithParent(attr *syscall.SysProcAttr) { attr.Pdeathsig = syscall.SIGTERM }
