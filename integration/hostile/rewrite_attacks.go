package main

import "golang.org/x/sys/unix"

// A module that rewrites its own binary or config as os.WriteFile does
// (create, truncate) meets the read-only mount before Landlock: EROFS,
// where a plain write open gets Landlock's EACCES (write-module,
// write-config). And /proc, though mounted, is not readable: Landlock
// grants it nothing.
func init() {
	attacks["truncate-module"] = func(r *result, _ string) {
		open(r, "/module/hostile", unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC)
	}
	attacks["truncate-config"] = func(r *result, _ string) {
		open(r, "/etc/module/config.toml", unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC)
	}
	attacks["read-proc-status"] = func(r *result, _ string) {
		open(r, "/proc/self/status", unix.O_RDONLY)
	}
}
