package pgtest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestBinDirFromEnv: ORGPERM_PG_BIN is taken before any search, and one that
// holds no initdb is an error that names it (not a silent fallback to
// another version).
func TestBinDirFromEnv(t *testing.T) {
	empty := t.TempDir()
	t.Setenv(binEnv, empty)
	if dir, err := findBinDir(); err == nil || !strings.Contains(err.Error(), binEnv) {
		t.Fatalf("findBinDir with %s=%s (no initdb) = %q, %v; want an error naming %s", binEnv, empty, dir, err, binEnv)
	}

	bin := t.TempDir()
	initdb := "initdb"
	if runtime.GOOS == "windows" {
		initdb += ".exe"
	}
	if err := os.WriteFile(filepath.Join(bin, initdb), nil, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv(binEnv, bin)
	if dir, err := findBinDir(); err != nil || dir != bin {
		t.Fatalf("findBinDir with %s=%s = %q, %v; want %q", binEnv, bin, dir, err, bin)
	}
}

// TestServerRunsBinEnvVersion: when ORGPERM_PG_BIN is set (make test-pg),
// a throwaway server runs that version's postgres.
func TestServerRunsBinEnvVersion(t *testing.T) {
	bin := os.Getenv(binEnv)
	if bin == "" || os.Getenv("DATABASE_URL") != "" {
		t.Skipf("needs %s set and no DATABASE_URL", binEnv)
	}
	out, err := exec.Command(filepath.Join(bin, "postgres"), "--version").Output()
	if err != nil {
		t.Fatalf("%s/postgres --version: %v", bin, err)
	}
	fields := strings.Fields(string(out)) // postgres (PostgreSQL) 18.4
	want := fields[len(fields)-1]

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, StartServer(t).URL)
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

	t.Setenv(binEnv, "")
	if env := serverEnv(bin); env != nil {
		t.Fatalf("without %s: serverEnv = %q, want nil", binEnv, env)
	}
	t.Setenv(binEnv, bin)
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
