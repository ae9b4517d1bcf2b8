//go:build unix && !linux

package pgstandby

import "syscall"

// deathSignal does nothing where there is no parent-death signal: Close
// stops the standby.
func deathSignal(*syscall.SysProcAttr) {}
