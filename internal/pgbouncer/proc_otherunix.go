//go:build unix && !linux

package pgbouncer

import "syscall"

// stopWithParent does nothing: only Linux has a parent-death signal.
func stopWithParent(*syscall.SysProcAttr) {}
