package main

import "syscall"

// redisProcAttr runs redis-server in a process group of its own, stopped
// by the kernel (SIGTERM) if this program dies without cleaning up.
func redisProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
