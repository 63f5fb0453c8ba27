package bench

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	goruntime "runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// crun 1.8 refuses this hybrid cgroup host (ENVIRONMENT.md). It runs
// correctly in a mount namespace where the unified hierarchy is unmounted.
// Wrapping every call in `unshare -m sh -c 'umount …; exec crun …'` costs
// three extra execs, 16–20 ms here (BenchmarkPeerCrunWrapper), which
// would flatter every comparison with crun. Instead one OS thread of this
// process leaves the shared filesystem context, unshares its mount
// namespace, unmounts the unified hierarchy there, and forks every crun
// command: a child inherits its forking thread's mount namespace. The
// thread is never unlocked, so Go discards it when the goroutine ends.
//
// Since 2026-12-02 hosts of this kind also list v1 controllers in
// /proc/self/cgroup (perf_event, hugetlb, net_cls,net_prio) whose
// directories under the read-only /sys/fs/cgroup hold no hierarchy, and
// these come and go as other processes mount them; crun then fails to
// create or join its cgroups, in any namespace. crun therefore runs with
// its cgroup manager off: it creates and limits no cgroup at all, less work
// than ours, so every ratio against it is conservative.

type crunLauncher struct {
	crun, state string
	work        chan func()
}

var (
	crunOnce   sync.Once
	crunThread *crunLauncher
	crunErr    error
)

// crunPeer returns a launcher with its own state root that forks from the
// process-wide thread, or skips without crun.
func crunPeer(b *testing.B, state string) *crunLauncher {
	b.Helper()
	crun, err := exec.LookPath("crun")
	if err != nil {
		b.Skip("crun not installed")
	}
	crunOnce.Do(func() {
		l := &crunLauncher{crun: crun, work: make(chan func())}
		ready := make(chan error)
		go l.loop(ready)
		crunErr = <-ready
		crunThread = l
	})
	if crunErr != nil {
		b.Fatalf("crun mount namespace: %v", crunErr)
	}
	return &crunLauncher{crun: crunThread.crun, state: state, work: crunThread.work}
}

func (l *crunLauncher) loop(ready chan<- error) {
	goruntime.LockOSThread()
	err := unix.Unshare(unix.CLONE_FS | unix.CLONE_NEWNS)
	if err == nil {
		err = unix.Mount("", "/", "", unix.MS_PRIVATE|unix.MS_REC, "")
	}
	if err == nil {
		if e := unix.Unmount("/sys/fs/cgroup/unified", unix.MNT_DETACH); e != nil && !errors.Is(e, unix.EINVAL) && !errors.Is(e, unix.ENOENT) {
			err = fmt.Errorf("umount unified: %w", e)
		}
	}
	ready <- err
	if err != nil {
		return
	}
	for f := range l.work {
		f()
	}
}

// cmd builds a crun command with this launcher's state root.
func (l *crunLauncher) cmd(args ...string) *exec.Cmd {
	return exec.Command(l.crun, append([]string{"--cgroup-manager=disabled", "--root", l.state}, args...)...)
}

// start forks cmd from the launcher's thread.
func (l *crunLauncher) start(cmd *exec.Cmd) error {
	done := make(chan error)
	l.work <- func() { done <- cmd.Start() }
	return <-done
}

// run starts cmd from the launcher's thread and waits for it; out, if not
// nil, takes its stdout and stderr (a file: a container keeps its stdio
// open, so a pipe would never reach EOF).
func (l *crunLauncher) run(out *os.File, args ...string) error {
	cmd := l.cmd(args...)
	if out != nil {
		cmd.Stdout, cmd.Stderr = out, out
	}
	if err := l.start(cmd); err != nil {
		return err
	}
	return cmd.Wait()
}

// BenchmarkPeerCrunChain100 is P8's peer: the same 100-module chain run by
// crun with LoadAll's own schedule, four containers created ahead (`crun
// create`) while each module is started (`crun start`) only after the one
// before it sent its first frame. It is the floor for this machine: crun
// needs no verification, compiles no policy, and its bundles (our policy
// rendered as OCI, one per module) are written before the timer starts.
func BenchmarkPeerCrunChain100(b *testing.B) {
	buildModule(b)
	const ahead = 4
	for n := 0; n < b.N; n++ {
		b.StopTimer()
		crun := crunPeer(b, b.TempDir())
		out, err := os.CreateTemp("", "blvm-peer-out-")
		if err != nil {
			b.Fatal(err)
		}
		type member struct {
			id, bundle string
			fix        *peerFixture
			created    chan error
		}
		chain := make([]*member, chainLength)
		for i := range chain {
			f := newPeerFixture(b)
			id := fmt.Sprintf("blvm-bench-chain-%03d", i)
			chain[i] = &member{id: id, bundle: ociBundle(b, f, id), fix: f, created: make(chan error, 1)}
		}
		deleteAll := func() {
			for _, m := range chain {
				crun.run(nil, "delete", "-f", m.id)
			}
		}
		// A failed run must not leave containers behind either.
		b.Cleanup(deleteAll)
		b.StartTimer()
		slots := make(chan struct{}, ahead)
		go func() {
			for _, m := range chain {
				slots <- struct{}{}
				go func() { m.created <- crun.run(out, "create", "-b", m.bundle, m.id) }()
			}
		}()
		for _, m := range chain {
			if err := <-m.created; err != nil {
				msg, _ := os.ReadFile(out.Name())
				b.Fatalf("crun create %s: %v\n%s", m.id, err, msg)
			}
			if err := crun.run(out, "start", m.id); err != nil {
				b.Fatalf("crun start %s: %v", m.id, err)
			}
			m.fix.ln.SetDeadline(time.Now().Add(10 * time.Second))
			c, err := m.fix.ln.Accept()
			if err != nil {
				b.Fatalf("%s: no connection: %v", m.id, err)
			}
			if _, err := c.Read(make([]byte, 1)); err != nil {
				b.Fatal(err)
			}
			c.Close()
			<-slots
		}
		b.StopTimer()
		deleteAll()
		out.Close()
		os.Remove(out.Name())
		b.StartTimer()
	}
}
