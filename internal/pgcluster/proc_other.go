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
