//go:build unix && !linux

package pgcluster

import "syscall"

// stopWithParent does nothing: only Linux has a parent-death signal. A
// cluster whose test binary was killed runs on until stopped.
func stopWithParent(*syscall.SysProcAttr) {}
