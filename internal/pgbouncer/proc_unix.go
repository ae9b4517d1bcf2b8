//go:build unix

package pgbouncer

import (
	"errors"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// runAs is the user PgBouncer runs as when this process is root.
type runAs = syscall.Credential

// unprivileged returns the credential to run PgBouncer with when this
// process is root (PgBouncer refuses to run as root), or nil.
func unprivileged() (*runAs, error) {
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

// chownTo gives dir to cred's user, if any.
func chownTo(dir string, cred *runAs) error {
	if cred == nil {
		return nil
	}
	return os.Chown(dir, int(cred.Uid), int(cred.Gid))
}

// procAttr runs PgBouncer as cred (if any), in a process group of its own,
// stopped with this process where the platform allows (deathSignal).
func procAttr(cred *runAs) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Credential: cred, Setpgid: true}
	deathSignal(a)
	return a
}
