package proccpu

import (
	"os"
	"runtime"
	"testing"
	"time"
)

// TestSelf: this process's CPU time is known on Unix and grows with work.
func TestSelf(t *testing.T) {
	before, ok := Self()
	if !ok {
		if runtime.GOOS != "windows" {
			t.Fatal("Self: not known on a Unix system")
		}
		t.Skip("no getrusage on " + runtime.GOOS)
	}
	spin(t, func() bool { after, _ := Self(); return after > before })
}

// TestOf: this process's schedstat is read on Linux and grows with work;
// a process that does not exist is not.
func TestOf(t *testing.T) {
	pid := os.Getpid()
	before, ok := Of(pid)
	if runtime.GOOS != "linux" {
		if ok {
			t.Fatalf("Of(%d) = %v, true on %s; want false", pid, before, runtime.GOOS)
		}
		t.Skip("schedstat is Linux's")
	}
	if !ok {
		t.Skipf("no /proc/%d/schedstat (kernel without schedstats)", pid)
	}
	spin(t, func() bool { after, _ := Of(pid); return after > before })
	if sum, ok := Sum([]int{pid, pid}); !ok || sum < 2*before {
		t.Errorf("Sum of this process twice = %v, %v; want at least %v", sum, ok, 2*before)
	}
	if d, ok := Of(-1); ok {
		t.Errorf("Of(-1) = %v, true; want false", d)
	}
}

func TestParseSchedstat(t *testing.T) {
	for in, want := range map[string]time.Duration{"123 4 5\n": 123, "7": 7, "": -1, "x 1 2": -1, "-5 1 1": -1} {
		got, ok := parseSchedstat(in)
		if want < 0 {
			if ok {
				t.Errorf("parseSchedstat(%q) = %v, true; want false", in, got)
			}
		} else if !ok || got != want {
			t.Errorf("parseSchedstat(%q) = %v, %v; want %v", in, got, ok, want)
		}
	}
}

// spin burns CPU until grown reports true, and fails the test after 10 s
// of trying (no timing is asserted: the deadline only ends a broken case).
func spin(t *testing.T, grown func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	x := 0
	for time.Now().Before(deadline) {
		for i := 0; i < 1e6; i++ {
			x += i
		}
		if grown() {
			return
		}
	}
	t.Fatal("CPU time did not grow in 10 s of work")
}
