package pgstandby

import "syscall"

// deathSignal makes the kernel stop the standby (SIGQUIT: PostgreSQL's
// immediate shutdown) if this process dies without cleaning up.
func deathSignal(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGQUIT }
