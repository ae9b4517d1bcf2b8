package pgcluster

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestBinDirFromEnv: ORGPERM_PG_BIN is taken before any search, and one that
// holds no initdb is an error that names it (not a silent fallback to
// another version).
func TestBinDirFromEnv(t *testing.T) {
	empty := t.TempDir()
	t.Setenv(BinEnv, empty)
	if dir, err := FindBinDir(); err == nil || !strings.Contains(err.Error(), BinEnv) {
		t.Fatalf("findBinDir with %s=%s (no initdb) = %q, %v; want an error naming %s", BinEnv, empty, dir, err, BinEnv)
	}

	bin := t.TempDir()
	initdb := "initdb"
	if runtime.GOOS == "windows" {
		initdb += ".exe"
	}
	if err := os.WriteFile(filepath.Join(bin, initdb), nil, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv(BinEnv, bin)
	if dir, err := FindBinDir(); err != nil || dir != bin {
		t.Fatalf("findBinDir with %s=%s = %q, %v; want %q", BinEnv, bin, dir, err, bin)
	}
}

// TestClusterRunsBinEnvVersion: when ORGPERM_PG_BIN is set (make test-pg),
// a throwaway cluster runs that version's postgres.
func TestClusterRunsBinEnvVersion(t *testing.T) {
	bin := os.Getenv(BinEnv)
	if bin == "" {
		t.Skipf("needs %s set", BinEnv)
	}
	out, err := exec.Command(filepath.Join(bin, "postgres"), "--version").Output()
	if err != nil {
		t.Fatalf("%s/postgres --version: %v", bin, err)
	}
	fields := strings.Fields(string(out)) // postgres (PostgreSQL) 18.4
	want := fields[len(fields)-1]

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, StartTB(t).URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var got string
	if err := conn.QueryRow(ctx, "SHOW server_version").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if strings.Fields(got)[0] != want {
		t.Fatalf("the server runs PostgreSQL %q; %s/postgres is %q", got, bin, want)
	}
}

// TestServerEnv: the servers from $ORGPERM_PG_BIN get its sibling lib
// directory first on LD_LIBRARY_PATH; other servers, this process's
// environment.
func TestServerEnv(t *testing.T) {
	root := t.TempDir()
	bin, lib := filepath.Join(root, "bin"), filepath.Join(root, "lib")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("LD_LIBRARY_PATH", "/elsewhere")

	t.Setenv(BinEnv, "")
	if env := serverEnv(bin); env != nil {
		t.Fatalf("without %s: serverEnv = %q, want nil", BinEnv, env)
	}
	t.Setenv(BinEnv, bin)
	if env := serverEnv(bin); env != nil {
		t.Fatalf("with no %s: serverEnv = %q, want nil", lib, env)
	}
	if err := os.Mkdir(lib, 0o755); err != nil {
		t.Fatal(err)
	}
	env := serverEnv(bin)
	want := "LD_LIBRARY_PATH=" + lib + string(os.PathListSeparator) + "/elsewhere"
	if len(env) == 0 || env[len(env)-1] != want {
		t.Fatalf("serverEnv = ...%q, want it to end with %q", env[max(len(env)-1, 0):], want)
	}
}

// TestRestartAndClose: a restart drops every connection and keeps the data;
// Close stops the cluster and removes its files.
func TestRestartAndClose(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster of its own (-short)")
	}
	if _, err := FindBinDir(); err != nil {
		t.Skip(err)
	}
	ctx := context.Background()
	c, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	url, err := createDatabase(ctx, c.URL)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (x int); INSERT INTO kept VALUES (7)"); err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := conn.Ping(ctx); err == nil {
		t.Fatal("a connection made before Restart still answers")
	}
	again, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect after Restart: %v", err)
	}
	var x int
	err = again.QueryRow(ctx, "SELECT x FROM kept").Scan(&x)
	again.Close(ctx)
	if err != nil || x != 7 {
		t.Fatalf("after Restart: x = %d, %v; want 7", x, err)
	}

	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(c.baseDir); !os.IsNotExist(err) {
		t.Fatalf("after Close, %s: %v; want it removed", c.baseDir, err)
	}
	if _, err := pgx.Connect(ctx, c.URL); err == nil {
		t.Fatal("connected to a closed cluster")
	}
}

// createDatabase creates a database (no schema) on the server adminURL
// reaches and returns its connection string.
func createDatabase(ctx context.Context, adminURL string) (string, error) {
	name := RandomName("pgcluster_test_")
	if err := Exec(ctx, adminURL, "CREATE DATABASE "+name); err != nil {
		return "", err
	}
	return ConnString(adminURL, name), nil
}

