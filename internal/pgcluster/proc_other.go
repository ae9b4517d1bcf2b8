//go:build !unix

package pgcluster

import (
	"os"
	"os/exec"
	"path/filepath"
)

// runAs is whom the cluster's processes run as. Windows has no switch of
// user here: the cluster runs as the current user (initdb refuses an
// administrator; run the tests as an ordinary user).
type runAs = *struct{}

func unprivileged() (runAs, error)   { return nil, nil }
func giveTo(string, runAs) error     { return nil }
func giveTree(string, runAs) error   { return nil }
func prepare(*exec.Cmd, runAs, bool) {}
func quit(p *os.Process) error       { return p.Kill() }
func interrupt(c *Cluster, _ *os.Process) error {
	// No signals on Windows: pg_ctl asks the postmaster to stop.
	return exec.Command(filepath.Join(c.binDir, "pg_ctl"), "stop", "-D", c.dataDir(), "-m", "fast", "-w").Run()
}
