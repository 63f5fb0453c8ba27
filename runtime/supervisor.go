package runtime

import (
	"context"
	"errors"
	"fmt"
	"golang.org/x/sys/unix"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/blvm/blvm-sandbox/policy"
	"github.com/blvm/blvm-sandbox/runtime/quota"
)

// Module is what the supervisor runs: a compiled policy, the verified
// store entry it names, and the merged config.
type Module struct {
	Policy *policy.Policy
	Binary string // verified store entry (store/sha256/<hex>)
	Config []byte // the merged config, mounted read-only
	// Serve is handed the module's hub socket once, at load; the hub serves
	// it until the supervisor closes it at unload. Identity is the socket;
	// hostUID is the host uid the module runs as, the only peer (besides the
	// runtime itself) the hub should accept on it. The hub calls ready each
	// time a connection has spoken the protocol (its Hello): that is when a
	// start counts as up. ready is safe to call from any goroutine, any
	// number of times. An error refuses the load.
	Serve func(ln net.Listener, hostUID int, ready func()) error
	// Output receives a copy of the module's stdout and stderr besides the
	// log file (the run command's terminal). Optional.
	Stdout, Stderr io.Writer
	// Expires is when the module's signatures stop authorising it (the
	// manifest's expires); zero means never. Every start checks it,
	// restarts and standby containers included, and a module running when
	// it passes is stopped in state Expired.
	Expires time.Time
}

// RestartPolicy says what happens when a module exits on its own.
type RestartPolicy struct {
	// Never restarts: the module stays exited (the run command).
	Never bool
	// Delay before the first restart, doubled after each crash up to MaxDelay.
	Delay, MaxDelay time.Duration
	// MaxCrashes in Window mark the module failed; it is not restarted.
	MaxCrashes int
	Window     time.Duration
}

// DefaultRestart is the restart policy when none is set.
var DefaultRestart = RestartPolicy{Delay: 500 * time.Millisecond, MaxDelay: 30 * time.Second, MaxCrashes: 5, Window: 5 * time.Minute}

// Options configure a Supervisor. Zero values give the defaults.
type Options struct {
	Root        string // runtime root; see Layout
	Shim        string // the static Landlock shim binary; blvm-sandbox-init sits beside it
	Host        policy.Host
	Grace       time.Duration // between SIGTERM and SIGKILL at stop (5 s)
	Ready       time.Duration // deadline for a started module's Hello (10 s)
	Restart     RestartPolicy
	LogMaxBytes int64 // per log file before rotation (8 MiB)
	LogKeep     int   // rotated files kept (2)
	// UIDBase is the first host uid handed to modules (IDsBase); a
	// multiple of IDsPerModule. Ranges that overlap the host's users,
	// groups or subordinate ranges (/etc/passwd, group, subuid, subgid) are
	// never handed out.
	UIDBase uint32
	// UIDRegistry is the host-wide file recording every root's ranges
	// (DefaultUIDRegistry). Tests may point it elsewhere; every runtime on
	// one host must share it.
	UIDRegistry string
	// DiskProbe chooses how disk quotas are enforced (quota.ProbeKernel
	// when nil); tests inject one. With no backend the supervisor refuses
	// to start: a quota the policy promises must hold.
	DiskProbe quota.Prober
	// Owner is the root's owner lock when the caller took it already
	// (LockRoot); the supervisor takes it when nil. Close releases it.
	Owner  *RootLock
	Logger *slog.Logger
	// OnEvent is called for every state change, in order per module. It
	// must not block for long.
	OnEvent func(Event)
}

// State is where a module is in its lifecycle.
type State string

const (
	Starting   State = "starting"
	Running    State = "running"
	Restarting State = "restarting" // waiting out the backoff after a crash
	Stopping   State = "stopping"
	Stopped    State = "stopped" // stopped by the operator, or exited cleanly
	Failed     State = "failed"  // crashed too often; not restarted
	Expired    State = "expired" // its signatures expired; not restarted
)

