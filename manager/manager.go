package manager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/blvm/blvm-sandbox/admin"
	"github.com/blvm/blvm-sandbox/capabilities"
	"github.com/blvm/blvm-sandbox/ipc/hub"
	"github.com/blvm/blvm-sandbox/ipc/pb"
	"github.com/blvm/blvm-sandbox/loader"
	"github.com/blvm/blvm-sandbox/manifest"
	"github.com/blvm/blvm-sandbox/nodeconfig"
	"github.com/blvm/blvm-sandbox/policy"
	"github.com/blvm/blvm-sandbox/runtime"
	"github.com/blvm/blvm-sandbox/verify"
)

// Options configure a Manager.
type Options struct {
	Config  *nodeconfig.Config
	Shim    string      // the static Landlock shim
	Host    policy.Host // this kernel's facts
	Hub     *hub.Hub
	Sources []Source // nil: the modules dir of Config.Paths
	Logger  *slog.Logger
	// PrepareAhead bounds how many modules LoadAll verifies and creates
	// containers for ahead of the one it starts (0: 4). Each waiting
	// container holds a blocked init process (a few MiB) until it runs.
	PrepareAhead int
	// UIDRegistry is the host-wide uid range registry ("":
	// runtime.DefaultUIDRegistry).
	UIDRegistry string
}

// Manager loads, supervises and unloads modules in dependency order, and
// tells the hub and subscribers about every load and unload.
type Manager struct {
	opts    Options
	cfg     *nodeconfig.Config
	catalog *capabilities.Catalog // parsed once, not per load
	sup     *runtime.Supervisor
	hub     *hub.Hub
	log     *slog.Logger

	mu      sync.Mutex
	known   map[string]*entry // every discovered module
	order   []string          // loaded modules, in load order
	subs    map[chan admin.Event]struct{}
	closing bool
}

// entry is one discovered module.
type entry struct {
	cand     Candidate
	prep     *loader.Prepared // set while loaded
	loaded   bool
	state    string // a runtime.State, or "refused"
	reason   string // why refused or failed
	lastExit string
	exit     *runtime.ExitReason // lastExit as fields
	restarts int                 // as last reported by the supervisor
}

// StateRefused marks a module that could not load: verification, its
// dependencies, or its policy said no. Its reason says which.
const StateRefused = "refused"

