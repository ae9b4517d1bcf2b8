package pgcluster

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ScratchEnv names the environment variable that, when set, is the
// directory throwaway clusters are made in. As root the server runs as
// another user (see the package documentation), who must be able to reach
// it.
const ScratchEnv = "ORGPERM_PG_SCRATCH"

// minScratchFree is the free space a memory-backed directory needs to be
// chosen: a cluster is about 40 MB, each database copied from the
// template about 8 MB.
const minScratchFree = 2 << 30

// scratchDir returns the directory a cluster's files go in: $ORGPERM_PG_SCRATCH
// when set, else a memory-backed file system where the platform has one
// with room (Linux: /dev/shm), else "" (the system's temp directory).
//
// Memory matters more than it looks: even with fsync off, CREATE DATABASE
// and DROP DATABASE on an ext4 disk took 330-350 ms here, on tmpfs 17-24 ms,
// and the tests create hundreds of databases (DECISIONS 54).
func scratchDir() string {
	if d := os.Getenv(ScratchEnv); d != "" {
		return d
	}
	return memoryDir()
}

// staleAge is how long a cluster directory must have been left alone
// before sweep may remove it.
const staleAge = time.Hour

// sweep removes from dir the cluster directories (orgperm-pg-*) that test
// binaries killed before their cleanup left behind: in memory they hold
// tens of megabytes each until the machine reboots. A directory goes only
// when it was last changed over staleAge ago and no live postmaster holds
// it (its postmaster.pid is gone, or names a process that no longer
// exists); a directory being made, or a cluster that runs for hours, stays.
// Errors are ignored: what cannot be removed stays.
func sweep(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), "orgperm-pg-") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		fi, err := e.Info()
		if err != nil || time.Since(fi.ModTime()) < staleAge {
			continue
		}
		if b, err := os.ReadFile(filepath.Join(path, "data", "postmaster.pid")); err == nil {
			line, _, _ := strings.Cut(string(b), "\n")
			if pid, err := strconv.Atoi(strings.TrimSpace(line)); err != nil || alive(pid) {
				continue
			}
		} else if !os.IsNotExist(err) {
			continue
		}
		_ = os.RemoveAll(path)
	}
}
