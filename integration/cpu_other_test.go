//go:build !unix

package integration_test

import "time"

// processCPU returns -1: no getrusage here.
func processCPU() time.Duration { return -1 }