// TestInitDataCache: the first cluster of an installation keeps initdb's
// output in the user's cache directory; the next one starts from a copy
// of it (a file planted in the cache shows up in its data directory), runs
// as the first did, and leaves the cache as it was.
func TestInitDataCache(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two clusters (-short)")
	}
	if runtime.GOOS != "linux" {
		t.Skip("sets XDG_CACHE_HOME, which the user cache directory follows on Linux")
	}
	bin, err := FindBinDir()
	if err != nil {
		t.Skip(err)
	}
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	cached := initCacheDir(bin)
	if cached == "" {
		t.Fatal("no cache directory")
	}
	first := StartTB(t)
	if _, err := os.Stat(filepath.Join(cached, "PG_VERSION")); err != nil {
		t.Fatalf("after the first cluster, the cache %s: %v", cached, err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cached, "planted"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	second := StartTB(t)
	if _, err := os.Stat(filepath.Join(second.dataDir(), "planted")); err != nil {
		t.Fatalf("the second cluster's data directory is not a copy of the cache: %v", err)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, second.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var user string
	if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil || user != "postgres" {
		t.Fatalf("current_user = %q, %v; want postgres", user, err)
	}
	if _, err := os.Stat(filepath.Join(cached, "postmaster.pid")); !os.IsNotExist(err) {
		t.Fatalf("the cache holds a postmaster.pid (%v): a server ran in it", err)
	}
}

// TestCopyTree: directories, files and links are copied with their
// permissions; the copy is refused onto an existing directory.
func TestCopyTree(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	if err := os.MkdirAll(filepath.Join(src, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "sub", "f"), []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" {
		if err := os.Symlink("sub/f", filepath.Join(src, "link")); err != nil {
			t.Fatal(err)
		}
	}
	dst := filepath.Join(t.TempDir(), "dst")
	if err := copyTree(src, dst); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dst, "sub", "f"))
	if err != nil || string(b) != "data" {
		t.Fatalf("copied file: %q, %v", b, err)
	}
	if runtime.GOOS != "windows" {
		for path, want := range map[string]os.FileMode{dst: 0o700, filepath.Join(dst, "sub", "f"): 0o600} {
			if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != want {
				t.Errorf("%s: %v, %v; want mode %v", path, fi.Mode().Perm(), err, want)
			}
		}
		if link, err := os.Readlink(filepath.Join(dst, "link")); err != nil || link != "sub/f" {
			t.Errorf("link: %q, %v", link, err)
		}
	}
	if err := copyTree(src, dst); err == nil {
		t.Error("copyTree onto an existing directory succeeded")
	}
}

// TestScratchEnv: a cluster goes where ORGPERM_PG_SCRATCH says, and Close
// removes its directory there.
func TestScratchEnv(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster of its own (-short)")
	}
	if _, err := FindBinDir(); err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	// As root the server runs as another user, who must reach the directory.
	for d := dir; d != filepath.Dir(d) && strings.HasPrefix(d, os.TempDir()) && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv(ScratchEnv, dir)
	c, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(c.baseDir) != dir {
		c.Close()
		t.Fatalf("cluster in %s, want it in %s", c.baseDir, dir)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("Close left %d entries in %s", len(left), dir)
	}
}

// TestSweep: sweep removes the cluster directories a killed run left (old,
// and no live postmaster), and nothing else.
func TestSweep(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Skip(err)
	}
	old := time.Now().Add(-2 * staleAge)
	mkdir := func(name, pid string, mtime time.Time) {
		t.Helper()
		data := filepath.Join(dir, name, "data")
		if err := os.MkdirAll(data, 0o755); err != nil {
			t.Fatal(err)
		}
		if pid != "" {
			if err := os.WriteFile(filepath.Join(data, "postmaster.pid"), []byte(pid+"\n/some/dir\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chtimes(filepath.Join(dir, name), mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	mkdir("orgperm-pg-dead", strconv.Itoa(dead.Process.Pid), old) // removed
	mkdir("orgperm-pg-nopid", "", old)                            // removed
	mkdir("orgperm-pg-live", strconv.Itoa(os.Getpid()), old)      // a running cluster: kept
	mkdir("orgperm-pg-fresh", "", time.Now())                     // being made: kept
	mkdir("orgperm-pg-garbled", "not a pid", old)                 // unsure: kept
	mkdir("other-dead", strconv.Itoa(dead.Process.Pid), old)      // not ours: kept
	sweep(dir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, e := range entries {
		left = append(left, e.Name())
	}
	want := []string{"orgperm-pg-fresh", "orgperm-pg-garbled", "orgperm-pg-live", "other-dead"}
	if runtime.GOOS == "windows" { // alive cannot tell: only the one without a pid file goes
		want = []string{"orgperm-pg-dead", "orgperm-pg-fresh", "orgperm-pg-garbled", "orgperm-pg-live", "other-dead"}
	}
	if strings.Join(left, " ") != strings.Join(want, " ") {
		t.Fatalf("after sweep: %v, want %v", left, want)
	}
}
