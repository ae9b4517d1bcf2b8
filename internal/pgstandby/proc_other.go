//go:build !unix

package pgstandby

import "syscall"

// runAs is unused off Unix: PostgreSQL runs as this process's user.
type runAs struct{}

func unprivileged() (*runAs, error)              { return nil, nil }
func chownTo(string, *runAs) error               { return nil }
func procAttr(*runAs, bool) *syscall.SysProcAttr { return nil }
