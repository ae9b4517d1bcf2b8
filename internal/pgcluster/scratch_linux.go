package pgcluster

import (
	"os"
	"syscall"
)

// memoryDir returns /dev/shm when it is a tmpfs this process can write
// with at least minScratchFree bytes free, else "".
func memoryDir() string {
	const dir, tmpfsMagic = "/dev/shm", 0x01021994
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil || st.Type != tmpfsMagic {
		return ""
	}
	if uint64(st.Bavail)*uint64(st.Bsize) < minScratchFree {
		return ""
	}
	f, err := os.CreateTemp(dir, ".orgperm-probe-")
	if err != nil {
		return ""
	}
	f.Close()
	os.Remove(f.Name())
	return dir
}
