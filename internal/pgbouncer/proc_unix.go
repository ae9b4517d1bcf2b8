//go:build unix

package pgbouncer

import (
	"errors"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"syscall"
)

// runAs is whom PgBouncer runs as: nil for this process's own user.
type runAs = *syscall.Credential

// unprivileged returns the credential to run PgBouncer with when this
// process is root (PgBouncer refuses to run as root), or nil.
func unprivileged() (runAs, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
	}
	return nil, errors.New("pgbouncer: running as root and found no unprivileged user (postgres, nobody) to run it as")
}

// giveTo makes dir owned by who (nil: leave it).
func giveTo(dir string, who runAs) error {
	if who == nil {
		return nil
	}
	return os.Chown(dir, int(who.Uid), int(who.Gid))
}

// prepare runs cmd as who, in a process group of its own, sent SIGTERM if
// this process dies first where the platform can (proc_linux.go).
func prepare(cmd *exec.Cmd, who runAs) {
	attr := &syscall.SysProcAttr{Credential: who, Setpgid: true}
	stopWithParent(attr)
	cmd.SysProcAttr = attr
}

// interrupt asks PgBouncer to shut down (SIGINT: safe shutdown).
func interrupt(p *os.Process) error { return p.Signal(syscall.SIGINT) }
