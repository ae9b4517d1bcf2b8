//go:build unix

package runas

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

// Who is whom a server runs as: nil for this process's own user.
type Who = *syscall.Credential

// Unprivileged returns the user to run program as when this process is
// root (postgres, else nobody), or nil when it is not root.
func Unprivileged(program string) (Who, error) {
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
	return nil, errors.New("running as root and found no unprivileged user (postgres, nobody) to run " + program + " as")
}

// GiveTo makes dir owned by who (nil: leave it).
func GiveTo(dir string, who Who) error {
	if who == nil {
		return nil
	}
	return os.Chown(dir, int(who.Uid), int(who.Gid))
}

// GiveTree makes dir and everything under it owned by who (nil: leave it).
func GiveTree(dir string, who Who) error {
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

// Prepare sets how cmd runs: as who; and, for a server (stop not 0), in a
// process group of its own and sent stop if this process dies first, where
// the platform can do that (Linux's parent-death signal).
func Prepare(cmd *exec.Cmd, who Who, stop syscall.Signal) {
	attr := &syscall.SysProcAttr{Credential: who}
	if stop != 0 {
		attr.Setpgid = true
		stopWithParent(attr, stop)
	}
	cmd.SysProcAttr = attr
}
