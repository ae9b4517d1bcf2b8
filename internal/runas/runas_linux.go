package runas

import "syscall"

// stopWithParent has the kernel send sig to the server when this process
// exits.
func stopWithParent(attr *syscall.SysProcAttr, sig syscall.Signal) { attr.Pdeathsig = sig }
