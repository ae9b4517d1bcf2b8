//go:build unix && !linux

package main

import "syscall"

// redisProcAttr runs redis-server in a process group of its own. Only Linux
// has a parent-death signal: elsewhere a redis-server left by a killed run
// goes on until stopped.
func redisProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
