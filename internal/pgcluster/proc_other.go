//go:build !unix

package pgcluster

import (
	"os"
	"os/exec"
	"path/filepath"
)

func quit(p *os.Process) error { return p.Kill() }

func interrupt(c *Cluster, _ *os.Process) error {
	// No signals on Windows: pg_ctl asks the postmaster to stop.
	return exec.Command(filepath.Join(c.binDir, "pg_ctl"), "stop", "-D", c.dataDir(), "-m", "fast", "-w").Run()
}

// alive cannot tell here: every process counts as alive, so sweep removes
// only directories without a postmaster.pid.
func alive(int) bool { return true }
