//go:build unix && !linux

package runas

import "syscall"

// stopWithParent does nothing: only Linux has a parent-death signal. A
// server whose parent was killed runs on until stopped.
func stopWithParent(*syscall.SysProcAttr, syscall.Signal) {}
