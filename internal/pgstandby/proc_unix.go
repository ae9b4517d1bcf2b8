//go:build unix

package pgstandby

import (
	"errors"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// runAs is the user PostgreSQL runs as when this process is root.
type runAs = syscall.Credential

// unprivileged returns the credential to run as when this process is root
// (postgres refuses to run as root), or nil.
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
	return nil, errors.New("pgstandby: running as root and found no unprivileged user (postgres, nobody) to run PostgreSQL as")
}

// chownTo gives dir to cred's user, if any.
func chownTo(dir string, cred *runAs) error {
	if cred == nil {
		return nil
	}
	return os.Chown(dir, int(cred.Uid), int(cred.Gid))
}

// procAttr runs a program as cred (if any); a server gets a process group
// of its own and, where the platform allows, dies with this process.
func procAttr(cred *runAs, server bool) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Credential: cred}
	if server {
		a.Setpgid = true
		deathSignal(a)
	}
	return a
}
