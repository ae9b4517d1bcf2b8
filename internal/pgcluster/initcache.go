package pgcluster

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/orgperm/orgperm/internal/runas"
)

// initdbArgs are the arguments of initdb after -D <dir>.
var initdbArgs = []string{"-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync"}

// initData makes the cluster's data directory. initdb takes about two
// seconds, a copy of its output a fifth of that, and every test binary of
// a `go test ./...` starts a cluster: so the first initdb's output is kept
// in the user's cache directory (<cache>/orgperm/initdb/<key>, about 40 MB
// per PostgreSQL installation) and later clusters start from a copy. The
// key covers the binaries (directory, size and time of initdb and
// postgres) and initdb's arguments, so another version or an upgrade gets
// its own. Any error with the cache falls back to initdb.
func (c *Cluster) initData() error {
	cached := initCacheDir(c.binDir)
	if cached != "" {
		if err := copyTree(cached, c.dataDir()); err == nil {
			if err := runas.GiveTree(c.dataDir(), c.cred); err == nil {
				return nil
			}
		}
		_ = os.RemoveAll(c.dataDir())
	}
	initdb := exec.Command(filepath.Join(c.binDir, "initdb"), append([]string{"-D", c.dataDir()}, initdbArgs...)...)
	initdb.Env = c.env
	runas.Prepare(initdb, c.cred, 0)
	if out, err := initdb.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, out)
	}
	if cached != "" {
		keepInitData(c.dataDir(), cached)
	}
	return nil
}

// initCacheDir returns where the initdb output of the binaries in bin is
// kept ("" when there is no user cache directory or the binaries cannot be
// read); it may not exist yet.
func initCacheDir(bin string) string {
	root, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00", bin, strings.Join(initdbArgs, " "))
	for _, name := range []string{"initdb", "postgres"} {
		fi, err := os.Stat(filepath.Join(bin, name+exeSuffix()))
		if err != nil {
			return ""
		}
		fmt.Fprintf(h, "%s %d %d\x00", name, fi.Size(), fi.ModTime().UnixNano())
	}
	return filepath.Join(root, "orgperm", "initdb", hex.EncodeToString(h.Sum(nil))[:16])
}

// keepInitData copies a fresh data directory into the cache at dst, unless
// another process did first: it copies into a temp directory beside dst
// and renames it, so a reader never sees half a copy.
func keepInitData(data, dst string) {
	if _, err := os.Stat(dst); err == nil {
		return
	}
	parent := filepath.Dir(dst)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return
	}
	tmp, err := os.MkdirTemp(parent, ".tmp-")
	if err != nil {
		return
	}
	if err := copyTree(data, filepath.Join(tmp, "data")); err != nil || os.Rename(filepath.Join(tmp, "data"), dst) != nil {
		_ = os.RemoveAll(tmp)
		return
	}
	_ = os.Remove(tmp)
}

// copyTree copies the directory src to dst (which must not exist): its
// directories, regular files and symbolic links, with their permissions.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.Mkdir(target, info.Mode().Perm())
		case info.Mode()&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case info.Mode().IsRegular():
			return copyFile(path, target, info.Mode().Perm())
		default:
			return fmt.Errorf("pgcluster: %s: not a regular file", path)
		}
	})
}

func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