// New makes the manager and its supervisor, which first removes whatever a
// runtime that died left behind.
func New(opts Options) (*Manager, error) {
	if opts.Config == nil || opts.Hub == nil {
		return nil, errors.New("manager: config and hub are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Sources == nil {
		opts.Sources = []Source{DirSource{Dir: opts.Config.Paths.ModulesDir}}
	}
	m := &Manager{
		opts: opts, cfg: opts.Config, hub: opts.Hub, log: opts.Logger,
		known: map[string]*entry{}, subs: map[chan admin.Event]struct{}{},
	}
	cat, err := capabilities.Default()
	if err != nil {
		return nil, err
	}
	m.catalog = cat
	sb := opts.Config.Sandbox
	sup, err := runtime.NewSupervisor(runtime.Options{
		Root: opts.Config.Paths.Root, Shim: opts.Shim, Host: opts.Host,
		Grace: sb.StopGrace, Ready: sb.ReadyTimeout, Logger: opts.Logger,
		UIDBase: uint32(sb.UIDBase), UIDRegistry: opts.UIDRegistry,
		Restart: runtime.RestartPolicy{Delay: sb.RestartDelay, MaxDelay: sb.RestartMaxDelay, MaxCrashes: sb.MaxCrashes, Window: sb.CrashWindow},
		OnEvent: m.onRuntimeEvent,
	})
	if err != nil {
		return nil, err
	}
	m.sup = sup
	return m, nil
}

// Discover scans every source. A module whose manifest cannot be read is
// listed as refused with the parse errors; the others are unaffected.
func (m *Manager) Discover(ctx context.Context) error {
	var found []Candidate
	for _, s := range m.opts.Sources {
		cs, err := s.Discover(ctx)
		if err != nil {
			return err
		}
		found = append(found, cs...)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range found {
		name := filepath.Base(c.Dir)
		if c.Manifest != nil {
			name = c.Manifest.Name
		}
		if e, ok := m.known[name]; ok && e.loaded {
			continue // a loaded module keeps what it was loaded from
		}
		e := &entry{cand: c, state: string(runtime.Stopped)}
		if c.Err != nil {
			e.state, e.reason = StateRefused, c.Err.Error()
		}
		m.known[name] = e
	}
	return nil
}

// LoadAll loads every enabled, discovered module in dependency order. A
// module that cannot load is refused with its reason; its dependents are
// refused too; everything else loads. Verification and container creation
// (the slow part) run ahead, a few modules at a time; each module is then
// started only after the modules it requires are running.
func (m *Manager) LoadAll(ctx context.Context) error {
	plan := m.plan(func(name string) bool { return m.cfg.IsEnabled(name) })
	for name, why := range plan.Refused {
		m.refuse(name, why)
	}
	ahead := m.opts.PrepareAhead
	if ahead <= 0 {
		ahead = 4
	}
	prepared := make([]chan error, len(plan.Order))
	slots := make(chan struct{}, ahead)
	for i := range plan.Order {
		prepared[i] = make(chan error, 1)
	}
	go func() {
		for i, name := range plan.Order {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				prepared[i] <- ctx.Err()
				continue
			}
			go func() { prepared[i] <- m.prepare(ctx, name) }()
		}
	}()
	var errs []error
	for i, name := range plan.Order {
		err := <-prepared[i]
		if err == nil {
			err = m.run(ctx, name)
		}
		<-slots
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// plan orders the discovered modules that include selects.
func (m *Manager) plan(include func(string) bool) Plan {
	m.mu.Lock()
	mods := map[string]*manifest.Manifest{}
	for name, e := range m.known {
		if e.cand.Manifest != nil && include(name) {
			mods[name] = e.cand.Manifest
		}
	}
	m.mu.Unlock()
	return PlanLoad(mods, m.cfg.Node.Version)
}

func (m *Manager) refuse(name, why string) {
	m.mu.Lock()
	if e, ok := m.known[name]; ok {
		e.state, e.reason = StateRefused, why
	}
	m.mu.Unlock()
	m.log.Error("module refused", "module", name, "reason", why)
	m.emit(admin.Event{Module: name, Kind: "state", State: StateRefused, Detail: why})
}

// Load verifies module name and starts it. Its required dependencies must
// be loaded already.
func (m *Manager) Load(ctx context.Context, name string) error {
	m.mu.Lock()
	e, ok := m.known[name]
	if !ok {
		m.mu.Unlock()
		return fmt.Errorf("%w: %s", admin.ErrUnknownModule, name)
	}
	loaded := e.loaded
	m.mu.Unlock()
	if loaded {
		return nil
	}
	// The plan is checked again against what runs now: the node version,
	// and the loaded dependencies' versions against the constraints.
	if err := m.depsLoaded(name); err != nil {
		return err
	}
	if p := m.planWith(name); p != "" {
		m.refuse(name, p)
		return fmt.Errorf("load %s: %w: %s", name, admin.ErrConflict, p)
	}
	if err := m.prepare(ctx, name); err != nil {
		return err
	}
	return m.run(ctx, name)
}

// depsLoaded refuses module name unless every module it requires runs.
func (m *Manager) depsLoaded(name string) error {
	m.mu.Lock()
	e := m.known[name]
	if e.cand.Manifest == nil {
		m.mu.Unlock()
		return fmt.Errorf("load %s: %s", name, e.reason)
	}
	man := e.cand.Manifest
	for _, dep := range slices.Sorted(maps.Keys(man.Dependencies)) {
		if dep == manifest.NodeDependency {
			continue
		}
		if d, ok := m.known[dep]; !ok || !d.loaded {
			m.mu.Unlock()
			why := fmt.Sprintf("requires %s %s, which is not loaded", dep, man.Dependencies[dep])
			m.refuse(name, why)
			return fmt.Errorf("load %s: %w: %s", name, admin.ErrConflict, why)
		}
	}
	m.mu.Unlock()
	return nil
}

// prepare verifies the module, compiles its policy, attaches its socket to
// the hub and creates its container, ready to run.
func (m *Manager) prepare(ctx context.Context, name string) error {
	m.mu.Lock()
	e := m.known[name]
	dir := e.cand.Dir
	m.mu.Unlock()
	prep, err := loader.Prepare(dir, m.cfg, loader.Options{Root: m.cfg.Paths.Root, Host: m.opts.Host, Catalog: m.catalog})
	if err != nil {
		m.refuse(name, err.Error())
		return fmt.Errorf("load %s: %w", name, err)
	}
	for _, w := range prep.Warnings {
		m.log.Warn("config", "module", name, "warning", w)
	}
	spec := hub.ModuleSpec{
		ID: moduleID(prep.Manifest), Name: name, Version: prep.Manifest.Version,
		Capabilities: prep.Capabilities.Names(), ACL: prep.Policy.Hub,
	}
	err = m.sup.Prepare(ctx, runtime.Module{
		Policy: prep.Policy, Binary: prep.Verified.StorePath, Config: prep.Config, Expires: Expiry(prep.Manifest),
		Serve: func(ln net.Listener, uid int) error { spec.PeerUID = uid; return m.hub.Attach(spec, ln) },
	})
	if err != nil {
		m.hub.Detach(name)
		m.refuseOrExpire(name, err)
		return fmt.Errorf("load %s: %w", name, err)
	}
	m.mu.Lock()
	e.prep = prep
	m.mu.Unlock()
	return nil
}

// run starts a prepared module once the modules it requires are running.
func (m *Manager) run(ctx context.Context, name string) error {
	if err := m.depsLoaded(name); err != nil {
		m.sup.Stop(ctx, name) // destroys the prepared container
		m.hub.Detach(name)
		return err
	}
	m.mu.Lock()
	e := m.known[name]
	prep := e.prep
	m.mu.Unlock()
	if err := m.sup.Run(ctx, name); err != nil {
		m.hub.Detach(name)
		m.refuseOrExpire(name, err)
		return fmt.Errorf("load %s: %w", name, err)
	}
	if err := verify.RecordLoaded(m.cfg.Paths.Root, name, prep.Manifest.Version); err != nil {
		m.log.Warn("rollback mark not recorded", "module", name, "err", err)
	}
	m.mu.Lock()
	e.loaded, e.reason = true, ""
	m.order = append(m.order, name)
	m.mu.Unlock()
	m.log.Info("module loaded", "module", name, "version", prep.Manifest.Version, "capabilities", prep.Capabilities.Names(), "store", prep.Verified.StorePath)
	m.hub.ModuleLoaded(moduleID(prep.Manifest), name, prep.Manifest.Version)
	m.emit(admin.Event{Module: name, Kind: "loaded", State: string(runtime.Running), Detail: prep.Manifest.Version})
	return nil
}

// Expiry is the manifest's expires as the runtime takes it (zero: never).
func Expiry(man *manifest.Manifest) time.Time {
	if man == nil || man.Expires == nil {
		return time.Time{}
	}
	return *man.Expires
}

// refuseOrExpire records a failed load: expired when the runtime refused the
// start because the module's signatures had expired, refused otherwise.
func (m *Manager) refuseOrExpire(name string, err error) {
	if !errors.Is(err, runtime.ErrExpired) {
		m.refuse(name, err.Error())
		return
	}
	m.mu.Lock()
	if e, ok := m.known[name]; ok {
		e.state, e.reason = string(runtime.Expired), err.Error()
	}
	m.mu.Unlock()
	m.log.Error("module expired", "module", name, "reason", err.Error())
	m.emit(admin.Event{Module: name, Kind: "state", State: string(runtime.Expired), Detail: err.Error()})
}

// planWith re-checks module name's dependency constraints against what is
// loaded and the node version; "" when they hold.
func (m *Manager) planWith(name string) string {
	p := m.plan(func(n string) bool {
		if n == name {
			return true
		}
		e := m.known[n]
		return e != nil && e.loaded
	})
	return p.Refused[name]
}

// moduleID is the id the hub gives a module in Welcome and lifecycle events.
func moduleID(man *manifest.Manifest) string { return man.Name + "@" + man.Version }

// Unload stops module name and every loaded module that requires it,
// dependents first, and publishes ModuleUnloaded for each.
func (m *Manager) Unload(ctx context.Context, name string) error {
	m.mu.Lock()
	e, ok := m.known[name]
	if !ok {
		m.mu.Unlock()
		return fmt.Errorf("%w: %s", admin.ErrUnknownModule, name)
	}
	if !e.loaded {
		m.mu.Unlock()
		return nil
	}
	mods := map[string]*manifest.Manifest{}
	for _, n := range m.order {
		mods[n] = m.known[n].cand.Manifest
	}
	victims := append(Dependents(mods, m.order, name), name)
	m.mu.Unlock()
	var errs []error
	for _, v := range victims {
		if err := m.unloadOne(ctx, v); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) unloadOne(ctx context.Context, name string) error {
	m.mu.Lock()
	e := m.known[name]
	if e == nil || !e.loaded {
		m.mu.Unlock()
		return nil
	}
	e.loaded = false
	m.order = slices.DeleteFunc(m.order, func(n string) bool { return n == name })
	id := moduleID(e.cand.Manifest)
	m.mu.Unlock()
	_, err := m.sup.Stop(ctx, name)
	m.hub.Detach(name)
	m.hub.ModuleUnloaded(id, name)
	m.log.Info("module unloaded", "module", name)
	m.emit(admin.Event{Module: name, Kind: "unloaded", State: string(runtime.Stopped)})
	if err != nil && !isNotLoaded(err) {
		return fmt.Errorf("unload %s: %w", name, err)
	}
	return nil
}

func isNotLoaded(err error) bool { return err != nil && errors.Is(err, runtime.ErrNotLoaded) }

// Start loads a stopped module (admin "start").
func (m *Manager) Start(ctx context.Context, name string) error { return m.Load(ctx, name) }

// Stop unloads a module; it stays listed as stopped (admin "stop").
func (m *Manager) Stop(ctx context.Context, name string) error { return m.Unload(ctx, name) }

// Restart unloads and loads a module again (with the modules that require
// it, which are unloaded first and loaded again after it).
func (m *Manager) Restart(ctx context.Context, name string) error {
	m.mu.Lock()
	mods := map[string]*manifest.Manifest{}
	for _, n := range m.order {
		mods[n] = m.known[n].cand.Manifest
	}
	deps := Dependents(mods, m.order, name)
	m.mu.Unlock()
	if err := m.Unload(ctx, name); err != nil {
		return err
	}
	if err := m.Load(ctx, name); err != nil {
		return err
	}
	var errs []error
	for i := len(deps) - 1; i >= 0; i-- {
		if err := m.Load(ctx, deps[i]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Shutdown unloads every module in reverse load order.
func (m *Manager) Shutdown(ctx context.Context) error {
	m.mu.Lock()
	m.closing = true
	order := slices.Clone(m.order)
	m.mu.Unlock()
	var errs []error
	for i := len(order) - 1; i >= 0; i-- {
		if err := m.unloadOne(ctx, order[i]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// onRuntimeEvent follows the supervisor: crashes, restarts, failures. A
// module that failed for good, or exited by itself, is unloaded in the hub.
func (m *Manager) onRuntimeEvent(ev runtime.Event) {
	m.mu.Lock()
	e := m.known[ev.Module]
	detail := ""
	if ev.Exit != nil {
		detail = ev.Exit.String()
	}
	endedByItself := false
	if e != nil {
		e.state, e.restarts = string(ev.State), ev.Restarts
		if ev.Exit != nil {
			x := *ev.Exit // the supervisor's, not ours to share
			e.lastExit, e.exit = detail, &x
		}
		switch ev.State {
		case runtime.Failed:
			e.reason = fmt.Sprintf("crashed %d times; last: %s", ev.Restarts+1, detail)
		case runtime.Expired:
			e.reason = "signatures expired at " + Expiry(e.cand.Manifest).UTC().Format(time.RFC3339)
		}
		endedByItself = e.loaded && (ev.State == runtime.Failed || ev.State == runtime.Stopped || ev.State == runtime.Expired)
		if endedByItself {
			e.loaded = false
			m.order = slices.DeleteFunc(m.order, func(n string) bool { return n == ev.Module })
		}
	}
	m.mu.Unlock()
	switch ev.State {
	case runtime.Restarting:
		m.log.Warn("module crashed; restarting", "module", ev.Module, "exit", detail, "restarts", ev.Restarts)
	case runtime.Failed:
		m.log.Error("module failed; not restarting", "module", ev.Module, "exit", detail)
	case runtime.Expired:
		m.log.Error("module's signatures expired; stopped, not restarting", "module", ev.Module, "exit", detail)
	}
	m.emit(admin.Event{Module: ev.Module, Kind: "state", State: string(ev.State), Detail: detail, Time: ev.Time})
	if endedByItself && e != nil && e.cand.Manifest != nil {
		go func() {
			m.sup.Stop(context.Background(), ev.Module) // forget it in the supervisor
			m.hub.Detach(ev.Module)
			m.hub.ModuleUnloaded(moduleID(e.cand.Manifest), ev.Module)
			m.emit(admin.Event{Module: ev.Module, Kind: "unloaded", State: string(ev.State), Detail: detail})
		}()
	}
}

// Modules lists every discovered module with its state and figures.
func (m *Manager) Modules() []admin.ModuleInfo {
	m.mu.Lock()
	names := slices.Sorted(maps.Keys(m.known))
	infos := make([]admin.ModuleInfo, 0, len(names))
	for _, n := range names {
		e := m.known[n]
		info := admin.ModuleInfo{Name: n, State: e.state, Error: e.reason, LastExit: e.lastExit, Exit: exitInfo(e.exit), Restarts: e.restarts}
		if e.cand.Manifest != nil {
			info.Version = e.cand.Manifest.Version
			info.Dependencies = slices.Sorted(maps.Keys(e.cand.Manifest.Dependencies))
		}
		if e.prep != nil {
			// The configured limits, kept when there is no cgroup to read.
			info.MemoryLimit = uint64(max(e.prep.Policy.Cgroup.MemoryBytes.Value, 0))
			info.PidsLimit = uint64(max(e.prep.Policy.Cgroup.Pids.Value, 0))
		}
		infos = append(infos, info)
	}
	m.mu.Unlock()
	for i := range infos {
		info := &infos[i]
		if st, ok := m.sup.Status(info.Name); ok {
			info.State, info.StartedAt, info.Restarts, info.Pid = string(st.State), st.StartedAt, st.Restarts, st.Pid
			if st.LastExit != nil {
				info.LastExit, info.Exit = st.LastExit.String(), exitInfo(st.LastExit)
			}
		}
		if s, err := m.sup.Stats(info.Name); err == nil {
			info.MemoryBytes, info.MemoryLimit, info.CPUNanos = s.MemoryBytes, s.MemoryLimit, s.CPUNanos
			info.KernelMemoryBytes = s.KernelBytes
			info.Pids, info.PidsLimit, info.OOMKills = s.Pids, s.PidsLimit, s.OOMKills
			info.ThrottledPeriods, info.ThrottledNanos = s.ThrottledPeriods, s.ThrottledNanos
		}
		if d, err := m.sup.Disk(info.Name); err == nil {
			info.DiskBytes, info.DiskBytesLimit = d.BytesUsed, d.BytesLimit
			info.DiskInodes, info.DiskInodesLimit = d.InodesUsed, d.InodesLimit
		}
		hs := m.hub.Stats(info.Name)
		info.HubRequests, info.HubDenied, info.HubRateLimited, info.HubInvalid = hs.Requests, hs.Denied, hs.RateLimited, hs.Invalid
		info.EventsDelivered, info.EventsDropped, info.BadFrames = hs.EventsDelivered, hs.EventsDropped, hs.BadFrames
		info.PeerRefused, info.LogSuppressed = hs.PeerRefused, hs.LogSuppressed
		info.HandshakeFailures, info.Connections, info.ConnectionsOpen = hs.HandshakeFailures, hs.Connections, hs.Open
		info.LogBytes, info.LogDropped = hs.LogBytes, hs.LogDropped
		for _, c := range hs.Calls {
			info.HubCalls = append(info.HubCalls, admin.HubCall{Method: c.Method, Code: c.Code, Count: c.Count})
		}
	}
	return infos
}

// LogPath is the module's captured output.
func (m *Manager) LogPath(name string) (string, error) {
	m.mu.Lock()
	_, ok := m.known[name]
	m.mu.Unlock()
	if !ok {
		return "", fmt.Errorf("%w: %s", admin.ErrUnknownModule, name)
	}
	return runtime.Layout{Root: m.cfg.Paths.Root}.Log(name), nil
}

// CliSpecs is getmoduleclispecs.
func (m *Manager) CliSpecs() map[string]*pb.RegisterCliSpec { return m.hub.CliSpecs() }

// RunCli is runmodulecli.
func (m *Manager) RunCli(ctx context.Context, module, command string, args []string) (*pb.CliResult, error) {
	m.mu.Lock()
	_, ok := m.known[module]
	m.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%w: %s", admin.ErrUnknownModule, module)
	}
	res, err := m.hub.RunCli(ctx, module, command, args)
	switch {
	case errors.Is(err, hub.ErrUnknownCommand):
		err = fmt.Errorf("%w: %w", admin.ErrInvalid, err)
	case errors.Is(err, hub.ErrUnavailable):
		err = fmt.Errorf("%w: %w", admin.ErrConflict, err)
	}
	return res, err
}

// Subscribe streams lifecycle and state events until ctx ends. A reader
// that falls 256 events behind loses events; the manager never waits.
func (m *Manager) Subscribe(ctx context.Context) <-chan admin.Event {
	ch := make(chan admin.Event, 256)
	m.mu.Lock()
	m.subs[ch] = struct{}{}
	m.mu.Unlock()
	go func() {
		<-ctx.Done()
		m.mu.Lock()
		delete(m.subs, ch)
		close(ch)
		m.mu.Unlock()
	}()
	return ch
}

func (m *Manager) emit(ev admin.Event) {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for ch := range m.subs {
		select {
		case ch <- ev:
		default:
		}
	}
}

var _ admin.Manager = (*Manager)(nil)
