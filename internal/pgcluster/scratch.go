package pgcluster

import "os"

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
