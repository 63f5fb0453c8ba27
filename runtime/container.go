package runtime

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"

	"github.com/blvm/blvm-sandbox/policy"
)

// instance is one run of a module's container, from Create to Destroy.
type instance struct {
	name      string
	container *libcontainer.Container
	process   *libcontainer.Process
	cgroup    string // as libcontainer took it (Layout.CgroupPath)
	hybrid    string // the unified cgroup joinHybrid made, removed at destroy
	stats     statsReader
	started   time.Time

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
}

// create creates the module's container and runs its init up to the point
// just before it execs the shim: namespaces, mounts, cgroups, rlimits and
// seccomp are in place, and the init waits on libcontainer's exec fifo until
// exec. Creating ahead of time takes the heavy part off the start path. On
// error nothing is left behind.
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
	c, err := libcontainer.Create(l.ContainersDir(), ContainerID(name), cfg)
	if err != nil {
		return nil, fmt.Errorf("create container: %w", err)
	}
	env := make([]string, 0, len(ls.policy.Env))
	for _, e := range ls.policy.Env {
		env = append(env, e.Name+"="+e.Value)
	}
	p := &libcontainer.Process{
		Args:   ls.policy.ShimArgs(),
		Env:    env,
		UID:    int(ls.policy.Process.UID),
		GID:    int(ls.policy.Process.UID),
		Cwd:    ls.policy.Process.Cwd,
		Stdout: ls.stdout,
		Stderr: ls.stderr,
		Init:   true,
	}
	if err := c.Start(p); err != nil {
		destroyErr := c.Destroy()
		return nil, errors.Join(fmt.Errorf("start container: %w", err), destroyErr)
	}
	pid, err := p.Pid()
	var hybrid string
	if err == nil {
		hybrid, err = l.cgroups.joinHybrid(name, pid)
	}
	if err != nil {
		_ = c.Signal(unix.SIGKILL)
		destroyErr := c.Destroy()
		return nil, errors.Join(fmt.Errorf("start container: %w", err), destroyErr)
	}
	inst := &instance{
		name: name, container: c, process: p, cgroup: l.CgroupPath(name), hybrid: hybrid, stats: stats,
		done: make(chan struct{}),
	}
	go inst.reap()
	return inst, nil
}

// exec lets the waiting init exec the shim, which execs the module.
func (i *instance) exec() error {
	i.started = time.Now()
	if err := i.container.Exec(); err != nil {
		return fmt.Errorf("exec %s: %w", i.name, err)
	}
	return nil
}

// reap waits for the module's process and records why it ended. The OOM
// count is read before Destroy removes the cgroup.
func (i *instance) reap() {
	state, err := i.process.Wait()
	reason := ExitReason{Code: -1}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		state = ee.ProcessState
	}
	switch {
	case state != nil:
		ws := state.Sys().(syscall.WaitStatus)
		if ws.Signaled() {
			reason.Signal = unix.Signal(ws.Signal())
		} else {
			reason.Code = ws.ExitStatus()
		}
	case err != nil:
		reason.Err = "wait: " + err.Error()
	}
	if st, err := i.stats.read(i.cgroup); err == nil && st.OOMKills > 0 {
		reason.OOMKilled = true
	}
	i.exitOnce.Do(func() { i.exit = reason })
	close(i.done)
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
