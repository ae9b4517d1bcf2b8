//go:build unix

package pgcluster

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// runAs is whom the cluster's processes run as: nil for this process's own
// user.
type runAs = *syscall.Credential

// unprivileged returns the user to run the cluster as when this process is
// root (initdb and postgres refuse to run as root), or nil.
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
	return nil, errors.New("running as root and found no unprivileged user (postgres, nobody) to run PostgreSQL as")
}

// giveTo makes dir owned by who (nil: leave it).
func giveTo(dir string, who runAs) error {
	if who == nil {
		return nil
	}
	return os.Chown(dir, int(who.Uid), int(who.Gid))
}

// giveTree makes dir and everything under it owned by who (nil: leave it).
func giveTree(dir string, who runAs) error {
	if who == nil {
		return nil
	}
	return filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, int(who.Uid), int(who.Gid))
	})
}

// prepare sets how cmd runs: as who; and for the server itself (server
// true) in a process group of its own, stopped if this process dies first
// where the platform can do that (see proc_linux.go).
func prepare(cmd *exec.Cmd, who runAs, server bool) {
	attr := &syscall.SysProcAttr{Credential: who}
	if server {
		attr.Setpgid = true
		stopWithParent(attr)
	}
	cmd.SysProcAttr = attr
}

// interrupt asks postgres for a fast shutdown (SIGINT).
func interrupt(_ *Cluster, p *os.Process) error { return p.Signal(syscall.SIGINT) }

// quit makes postgres shut down at once (SIGQUIT, the immediate shutdown).
func quit(p *os.Process) error { return p.Signal(syscall.SIGQUIT) }