// Event is one state change of one module.
type Event struct {
	Module   string
	State    State
	Time     time.Time
	Restarts int
	Exit     *ExitReason // set when the change follows an exit
}

// Status is a module's state as the operator sees it.
type Status struct {
	Name      string      `json:"name"`
	Version   string      `json:"version"`
	State     State       `json:"state"`
	Since     time.Time   `json:"since"`
	StartedAt time.Time   `json:"started_at,omitzero"`
	Pid       int         `json:"pid,omitempty"` // the module's host pid while running
	Restarts  int         `json:"restarts"`
	LastExit  *ExitReason `json:"last_exit,omitempty"`
}

// ErrNotLoaded is returned for a module the supervisor does not know.
var ErrNotLoaded = errors.New("not loaded")

// ErrExpired refuses a start after the module's Expires.
var ErrExpired = errors.New("signatures expired")

// Supervisor runs modules in containers and keeps them running.
type Supervisor struct {
	opts       Options
	layout     Layout
	ids        uidRegistry
	stats      statsReader
	log        *slog.Logger
	disk       quota.Backend
	diskChoice quota.Choice
	owner      *RootLock // held from NewSupervisor to Close
	inits      *initServer

	mu      sync.Mutex
	modules map[string]*supervised
}

// supervised is one loaded module and its supervision loop.
type supervised struct {
	mod     Module
	ids     IDRange
	ln      net.Listener
	ready   *readySignal
	logFile *logFile
	disk    *quota.Mount  // the data quota, attached from load to unload
	stop    chan struct{} // closed to ask the loop to stop
	done    chan struct{} // closed when the loop has cleaned up

	mu       sync.Mutex
	status   Status
	inst     *instance
	standby  *instance // created by Prepare, run by the loop's first start
	looping  bool      // Run has started the loop
	crashes  []time.Time
	finalErr error
}

// NewSupervisor prepares the root and cleans up whatever a runtime that died
// left behind (containers, cgroups, sockets, bundles), before anything runs.
func NewSupervisor(opts Options) (*Supervisor, error) {
	if opts.Root == "" || opts.Shim == "" {
		return nil, errors.New("supervisor: root and shim are required")
	}
	if _, err := os.Stat(InitBeside(opts.Shim)); err != nil {
		return nil, fmt.Errorf("supervisor: the container init %s, which goes beside the shim: %w (make build puts both in bin/)", InitBeside(opts.Shim), err)
	}
	// Containers' inits are children of blvm-sandbox-init; should it die,
	// they become this process's children (the child subreaper) to reap.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("supervisor: become the child subreaper: %w", err)
	}
	if opts.Grace <= 0 {
		opts.Grace = 5 * time.Second
	}
	if opts.Ready <= 0 {
		opts.Ready = 10 * time.Second
	}
	if opts.Restart == (RestartPolicy{}) {
		opts.Restart = DefaultRestart
	}
	if opts.LogMaxBytes <= 0 {
		opts.LogMaxBytes = 8 << 20
	}
	if opts.LogKeep <= 0 {
		opts.LogKeep = 2
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.UIDBase == 0 {
		opts.UIDBase = IDsBase
	}
	if err := checkUIDBase(opts.UIDBase); err != nil {
		return nil, fmt.Errorf("supervisor: %w", err)
	}
	if opts.UIDRegistry == "" {
		opts.UIDRegistry = DefaultUIDRegistry
	}
	s := &Supervisor{
		opts: opts, layout: Layout{Root: opts.Root}, stats: statsReader{version: opts.Host.CgroupVersion},
		ids: uidRegistry{path: opts.UIDRegistry, base: opts.UIDBase, files: etcIDFiles()},
		log: opts.Logger, modules: map[string]*supervised{},
		inits: newInitServer(InitBeside(opts.Shim), opts.Logger),
	}
	if err := s.layout.prepare(); err != nil {
		return nil, fmt.Errorf("supervisor: %w", err)
	}
	// Before recovery: whatever recovery finds must be nobody's.
	owner, err := s.layout.own(opts.Owner)
	if err != nil {
		return nil, fmt.Errorf("supervisor: %w", err)
	}
	s.owner = owner
	// Under the lock: placing the cgroups records them in state/.
	if err := s.layout.placeCgroups(opts.Host.CgroupVersion, s.log); err != nil {
		owner.release()
		return nil, fmt.Errorf("supervisor: %w", err)
	}
	warn := func(err error) { s.log.Warn("recover", "err", err) }
	if err := s.layout.recover(s.opts.Host, warn); err != nil {
		owner.release()
		return nil, fmt.Errorf("supervisor: recover: %w", err)
	}
	if err := s.layout.importLegacy(s.ids); err != nil {
		owner.release()
		return nil, fmt.Errorf("supervisor: %w", err)
	}
	disk, choice, err := quota.Open(s.layout.ModulesDataDir(), opts.DiskProbe)
	if err != nil {
		owner.release()
		return nil, fmt.Errorf("supervisor: %w", err)
	}
	s.disk, s.diskChoice = disk, choice
	s.log.Debug("disk quotas", "backend", choice.String())
	if init, err := filepath.Abs(InitBeside(opts.Shim)); err == nil {
		if root, err := filepath.Abs(opts.Root); err == nil && binaryContains(init, root) {
			s.log.Warn("the container init sits in a directory that contains the runtime's root; libcontainer will copy it for every container start (move one of them)",
				"init", init, "root", root)
		}
	}
	return s, nil
}

