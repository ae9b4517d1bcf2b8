//go:build !linux

package pgcluster

// memoryDir: only Linux has a memory-backed directory every user can
// write (/dev/shm); elsewhere clusters go in the temp directory.
func memoryDir() string { return "" }
