//go:build !linux

package proccpu

import "time"

// Of returns false: only Linux tells another process's CPU time here
// (/proc/<pid>/schedstat).
func Of(int) (time.Duration, bool) { return 0, false }

// Sum returns false: see [Of].
func Sum([]int) (time.Duration, bool) { return 0, false }
