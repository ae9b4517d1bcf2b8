//go:build !unix

package pgbouncer

import "os"

func interrupt(p *os.Process) error { return p.Kill() }
