package runtime

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// One supervisor owns a runtime root for its lifetime (DESIGN.md decision
// 15). A second one would run orphan recovery on the first one's live
// modules: kill them and remove their sockets. The owner holds an exclusive
// flock on state/owner.lock, taken before recovery; the kernel drops it
// when the owner exits, however it exits, so a lock never goes stale.

// OwnerLock is the file under the root whose flock marks its owner.
func (l Layout) OwnerLock() string { return filepath.Join(l.StateDir(), "owner.lock") }

// ErrRootBusy is matched by a RootBusyError.
var ErrRootBusy = errors.New("runtime root in use")

// RootBusyError refuses a second owner of a root. Pid is the owner's
// process (0 if it had not yet written it); Command is what it runs.
type RootBusyError struct {
	Root    string
	Pid     int
	Command string
}

func (e *RootBusyError) Error() string {
	who := "another process"
	if e.Pid > 0 {
		who = "pid " + strconv.Itoa(e.Pid)
		if e.Command != "" {
			who += " (" + e.Command + ")"
		}
	}
	return fmt.Sprintf("runtime root %s is owned by %s: one supervisor per root (a second would kill its modules as orphans); drive that one, stop it first, or use a root of your own", e.Root, who)
}

func (e *RootBusyError) Is(target error) bool { return target == ErrRootBusy }

// RootLock is a held owner lock.
type RootLock struct {
	root string
	f    *os.File
}

// LockRoot takes root's owner lock for a program that opens other files
// under the root (the dev chain) before it makes its Supervisor, and hands
// the lock to it in Options.Owner. A RootBusyError names the owner.
func LockRoot(root string) (*RootLock, error) {
	l := Layout{Root: root}
	if err := os.MkdirAll(l.StateDir(), 0o700); err != nil {
		return nil, fmt.Errorf("owner lock: %w", err)
	}
	return lockRoot(l)
}

// Release gives up the lock (Supervisor.Close does it for the lock it
// holds).
func (r *RootLock) Release() { r.release() }

// lockRoot takes the root's owner lock without waiting and records this
// process's pid in it. The state dir must exist.
func lockRoot(l Layout) (*RootLock, error) {
	path := l.OwnerLock()
	// O_CLOEXEC (Go's default): no container init or module inherits it.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("owner lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			busy := &RootBusyError{Root: l.Root}
			if b, err := os.ReadFile(path); err == nil {
				busy.Pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			}
			if busy.Pid > 0 {
				busy.Command = processName(busy.Pid)
			}
			return nil, busy
		}
		return nil, fmt.Errorf("owner lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	abs, _ := filepath.Abs(l.Root)
	return &RootLock{root: abs, f: f}, nil
}

// release drops the lock; the pid stays in the file, harmless, as the
// lock and not the file's content says who owns the root.
func (r *RootLock) release() {
	if r == nil || r.f == nil {
		return
	}
	r.f.Close() // closing the last fd drops the flock
	r.f = nil
}

// own returns given if it is a held lock on this root, else takes one.
func (l Layout) own(given *RootLock) (*RootLock, error) {
	if given.holds(l.Root) {
		return given, nil
	}
	return lockRoot(l)
}

// holds reports whether r is a held lock on root.
func (r *RootLock) holds(root string) bool {
	abs, err := filepath.Abs(root)
	return r != nil && r.f != nil && err == nil && abs == r.root
}

// processName is pid's command line, shortened, for the refusal message.
func processName(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || len(b) == 0 {
		return ""
	}
	args := strings.Fields(string(bytes.ReplaceAll(bytes.TrimRight(b, "\x00"), []byte{0}, []byte{' '})))
	if len(args) > 3 {
		args = append(args[:3], "...")
	}
	if len(args) > 0 {
		args[0] = filepath.Base(args[0])
	}
	return strings.Join(args, " ")
}