// Start loads a module and starts it, returning once it is running (its
// Hello was accepted: Serve's ready) or its first start failed. After that it
// is supervised until Stop. It is Prepare, then Run.
func (s *Supervisor) Start(ctx context.Context, m Module) error {
	if err := s.Prepare(ctx, m); err != nil {
		return err
	}
	return s.Run(ctx, m.Policy.Module.Name)
}

// Prepare loads a module (uid range, data dir, log, socket handed to the hub)
// and creates its container up to the moment before the module runs. It is
// the slow part of a start, and it can run for many modules at once while
// Run starts them in dependency order. A prepared module that is never Run
// is removed by Stop.
func (s *Supervisor) Prepare(ctx context.Context, m Module) error {
	name := m.Policy.Module.Name
	if err := checkName(name); err != nil {
		return err
	}
	if m.Serve == nil {
		return fmt.Errorf("start %s: no hub to serve its socket", name)
	}
	s.mu.Lock()
	if _, ok := s.modules[name]; ok {
		s.mu.Unlock()
		return fmt.Errorf("start %s: already loaded", name)
	}
	sv := &supervised{mod: m, stop: make(chan struct{}), done: make(chan struct{})}
	sv.status = Status{Name: name, Version: m.Policy.Module.Version, State: Starting, Since: time.Now()}
	s.modules[name] = sv
	s.mu.Unlock()

	if err := s.load(sv); err != nil {
		s.forget(name)
		return fmt.Errorf("start %s: %w", name, err)
	}
	inst, err := s.createInstance(sv)
	if err != nil {
		s.unload(sv)
		s.forget(name)
		return fmt.Errorf("start %s: %w", name, err)
	}
	sv.mu.Lock()
	sv.standby = inst
	sv.mu.Unlock()
	return nil
}

// Run starts a prepared module and supervises it; it returns once the
// module's Hello was accepted (Serve's ready), or its first start failed.
func (s *Supervisor) Run(ctx context.Context, name string) error {
	s.mu.Lock()
	sv, ok := s.modules[name]
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("run %s: %w", name, ErrNotLoaded)
	}
	sv.mu.Lock()
	if sv.looping {
		sv.mu.Unlock()
		return fmt.Errorf("run %s: already running", name)
	}
	sv.looping = true
	sv.mu.Unlock()
	first := make(chan error, 1)
	go s.loop(sv, first)
	select {
	case err := <-first:
		if err != nil {
			<-sv.done
			s.forget(name)
			return fmt.Errorf("start %s: %w", name, err)
		}
		return nil
	case <-ctx.Done():
		s.Stop(context.Background(), name)
		return ctx.Err()
	}
}

