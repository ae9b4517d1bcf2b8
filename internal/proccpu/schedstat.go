package proccpu

import (
	"strconv"
	"strings"
	"time"
)

// parseSchedstat reads the first field of a /proc/<pid>/schedstat: the
// nanoseconds the process has run on a CPU.
func parseSchedstat(s string) (time.Duration, bool) {
	f := strings.Fields(s)
	if len(f) == 0 {
		return 0, false
	}
	ns, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil || ns < 0 {
		return 0, false
	}
	return time.Duration(ns), true
}
