//go:build !unix

package main

import "syscall"

// redisProcAttr: no process groups here; redis-server runs as a plain
// child.
func redisProcAttr() *syscall.SysProcAttr { return nil }
