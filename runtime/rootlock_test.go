package runtime

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func TestOwnerLockOneOwner(t *testing.T) {
	l := Layout{Root: t.TempDir()}
	if err := os.MkdirAll(l.StateDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	first, err := lockRoot(l)
	if err != nil {
		t.Fatal(err)
	}
	// A second open file description conflicts even in the same process,
	// as it would in another one.
	_, err = lockRoot(l)
	var busy *RootBusyError
	if !errors.As(err, &busy) || !errors.Is(err, ErrRootBusy) || busy.Pid != os.Getpid() {
		t.Fatalf("second owner: %v (%+v), want a RootBusyError naming pid %d", err, busy, os.Getpid())
	}
	if !strings.Contains(err.Error(), l.Root) || !strings.Contains(err.Error(), "pid ") {
		t.Errorf("message %q must name the root and the owner's pid", err)
	}
	first.release()
	again, err := lockRoot(l)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	again.release()
}

func TestOwnAdoptsOnlyALockOnItsRoot(t *testing.T) {
	root := t.TempDir()
	held, err := LockRoot(root)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()
	l := Layout{Root: root}
	if got, err := l.own(held); err != nil || got != held {
		t.Errorf("own(the lock on this root) = %p, %v; want it adopted", got, err)
	}
	if _, err := l.own(nil); !errors.Is(err, ErrRootBusy) {
		t.Errorf("own(nil) on a held root = %v, want ErrRootBusy", err)
	}
	other, err := LockRoot(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Release()
	if _, err := l.own(other); !errors.Is(err, ErrRootBusy) {
		t.Errorf("own(a lock on another root) = %v, want its own attempt, refused", err)
	}
}
