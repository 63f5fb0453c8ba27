package runtime

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"

	"github.com/blvm/blvm-sandbox/policy"
	"github.com/blvm/blvm-sandbox/runtime/launch"
)

// instance is one run of a module's container, from Create to Destroy.
type instance struct {
	name      string
	container *libcontainer.Container
	pid       int                // the container's init
	ended     <-chan launch.Exit // its end, from the init server
	cgroup    string             // as libcontainer took it (Layout.CgroupPath)
	hybrid    string             // the unified cgroup joinHybrid made, removed at destroy
	stats     statsReader
	started   time.Time
	output    sync.WaitGroup // the copies of the module's stdout and stderr

	done     chan struct{} // closed when the process has been reaped
	exitOnce sync.Once
	exit     ExitReason
}

// launchSpec is everything one container start needs.
type launchSpec struct {
	policy *policy.Policy
	binary string // the verified store entry
	shim   string
	ids    IDRange
	bundle *bundle
	socket string
	data   string
	stdout io.Writer
	stderr io.Writer
	inits  *initServer
}

// create creates the module's container and runs its init up to the point
// just before it execs the shim: namespaces, mounts, cgroups, rlimits and
// seccomp are in place, and the init waits on libcontainer's exec fifo until
// exec. Creating ahead of time takes the heavy part off the start path. On
// error nothing is left behind.
//
// blvm-sandbox-init does the creating (see runtime/launch): libcontainer
// re-executes whoever calls Start as the container's init, and that must be
// the small binary, not this process.
func (l Layout) create(ls launchSpec, stats statsReader) (*instance, error) {
	name := ls.policy.Module.Name
	cfg, err := ls.policy.LibcontainerConfig(policy.HostPaths{
		Rootfs:     ls.bundle.rootfs,
		Binary:     ls.binary,
		Shim:       ls.shim,
		Config:     ls.bundle.config,
		Socket:     ls.socket,
		Data:       ls.data,
		CgroupPath: l.CgroupPath(name),
		UIDBase:    ls.ids.Base,
		GIDBase:    ls.ids.Base,
		IDCount:    ls.ids.Count,
	})
	if err != nil {
		return nil, err
	}
	if ls.policy.Mode == policy.ModeRecord {
		// Only `blvm-sandbox record` runs these, listening here for the
		// filter's notify fd; a daemon never does, so it cannot start one.
		agent := l.RecordAgent(name)
		if st, err := os.Lstat(agent); err != nil || st.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("create %s: a record-mode policy needs its recorder listening at %s (only blvm-sandbox record runs one)", name, agent)
		}
		cfg.Seccomp.ListenerPath = agent
	} else if ls.policy.Mode != "" {
		return nil, fmt.Errorf("create %s: unknown policy mode %q", name, ls.policy.Mode)
	}
	env := make([]string, 0, len(ls.policy.Env))
	for _, e := range ls.policy.Env {
		env = append(env, e.Name+"="+e.Value)
	}
	req := launch.Request{
		StateDir: l.ContainersDir(), ID: ContainerID(name), Config: cfg,
		Process: launch.Process{
			Args: ls.policy.ShimArgs(), Env: env,
			UID: int(ls.policy.Process.UID), GID: int(ls.policy.Process.UID), Cwd: ls.policy.Process.Cwd,
		},
	}
	inst := &instance{name: name, cgroup: l.CgroupPath(name), stats: stats, done: make(chan struct{})}
	stdout, err := inst.copyOutput(ls.stdout)
	if err != nil {
		return nil, err
	}
	stderr, err := inst.copyOutput(ls.stderr)
	if err != nil {
		stdout.Close()
		inst.output.Wait()
		return nil, err
	}
	made, err := ls.inits.create(req, stdout, stderr)
	// The init holds its own copies now; ours would keep the copies from
	// ever seeing the end of the output.
	stdout.Close()
	stderr.Close()
	if err != nil {
		inst.output.Wait()
		return nil, err
	}
	inst.pid, inst.ended = made.pid, made.exit
	fail := func(err error) (*instance, error) {
		_ = unix.Kill(inst.pid, unix.SIGKILL)
		inst.reap()
		var destroyErr error
		if inst.container != nil {
			destroyErr = inst.container.Destroy()
		}
		return nil, errors.Join(fmt.Errorf("start container: %w", err), destroyErr)
	}
	if inst.container, err = libcontainer.Load(l.ContainersDir(), ContainerID(name)); err != nil {
		return fail(err)
	}
	if inst.hybrid, err = l.cgroups.joinHybrid(name, inst.pid); err != nil {
		return fail(err)
	}
	go inst.reap()
	return inst, nil
}

