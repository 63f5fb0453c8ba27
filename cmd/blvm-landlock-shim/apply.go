package main

import (
	"fmt"
	"os"

	"github.com/landlock-lsm/go-landlock/landlock"
	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"

	"github.com/blvm/blvm-sandbox/internal/archfilter"
)

// fileRights are the only rights the kernel accepts on a rule for a
// non-directory; directory rights (read_dir, make_*, remove_*, refer) have
// no meaning there and make landlock_add_rule fail with EINVAL.
const fileRights = ll.AccessFSExecute | ll.AccessFSWriteFile | ll.AccessFSReadFile |
	ll.AccessFSTruncate | ll.AccessFSIoctlDev

// scopesABI is the first Landlock ABI with IPC scopes.
const scopesABI = 6

// apply confines the calling process: first Landlock, then the stacked
// seccomp filter. Both survive the execve that follows.
func apply(c config) error {
	abi, err := ll.LandlockGetABIVersion()
	if err != nil {
		return fmt.Errorf("Landlock is not available on this kernel (need ABI %d): %w", c.minABI, err)
	}
	if abi < c.minABI {
		return fmt.Errorf("the kernel's Landlock ABI is %d, the policy requires at least %d", abi, c.minABI)
	}
	handled, err := handledRights(c.minABI)
	if err != nil {
		return err
	}
	if c.scopes != 0 && c.minABI < scopesABI {
		return fmt.Errorf("Landlock scopes need ABI %d, but --min-abi is %d", scopesABI, c.minABI)
	}
	rules := make([]landlock.Rule, 0, len(c.rules))
	for _, r := range c.rules {
		if r.access&^handled != 0 {
			return fmt.Errorf("--allow %s: rights %v need a Landlock ABI above %d", r.path, landlock.AccessFSSet(r.access&^handled), c.minABI)
		}
		access := r.access
		st, err := os.Stat(r.path)
		if err != nil {
			return fmt.Errorf("--allow %s: %w", r.path, err)
		}
		if !st.IsDir() {
			access &= fileRights
		}
		rules = append(rules, landlock.PathAccess(landlock.AccessFSSet(access), r.path))
	}
	// Handled is the full set of rights of --min-abi, not just the ones the
	// rules name: every right not granted is denied.
	cfg := landlock.Config{HandledAccessFS: landlock.AccessFSSet(handled), Scoped: landlock.ScopedSet(c.scopes)}
	if err := cfg.Restrict(rules...); err != nil {
		return fmt.Errorf("apply Landlock ruleset: %w", err)
	}
	// The stacked filter that kills the whole process for a foreign-arch
	// or x32 syscall: libcontainer's own filter stops these too, but with
	// libseccomp's default bad-arch action, SECCOMP_RET_KILL_THREAD, which
	// a multi-threaded module survives; the kernel applies the strictest
	// answer of stacked filters, so KILL_PROCESS wins.
	if err := archfilter.Load(); err != nil {
		return err
	}
	return nil
}

// handledRights is the set of filesystem rights Landlock ABI abi defines.
func handledRights(abi int) (uint64, error) {
	versions := []landlock.Config{landlock.V1, landlock.V2, landlock.V3, landlock.V4, landlock.V5,
		landlock.V6, landlock.V7, landlock.V8, landlock.V9, landlock.V10, landlock.V11}
	if abi < 1 || abi > len(versions) {
		return 0, fmt.Errorf("--min-abi %d: this shim knows Landlock ABI 1 to %d", abi, len(versions))
	}
	return uint64(versions[abi-1].HandledAccessFS), nil
}
