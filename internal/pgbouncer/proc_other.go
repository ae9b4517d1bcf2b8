//go:build !unix

package pgbouncer

import (
	"os"
	"os/exec"
)

// runAs is whom PgBouncer runs as; outside Unix, always the current user.
type runAs = *struct{}

func unprivileged() (runAs, error)  { return nil, nil }
func giveTo(string, runAs) error    { return nil }
func prepare(*exec.Cmd, runAs)      {}
func interrupt(p *os.Process) error { return p.Kill() }