// outputBuffer is what one copy of a module's output holds: a line of
// logs, not io.Copy's 32 KiB per stream (P7 counts it once per module).
const outputBuffer = 4 << 10

// copyOutput returns the write end of a pipe whose reads go to w (nothing
// when w is nil) until every holder of the write end has closed it.
func (i *instance) copyOutput(w io.Writer) (*os.File, error) {
	r, wr, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("create container: %w", err)
	}
	if w == nil {
		w = io.Discard
	}
	i.output.Add(1)
	go func() {
		defer i.output.Done()
		defer r.Close()
		io.CopyBuffer(onlyWriter{w}, onlyReader{r}, make([]byte, outputBuffer))
	}()
	return wr, nil
}

// onlyWriter hides a writer's ReadFrom, and onlyReader a reader's WriteTo
// (an *os.File has one), either of which would bring back a buffer of its
// own choosing: io.Copy's 32 KiB, held for the module's life.
type onlyWriter struct{ io.Writer }
type onlyReader struct{ io.Reader }

// exec lets the waiting init exec the shim, which execs the module.
func (i *instance) exec() error {
	i.started = time.Now()
	if err := i.container.Exec(); err != nil {
		return fmt.Errorf("exec %s: %w", i.name, err)
	}
	return nil
}

// reap waits for the module's init to end, as the init server reports it
// (the init is the server's child), and records why. Should the server die
// first, the init is this process's child (the child subreaper) and is
// reaped here. The OOM count is read before Destroy removes the cgroup. It
// runs once; a second call waits for the first.
func (i *instance) reap() {
	i.exitOnce.Do(func() {
		reason := ExitReason{Code: -1}
		end, ok := <-i.ended
		if !ok {
			// Its server died: reparented, the init is our child now.
			end = launch.WaitPid(i.pid)
		}
		if end.Err != "" {
			reason.Err = "wait: " + end.Err
		} else if ws := unix.WaitStatus(end.Status); ws.Signaled() {
			reason.Signal = ws.Signal()
		} else {
			reason.Code = ws.ExitStatus()
		}
		// The module's last lines are in the log before its end is told.
		i.output.Wait()
		if st, err := i.stats.read(i.cgroup); err == nil && st.OOMKills > 0 {
			reason.OOMKilled = true
		}
		i.exit = reason
		close(i.done)
	})
	<-i.done
}

// signal sends sig to the container's init, which is the module itself
// (the shim execs it). In a private pid namespace, SIGKILL to init kills
// every process in the container.
func (i *instance) signal(sig os.Signal) error {
	err := i.container.Signal(sig)
	if errors.Is(err, libcontainer.ErrNotRunning) {
		return nil
	}
	return err
}

// stop ends the container: SIGTERM, up to grace for it to exit, then
// SIGKILL, then Destroy (which removes its cgroups and state).
func (i *instance) stop(grace time.Duration) error {
	select {
	case <-i.done:
	default:
		_ = i.signal(unix.SIGTERM)
		select {
		case <-i.done:
		case <-time.After(grace):
			if err := i.signal(unix.SIGKILL); err != nil {
				return fmt.Errorf("kill %s: %w", i.name, err)
			}
			<-i.done
		}
	}
	return i.destroy()
}

// discard ends a container whose module never ran (its init still waits on
// the exec fifo): there is nothing to stop gracefully.
func (i *instance) discard() error {
	if err := i.signal(unix.SIGKILL); err != nil {
		return fmt.Errorf("kill %s: %w", i.name, err)
	}
	<-i.done
	return i.destroy()
}

func (i *instance) destroy() error {
	if err := i.container.Destroy(); err != nil {
		return fmt.Errorf("destroy %s: %w", i.name, err)
	}
	if i.hybrid != "" {
		if err := removeCgroup(i.hybrid); err != nil {
			return fmt.Errorf("destroy %s: %w", i.name, err)
		}
	}
	return nil
}