// load prepares what lives as long as the module is loaded: its uid range,
// data dir, log file and socket.
func (s *Supervisor) load(sv *supervised) error {
	name := sv.mod.Policy.Module.Name
	if err := sv.checkExpiry(time.Now()); err != nil {
		return err
	}
	ids, pruned, err := s.layout.allocateIDs(s.ids, name)
	for _, e := range pruned {
		s.log.Info("uid registry: range of a root that no longer exists released", "root", e.Root, "module", e.Module, "range", e.ids().String())
	}
	if err != nil {
		return err
	}
	sv.ids = ids
	disk, err := s.attachDisk(sv)
	if err != nil {
		return err
	}
	sv.disk = disk
	if disk.Resized {
		s.log.Info("disk quota resized", "module", name, "bytes", disk.Spec.Bytes)
	}
	fail := func(err error) error {
		os.RemoveAll(s.layout.SocketDir(name))
		s.detachDisk(sv)
		return err
	}
	if err := s.layout.prepareData(name, ids); err != nil {
		return fail(err)
	}
	lf, err := openLogFile(s.layout.Log(name), s.opts.LogMaxBytes, s.opts.LogKeep)
	if err != nil {
		return fail(err)
	}
	ln, err := listenSocket(s.layout.SocketDir(name), s.layout.Socket(name), ids.HostUID())
	if err != nil {
		lf.Close()
		return fail(err)
	}
	sv.logFile, sv.ln, sv.ready = lf, ln, newReadySignal()
	if err := sv.mod.Serve(ln, ids.HostUID(), sv.ready.signal); err != nil {
		ln.Close()
		lf.Close()
		return fail(fmt.Errorf("hub: %w", err))
	}
	return nil
}

// detachDisk takes the data quota off once nothing runs from it.
func (s *Supervisor) detachDisk(sv *supervised) {
	if sv.disk == nil {
		return
	}
	if err := s.disk.Detach(sv.disk); err != nil {
		s.log.Error("disk quota: detach", "module", sv.mod.Policy.Module.Name, "err", err)
	}
	sv.disk = nil
}

