//go:build unix

package integration_test

import (
	"syscall"
	"time"
)

// processCPU returns the CPU time this process has used (user and system),
// or -1 where getrusage fails.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
