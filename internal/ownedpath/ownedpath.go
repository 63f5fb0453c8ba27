// Package ownedpath refuses a path that someone other than root or the
// caller could change: a directory on it that another user owns, or that
// others may write without the sticky bit, would let them rename what
// the caller puts there and swap in their own.
package ownedpath

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Check walks every directory of path up to /, as given and as its links
// resolve (a link's own mode does not matter, the directory holding it
// does). Each must belong to root or to the caller, and be writable by no
// one else unless it has the sticky bit (/tmp passes: others cannot
// rename or remove entries they do not own there). The error names the
// directory and what is wrong with it.
func Check(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	resolved, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return err
	}
	me := uint32(os.Geteuid())
	for _, p := range []string{abs, resolved} {
		for d := p; ; d = filepath.Dir(d) {
			var st unix.Stat_t
			if err := unix.Lstat(d, &st); err != nil {
				return fmt.Errorf("%s: %w", d, err)
			}
			if st.Mode&unix.S_IFMT != unix.S_IFLNK {
				if st.Uid != 0 && st.Uid != me {
					return fmt.Errorf("%s belongs to uid %d, not root", d, st.Uid)
				}
				if st.Mode&0o022 != 0 && st.Mode&unix.S_ISVTX == 0 {
					return fmt.Errorf("%s is writable by others (mode %04o, no sticky bit)", d, st.Mode&0o7777)
				}
			}
			if d == filepath.Dir(d) {
				break
			}
		}
	}
	return nil
}
