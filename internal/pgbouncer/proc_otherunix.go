//go:build unix && !linux

package pgbouncer

import "syscall"

// deathSignal does nothing where the platform has no parent-death signal:
// Close stops PgBouncer.
func deathSignal(*syscall.SysProcAttr) {}
