package proccpu

import (
	"os"
	"strconv"
	"time"
)

// Of returns the CPU time the process pid (on this machine) has run, from
// /proc/<pid>/schedstat (its first field: nanoseconds on a CPU), and false
// when that cannot be read (no such process, say).
func Of(pid int) (time.Duration, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/schedstat")
	if err != nil {
		return 0, false
	}
	return parseSchedstat(string(b))
}

// Sum returns the CPU time the processes pids have run together ([Of]),
// and false when any of them cannot be read.
func Sum(pids []int) (time.Duration, bool) {
	var sum time.Duration
	for _, pid := range pids {
		d, ok := Of(pid)
		if !ok {
			return 0, false
		}
		sum += d
	}
	return sum, true
}