// checkExpiry refuses a start at or after the module's Expires.
func (sv *supervised) checkExpiry(now time.Time) error {
	if exp := sv.mod.Expires; !exp.IsZero() && !now.Before(exp) {
		return fmt.Errorf("%w at %s (now %s)", ErrExpired, exp.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return nil
}

// watchExpiry returns a channel closed once the wall clock passes exp (nil,
// never ready, for a zero exp), until quit is closed. Timers run on the
// monotonic clock, so the wall clock is read again at least once a minute.
func watchExpiry(exp time.Time, quit <-chan struct{}) <-chan struct{} {
	if exp.IsZero() {
		return nil
	}
	ch := make(chan struct{})
	go func() {
		for {
			d := time.Until(exp)
			if d <= 0 {
				close(ch)
				return
			}
			t := time.NewTimer(min(d, time.Minute))
			select {
			case <-t.C:
			case <-quit:
				t.Stop()
				return
			}
		}
	}()
	return ch
}

// loop starts the module, waits for it to end, and restarts it under the
// restart policy until asked to stop, it fails for good, or its signatures
// expire.
func (s *Supervisor) loop(sv *supervised, first chan<- error) {
	defer close(sv.done)
	quit := make(chan struct{})
	defer close(quit)
	expired := watchExpiry(sv.mod.Expires, quit)
	name := sv.mod.Policy.Module.Name
	delay := s.opts.Restart.Delay
	var exit ExitReason // how the last run ended
	for attempt := 0; ; attempt++ {
		inst, err := s.startOnce(sv)
		if attempt == 0 {
			first <- err
			if err != nil {
				s.unload(sv)
				return
			}
		}
		if errors.Is(err, ErrExpired) {
			s.log.Warn("module not restarted", "module", name, "reason", err.Error())
			s.unload(sv)
			s.setState(sv, Expired, &exit)
			return
		}
		if err != nil {
			exit = ExitReason{Code: -1, Err: err.Error()}
		} else {
			select {
			case <-sv.stop:
				s.setState(sv, Stopping, nil)
				if err := inst.stop(s.opts.Grace); err != nil {
					s.log.Error("stop", "module", name, "err", err)
				}
				exit = inst.exit
				s.unload(sv)
				s.setState(sv, Stopped, &exit)
				return
			case <-expired:
				s.log.Warn("module's signatures expired; stopping it", "module", name, "expires", sv.mod.Expires.UTC().Format(time.RFC3339))
				s.setState(sv, Stopping, nil)
				if err := inst.stop(s.opts.Grace); err != nil {
					s.log.Error("stop", "module", name, "err", err)
				}
				exit = inst.exit
				s.unload(sv)
				s.setState(sv, Expired, &exit)
				return
			case <-inst.done:
				exit = inst.exit
				if err := inst.destroy(); err != nil {
					s.log.Error("destroy after exit", "module", name, "err", err)
				}
			}
		}
		s.log.Warn("module exited", "module", name, "reason", exit.String())
		if exit.Clean() || s.opts.Restart.Never {
			s.unload(sv)
			s.setState(sv, Stopped, &exit)
			return
		}
		if s.crashedTooOften(sv) {
			s.unload(sv)
			s.setState(sv, Failed, &exit)
			return
		}
		s.setState(sv, Restarting, &exit)
		// The backoff is spent creating the next container, so that when
		// the restart is due only the exec and the module's start remain.
		due := time.NewTimer(delay)
		standby := make(chan *instance, 1)
		go func() {
			inst, err := s.createInstance(sv)
			if err != nil {
				s.log.Warn("standby container", "module", name, "err", err)
			}
			standby <- inst
		}()
		var end State
		select {
		case <-sv.stop:
			end = Stopped
		case <-expired:
			end = Expired
		case <-due.C:
		}
		due.Stop()
		if end != "" {
			if inst := <-standby; inst != nil {
				inst.discard()
			}
			s.unload(sv)
			s.setState(sv, end, &exit)
			return
		}
		// A creation still running when the restart is due is waited for:
		// it is the start the restart would make anyway.
		if inst := <-standby; inst != nil {
			sv.mu.Lock()
			sv.standby = inst
			sv.mu.Unlock()
		}
		delay = min(2*delay, s.opts.Restart.MaxDelay)
		sv.mu.Lock()
		sv.status.Restarts++
		sv.mu.Unlock()
	}
}

// createInstance resets the module's files (a mode or owner it changed
// during a run does not survive), makes a fresh bundle and creates the
// container. It refuses once the module's signatures have expired.
func (s *Supervisor) createInstance(sv *supervised) (*instance, error) {
	p := sv.mod.Policy
	name := p.Module.Name
	if err := sv.checkExpiry(time.Now()); err != nil {
		return nil, err
	}
	if err := s.layout.prepareData(name, sv.ids); err != nil {
		return nil, err
	}
	if err := ownSocket(s.layout.SocketDir(name), s.layout.Socket(name), sv.ids.HostUID()); err != nil {
		return nil, err
	}
	b, err := s.layout.makeBundle(p, sv.mod.Config, sv.ids)
	if err != nil {
		return nil, err
	}
	inst, err := s.layout.create(launchSpec{
		policy: p, binary: sv.mod.Binary, shim: s.opts.Shim, ids: sv.ids, bundle: b, inits: s.inits,
		socket: s.layout.Socket(name), data: s.layout.Data(name),
		stdout: tee(sv.logFile, sv.mod.Stdout), stderr: tee(sv.logFile, sv.mod.Stderr),
	}, s.stats)
	if err != nil {
		b.remove()
		return nil, err
	}
	return inst, nil
}

// startOnce runs the prepared container (or creates one, after a crash)
// and waits for the module's Hello (Serve's ready). A prepared container
// is not run once the module's signatures have expired.
func (s *Supervisor) startOnce(sv *supervised) (*instance, error) {
	sv.mu.Lock()
	inst := sv.standby
	sv.standby = nil
	sv.mu.Unlock()
	if err := sv.checkExpiry(time.Now()); err != nil {
		if inst != nil {
			inst.discard()
		}
		return nil, err
	}
	s.setState(sv, Starting, nil)
	if inst == nil {
		var err error
		if inst, err = s.createInstance(sv); err != nil {
			return nil, err
		}
	}
	ready := sv.ready.reset()
	if err := inst.exec(); err != nil {
		inst.discard()
		return nil, err
	}
	sv.mu.Lock()
	sv.inst = inst
	sv.mu.Unlock()
	running := func() (*instance, error) {
		sv.mu.Lock()
		sv.status.StartedAt = inst.started
		sv.status.Pid = inst.pid
		sv.mu.Unlock()
		s.setState(sv, Running, nil)
		return inst, nil
	}
	select {
	case <-ready:
		return running()
	case <-inst.done:
		// A module that spoke and ended at once did start (the loop then
		// handles the exit); the hub may read its Hello a moment after the
		// process is gone.
		select {
		case <-ready:
			return running()
		case <-time.After(100 * time.Millisecond):
		}
		// Ended before it ever spoke: report how it ended.
		inst.destroy()
		return nil, fmt.Errorf("exited before its Hello: %s", inst.exit)
	case <-time.After(s.opts.Ready):
	case <-sv.stop:
	}
	inst.stop(s.opts.Grace)
	return nil, fmt.Errorf("no Hello on its socket within %s (the hub logs why a handshake failed)", s.opts.Ready)
}

// crashedTooOften records a crash and reports whether the window is full.
func (s *Supervisor) crashedTooOften(sv *supervised) bool {
	now := time.Now()
	sv.mu.Lock()
	defer sv.mu.Unlock()
	kept := sv.crashes[:0]
	for _, t := range sv.crashes {
		if now.Sub(t) < s.opts.Restart.Window {
			kept = append(kept, t)
		}
	}
	sv.crashes = append(kept, now)
	return len(sv.crashes) >= s.opts.Restart.MaxCrashes
}

// unload closes the socket and removes what the module's runs left on
// disk, except its data dir and log.
func (s *Supervisor) unload(sv *supervised) {
	name := sv.mod.Policy.Module.Name
	sv.ln.Close()
	os.RemoveAll(s.layout.SocketDir(name))
	os.RemoveAll(s.layout.Bundle(name))
	s.layout.removeCgroupParent(s.opts.Host)
	s.detachDisk(sv)
	sv.logFile.Close()
}

func (s *Supervisor) setState(sv *supervised, st State, exit *ExitReason) {
	sv.mu.Lock()
	sv.status.State, sv.status.Since = st, time.Now()
	if st != Running {
		sv.status.Pid = 0
	}
	if exit != nil {
		e := *exit
		sv.status.LastExit = &e
	}
	ev := Event{Module: sv.status.Name, State: st, Time: sv.status.Since, Restarts: sv.status.Restarts, Exit: sv.status.LastExit}
	if exit == nil {
		ev.Exit = nil
	}
	sv.mu.Unlock()
	if s.opts.OnEvent != nil {
		s.opts.OnEvent(ev)
	}
}

// Stop stops a module and unloads it: SIGTERM, the grace period, SIGKILL to
// the whole container, Destroy, and removal of its socket, bundle and
// cgroups. Its data dir stays. It returns how the module's last run ended.
func (s *Supervisor) Stop(ctx context.Context, name string) (ExitReason, error) {
	s.mu.Lock()
	sv, ok := s.modules[name]
	s.mu.Unlock()
	if !ok {
		return ExitReason{}, fmt.Errorf("stop %s: %w", name, ErrNotLoaded)
	}
	sv.mu.Lock()
	select {
	case <-sv.stop:
	default:
		close(sv.stop)
	}
	looping, standby := sv.looping, sv.standby
	sv.standby = nil
	sv.mu.Unlock()
	if !looping {
		// Prepared, never run: destroy the waiting container and unload.
		if standby != nil {
			standby.discard()
		}
		s.unload(sv)
		s.forget(name)
		return ExitReason{}, nil
	}
	select {
	case <-sv.done:
	case <-ctx.Done():
		return ExitReason{}, ctx.Err()
	}
	s.forget(name)
	sv.mu.Lock()
	defer sv.mu.Unlock()
	if sv.status.LastExit == nil {
		return ExitReason{}, nil
	}
	return *sv.status.LastExit, nil
}

func (s *Supervisor) forget(name string) {
	s.mu.Lock()
	delete(s.modules, name)
	s.mu.Unlock()
}

// Wait blocks until the module's supervision ends (it stopped, exited
// under RestartPolicy.Never, or failed) and returns its last exit.
func (s *Supervisor) Wait(ctx context.Context, name string) (ExitReason, error) {
	s.mu.Lock()
	sv, ok := s.modules[name]
	s.mu.Unlock()
	if !ok {
		return ExitReason{}, fmt.Errorf("wait %s: %w", name, ErrNotLoaded)
	}
	select {
	case <-sv.done:
	case <-ctx.Done():
		return ExitReason{}, ctx.Err()
	}
	sv.mu.Lock()
	defer sv.mu.Unlock()
	if sv.status.LastExit == nil {
		return ExitReason{}, fmt.Errorf("wait %s: no exit recorded", name)
	}
	return *sv.status.LastExit, nil
}

// Status returns a module's status, if it is loaded.
func (s *Supervisor) Status(name string) (Status, bool) {
	s.mu.Lock()
	sv, ok := s.modules[name]
	s.mu.Unlock()
	if !ok {
		return Status{}, false
	}
	sv.mu.Lock()
	defer sv.mu.Unlock()
	return sv.status, true
}

// List returns the names of the loaded modules.
func (s *Supervisor) List() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.modules))
	for n := range s.modules {
		names = append(names, n)
	}
	return names
}

// Stats reads the module's cgroup figures while it runs.
func (s *Supervisor) Stats(name string) (Stats, error) {
	s.mu.Lock()
	sv, ok := s.modules[name]
	s.mu.Unlock()
	if !ok {
		return Stats{}, fmt.Errorf("stats %s: %w", name, ErrNotLoaded)
	}
	sv.mu.Lock()
	running := sv.inst != nil && sv.status.State == Running
	sv.mu.Unlock()
	if !running {
		return Stats{}, fmt.Errorf("stats %s: not running", name)
	}
	return s.stats.read(s.layout.CgroupPath(name))
}

// Close stops every module and gives up the root: another supervisor may
// own it afterwards (and recovers what a stop that failed left behind).
func (s *Supervisor) Close(ctx context.Context) error {
	var errs []error
	for _, n := range s.List() {
		if _, err := s.Stop(ctx, n); err != nil {
			errs = append(errs, err)
		}
	}
	s.inits.close()
	s.mu.Lock()
	s.owner.release()
	s.mu.Unlock()
	return errors.Join(errs...)
}

// tee writes to the log and, when set, to a second writer.
func tee(log io.Writer, extra io.Writer) io.Writer {
	if extra == nil {
		return log
	}
	return io.MultiWriter(log, extra)
}
