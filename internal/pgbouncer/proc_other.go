//go:build !unix

package pgbouncer

import "syscall"

// runAs is unused off Unix: PgBouncer runs as this process's user.
type runAs struct{}

func unprivileged() (*runAs, error)        { return nil, nil }
func chownTo(string, *runAs) error         { return nil }
func procAttr(*runAs) *syscall.SysProcAttr { return nil }
