// Command modzip builds the module zip that the Go module proxy would serve
// for orgperm at a git revision (golang.org/x/mod/zip, the code the go
// command uses), and fails when it exceeds a size limit: what every
// `go get` of the module downloads.
//
// It is a module of its own so that the library takes no dependency on
// golang.org/x/mod. `make lint` runs it from the repository root:
//
//	cd scripts/modzip && go run . -repo ../..
package main

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	modzip "golang.org/x/mod/zip"
)

func main() {
	repo := flag.String("repo", ".", "root of the git repository holding the module")
	rev := flag.String("rev", "HEAD", "git revision to zip (committed files only, as the proxy sees them)")
	limit := flag.Int64("limit", 1<<20, "largest zip size allowed, in bytes")
	flag.Parse()
	if err := run(*repo, *rev, *limit); err != nil {
		fmt.Fprintln(os.Stderr, "modzip:", err)
		os.Exit(1)
	}
}

func run(repo, rev string, limit int64) error {
	gomod, err := os.ReadFile(filepath.Join(repo, "go.mod"))
	if err != nil {
		return err
	}
	path := modfile.ModulePath(gomod)
	if path == "" {
		return fmt.Errorf("%s: no module line", filepath.Join(repo, "go.mod"))
	}
	// The version only names the zip's top directory; its size does not
	// depend on it.
	m := module.Version{Path: path, Version: "v0.0.0-00010101000000-000000000000"}
	// The committed files at rev, as a fresh clone has them (zip's own
	// CreateFromVCS does not recognise a git worktree).
	dir, err := os.MkdirTemp("", "modzip-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := export(repo, rev, dir); err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := modzip.CreateFromDir(&buf, m, dir); err != nil {
		return err
	}
	files, unpacked, err := contents(buf.Bytes())
	if err != nil {
		return err
	}
	size := int64(buf.Len())
	fmt.Printf("modzip: %s at %s: %d bytes zipped (%d files, %d bytes unpacked); limit %d\n",
		path, rev, size, files, unpacked, limit)
	if size > limit {
		return fmt.Errorf("the module zip is %d bytes, over the limit of %d: look for large files (scripts/check-file-size.sh)", size, limit)
	}
	return nil
}

// export writes the files of repo at rev into dir (git archive).
func export(repo, rev, dir string) error {
	var out, stderr bytes.Buffer
	cmd := exec.Command("git", "-C", repo, "archive", "--format=tar", rev)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("git archive %s: %v: %s", rev, err, bytes.TrimSpace(stderr.Bytes()))
	}
	tr := tar.NewReader(&out)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Join(dir, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(name, dir+string(filepath.Separator)) {
			return fmt.Errorf("git archive: unexpected path %q", h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(name, 0o755)
		case tar.TypeReg:
			err = writeFile(name, tr, h.FileInfo().Mode().Perm())
		default:
			// Symlinks and the like: the module zip holds regular files only.
		}
		if err != nil {
			return err
		}
	}
}

func writeFile(name string, r io.Reader, perm os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func contents(b []byte) (files int, unpacked uint64, err error) {
	r, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return 0, 0, err
	}
	for _, f := range r.File {
		unpacked += f.UncompressedSize64
	}
	return len(r.File), unpacked, nil
}
