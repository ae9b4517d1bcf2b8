//go:build !unix

package runas

import (
	"os/exec"
	"syscall"
)

// Who is whom a server runs as. Outside Unix there is no switch of user:
// servers run as the current user (initdb refuses an administrator; run
// the tests as an ordinary user).
type Who = *struct{}

func Unprivileged(string) (Who, error)       { return nil, nil }
func GiveTo(string, Who) error               { return nil }
func GiveTree(string, Who) error             { return nil }
func Prepare(*exec.Cmd, Who, syscall.Signal) {}
