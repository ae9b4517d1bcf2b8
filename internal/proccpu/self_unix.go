//go:build unix

package proccpu

import (
	"syscall"
	"time"
)

// Self returns the CPU time this process has used (user and system), and
// false where getrusage fails.
func Self() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
