//go:build unix

package pgbouncer

import (
	"os"
	"syscall"
)

// interrupt asks PgBouncer to shut down (SIGINT: safe shutdown).
func interrupt(p *os.Process) error { return p.Signal(syscall.SIGINT) }
