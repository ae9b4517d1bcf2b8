package pgcluster

import "syscall"

// stopWithParent stops the cluster if the test binary dies without cleaning
// up: the kernel sends SIGQUIT, PostgreSQL's immediate shutdown, when the
// parent exits. Linux only; elsewhere a cluster left behind by a killed
// test binary runs on until stopped (its directory is in the temp dir).
func stopWithParent(attr *syscall.SysProcAttr) { attr.Pdeathsig = syscall.SIGQUIT }
