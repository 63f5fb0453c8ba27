package main

import (
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Storage attacks on the module's /data quota. Count is how far each got;
// Errno is what stopped it (ENOSPC or EDQUOT at the quota).
func init() {
	attacks["fill-data"] = fillData
	attacks["fill-data-inodes"] = fillDataInodes
}

// fillData writes 1 MiB at a time to /data until a write fails.
func fillData(r *result, _ string) {
	fd, err := unix.Open("/data/fill", unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_CLOEXEC, 0o600)
	if err != nil {
		r.Errno = errnoName(err)
		return
	}
	defer unix.Close(fd)
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = 0xa5 // not zeros, in case anything under /data dedups or compresses
	}
	for {
		n, err := unix.Write(fd, buf)
		r.Count += int64(max(n, 0))
		if err == nil {
			err = unix.Fsync(fd)
		}
		if err != nil {
			r.Errno = errnoName(err)
			return
		}
	}
}

// fillDataInodes creates empty files in /data until one cannot be made.
func fillDataInodes(r *result, _ string) {
	if err := os.Mkdir("/data/inodes", 0o700); err != nil {
		r.Errno = errnoName(err)
		return
	}
	for {
		fd, err := unix.Open("/data/inodes/"+strconv.FormatInt(r.Count, 10), unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
		if err != nil {
			r.Errno = errnoName(err)
			return
		}
		unix.Close(fd)
		r.Count++
	}
}
