//go:build unix

package pgcluster

import (
	"os"
	"syscall"
)

// interrupt asks postgres for a fast shutdown (SIGINT).
func interrupt(_ *Cluster, p *os.Process) error { return p.Signal(syscall.SIGINT) }

// quit makes postgres shut down at once (SIGQUIT, the immediate shutdown).
func quit(p *os.Process) error { return p.Signal(syscall.SIGQUIT) }

// alive reports whether a process pid exists (or may: a process of
// another user answers EPERM).
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || err == syscall.EPERM
}
