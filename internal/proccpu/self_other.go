//go:build !unix

package proccpu

import "time"

// Self returns false: no getrusage on this platform.
func Self() (time.Duration, bool) { return 0, false }
