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
	// Owner is the root's owner lock, if the caller took it already
	// (runtime.LockRoot); else the supervisor takes it. Either way a root
	// another supervisor owns is refused with a runtime.RootBusyError.
	Owner *runtime.RootLock
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

	// bulk serializes what acts on many modules at once: LoadAll, Reload
	// and Shutdown.
	bulk sync.Mutex

	mu       sync.Mutex
	known    map[string]*entry // every discovered module
	order    []string          // loaded modules, in load order
	subs     map[chan admin.Event]struct{}
	closing  bool // Shutdown has begun: no more loads
	shutDown bool // Shutdown has ended: no more events
}

// entry is one discovered module.
type entry struct {
	// op serializes loads and unloads of this module: two concurrent starts
	// must not both prepare it, or the loser's cleanup would undo the
	// winner's load. Taken through lockEntry, never while holding mu, and
	// never two at once.
	op sync.Mutex

	cand     Candidate
	prep     *loader.Prepared // set while loaded
	loaded   bool
	state    string // a runtime.State, or "refused"
	reason   string // why refused or failed
	lastExit string
	exit     *runtime.ExitReason // lastExit as fields
	restarts int                 // as last reported by the supervisor
	// ended is the unload event of a module that ended by itself (failed,
	// exited, expired) whose supervisor and hub state is not yet cleaned
	// up; reapLocked does it and publishes this.
	ended *admin.Event
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
		UIDBase: uint32(sb.UIDBase), UIDRegistry: opts.UIDRegistry, Owner: opts.Owner,
		Restart: runtime.RestartPolicy{Delay: sb.RestartDelay, MaxDelay: sb.RestartMaxDelay, MaxCrashes: sb.MaxCrashes, Window: sb.CrashWindow},
		OnEvent: m.onRuntimeEvent,
	})
	if err != nil {
		return nil, err
	}
	m.sup = sup
	return m, nil
}

// config is the node config in force (Reload replaces it).
func (m *Manager) config() *nodeconfig.Config {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cfg
}

// Discover scans every source. A module whose manifest cannot be read is
// listed as refused with the parse errors; the others are unaffected. It
// runs again at every load, install and reload: a new module or a new
// version of one that is not loaded is seen, a module whose folder is gone
// and that is not loaded is forgotten. A loaded module keeps what it was
// loaded from, and so does one that a load or unload is busy with.
func (m *Manager) Discover(ctx context.Context) error {
	var found []Candidate
	for _, s := range m.opts.Sources {
		cs, err := s.Discover(ctx)
		if err != nil {
			return err
		}
		found = append(found, cs...)
	}
	type seen struct {
		e *entry
		c Candidate
	}
	var update []seen
	m.mu.Lock()
	present := map[string]bool{}
	for _, c := range found {
		name := filepath.Base(c.Dir)
		if c.Manifest != nil {
			name = c.Manifest.Name
		}
		present[name] = true
		if e, ok := m.known[name]; ok {
			update = append(update, seen{e, c})
			continue
		}
		e := &entry{cand: c, state: string(runtime.Stopped)}
		if c.Err != nil {
			e.state, e.reason = StateRefused, c.Err.Error()
		}
		m.known[name] = e
	}
	for name, e := range m.known {
		if !present[name] {
			update = append(update, seen{e: e, c: Candidate{Dir: name}})
		}
	}
	m.mu.Unlock()
	for _, u := range update {
		if !u.e.op.TryLock() {
			continue // an action on it is under way and keeps its view
		}
		m.mu.Lock()
		if !u.e.loaded && u.e.ended == nil {
			if u.c.Manifest == nil && u.c.Err == nil {
				delete(m.known, filepath.Base(u.c.Dir)) // its folder is gone
			} else {
				u.e.rediscovered(u.c)
			}
		}
		m.mu.Unlock()
		u.e.op.Unlock()
	}
	return nil
}

// rediscovered takes what discovery found now for a module that is not
// loaded. A refusal is kept unless the module changed: it may be about its
// signatures or the config, which a load checks again anyway.
func (e *entry) rediscovered(c Candidate) {
	changed := c.Dir != e.cand.Dir || (c.Err == nil) != (e.cand.Err == nil) ||
		(c.Manifest != nil && e.cand.Manifest != nil && (c.Manifest.Version != e.cand.Manifest.Version || binaryHash(c.Manifest) != binaryHash(e.cand.Manifest)))
	e.cand = c
	switch {
	case c.Err != nil:
		e.state, e.reason = StateRefused, c.Err.Error()
	case changed && (e.state == StateRefused || e.state == string(runtime.Stopped)):
		e.state, e.reason = string(runtime.Stopped), ""
	}
}

func binaryHash(man *manifest.Manifest) string {
	if man.Binary == nil {
		return ""
	}
	return man.Binary.Hash
}

// lockEntry takes module name's op lock; nil when no such module is known.
func (m *Manager) lockEntry(name string) (*entry, func()) {
	for {
		m.mu.Lock()
		e, ok := m.known[name]
		m.mu.Unlock()
		if !ok {
			return nil, nil
		}
		e.op.Lock()
		m.mu.Lock()
		same := m.known[name] == e
		m.mu.Unlock()
		if same {
			return e, e.op.Unlock
		}
		e.op.Unlock() // forgotten by a rediscovery meanwhile
	}
}

// LoadAll loads every enabled, discovered module in dependency order. A
// module that cannot load is refused with its reason; its dependents are
// refused too; everything else loads. Verification and container creation
// (the slow part) run ahead, a few modules at a time; each module is then
// started only after the modules it requires are running.
func (m *Manager) LoadAll(ctx context.Context) error {
	m.bulk.Lock()
	defer m.bulk.Unlock()
	cfg := m.config()
	return m.loadPlanned(ctx, func(name string) bool { return cfg.IsEnabled(name) }, nil)
}

// loadPlanned loads the modules include selects, in dependency order, with
// the preparations already made (by name) where given. A module already
// loaded is left alone.
func (m *Manager) loadPlanned(ctx context.Context, include func(string) bool, made map[string]*loader.Prepared) error {
	plan := m.plan(include)
	for name, why := range plan.Refused {
		m.mu.Lock()
		e := m.known[name]
		running := e != nil && e.loaded
		m.mu.Unlock()
		if !running {
			m.refuse(name, why)
		}
	}
	ahead := m.opts.PrepareAhead
	if ahead <= 0 {
		ahead = 4
	}
	type prepared struct {
		e      *entry
		unlock func()
		err    error
	}
	results := make([]chan prepared, len(plan.Order))
	slots := make(chan struct{}, ahead)
	for i := range plan.Order {
		results[i] = make(chan prepared, 1)
	}
	go func() {
		for i, name := range plan.Order {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				results[i] <- prepared{err: ctx.Err()}
				continue
			}
			go func() {
				// Held from prepare to run: a start from the admin API
				// meanwhile waits, then finds the module loaded.
				e, unlock := m.lockEntry(name)
				if e == nil {
					results[i] <- prepared{err: fmt.Errorf("load %s: %w", name, admin.ErrUnknownModule)}
					return
				}
				m.reapLocked(name, e)
				if m.isLoaded(e) {
					results[i] <- prepared{unlock: unlock}
					return
				}
				results[i] <- prepared{e: e, unlock: unlock, err: m.prepare(ctx, name, e, made[name])}
			}()
		}
	}()
	var errs []error
	for i, name := range plan.Order {
		r := <-results[i]
		err := r.err
		if err == nil && r.e != nil {
			err = m.run(ctx, name, r.e)
		}
		if r.unlock != nil {
			r.unlock()
		}
		<-slots
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) isLoaded(e *entry) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return e.loaded
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
	version := m.cfg.Node.Version
	m.mu.Unlock()
	return PlanLoad(mods, version)
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
// be loaded already. It discovers again first, so that a module installed
// since the daemon started, or a new version of this one, is what loads.
func (m *Manager) Load(ctx context.Context, name string) error {
	if err := m.Discover(ctx); err != nil {
		return fmt.Errorf("load %s: %w", name, err)
	}
	e, unlock := m.lockEntry(name)
	if e == nil {
		return fmt.Errorf("%w: %s", admin.ErrUnknownModule, name)
	}
	defer unlock()
	return m.loadLocked(ctx, name, e, nil)
}

// loadLocked is Load with e's op lock held; prep, when set, is a
// preparation already made under the config in force.
func (m *Manager) loadLocked(ctx context.Context, name string, e *entry, prep *loader.Prepared) error {
	m.reapLocked(name, e)
	m.mu.Lock()
	loaded, closing := e.loaded, m.closing
	m.mu.Unlock()
	if loaded {
		return nil
	}
	if closing {
		return fmt.Errorf("load %s: %w: the daemon is shutting down", name, admin.ErrConflict)
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
	if err := m.prepare(ctx, name, e, prep); err != nil {
		return err
	}
	return m.run(ctx, name, e)
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

// prepareDir verifies the module in dir and compiles its policy under cfg.
func (m *Manager) prepareDir(dir string, cfg *nodeconfig.Config) (*loader.Prepared, error) {
	return loader.Prepare(dir, cfg, loader.Options{Root: cfg.Paths.Root, Host: m.opts.Host, Catalog: m.catalog})
}

// prepare verifies the module (unless prep is a verification made already),
// compiles its policy, attaches its socket to the hub and creates its
// container, ready to run. e's op lock is held.
func (m *Manager) prepare(ctx context.Context, name string, e *entry, prep *loader.Prepared) error {
	m.mu.Lock()
	dir, cfg := e.cand.Dir, m.cfg
	m.mu.Unlock()
	if prep == nil {
		var err error
		if prep, err = m.prepareDir(dir, cfg); err != nil {
			m.refuse(name, err.Error())
			return fmt.Errorf("load %s: %w", name, err)
		}
	}
	for _, w := range prep.Warnings {
		m.log.Warn("config", "module", name, "warning", w)
	}
	spec := hub.ModuleSpec{
		ID: moduleID(prep.Manifest), Name: name, Version: prep.Manifest.Version,
		Capabilities: prep.Capabilities.Names(), ACL: prep.Policy.Hub,
	}
	err := m.sup.Prepare(ctx, runtime.Module{
		Policy: prep.Policy, Binary: prep.Verified.StorePath, Config: prep.Config, Expires: Expiry(prep.Manifest),
		Serve: func(ln net.Listener, uid int, ready func()) error {
			spec.PeerUID, spec.OnReady = uid, ready
			return m.hub.Attach(spec, ln)
		},
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
func (m *Manager) run(ctx context.Context, name string, e *entry) error {
	if err := m.depsLoaded(name); err != nil {
		m.sup.Stop(ctx, name) // destroys the prepared container
		m.hub.Detach(name)
		return err
	}
	m.mu.Lock()
	prep := e.prep
	m.mu.Unlock()
	if err := m.sup.Run(ctx, name); err != nil {
		m.hub.Detach(name)
		m.refuseOrExpire(name, err)
		return fmt.Errorf("load %s: %w", name, err)
	}
	if err := verify.RecordLoaded(m.config().Paths.Root, name, prep.Manifest.Version); err != nil {
		m.log.Warn("rollback mark not recorded", "module", name, "err", err)
	}
	m.mu.Lock()
	e.loaded, e.reason = true, ""
	// What runs is what was verified, whatever discovery read before.
	e.cand.Manifest = prep.Manifest
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
	victims := append(m.dependentsLocked(name), name)
	m.mu.Unlock()
	return m.unloadEach(ctx, victims)
}

// dependentsLocked lists the loaded modules that require name, the ones
// to unload first first. m.mu is held.
func (m *Manager) dependentsLocked(name string) []string {
	mods := map[string]*manifest.Manifest{}
	for _, n := range m.order {
		mods[n] = m.known[n].cand.Manifest
	}
	return Dependents(mods, m.order, name)
}

// unloadEach unloads the modules in order, each under its own op lock.
func (m *Manager) unloadEach(ctx context.Context, names []string) error {
	var errs []error
	for _, v := range names {
		e, unlock := m.lockEntry(v)
		if e == nil {
			continue
		}
		m.reapLocked(v, e)
		err := m.unloadOne(ctx, v, e)
		unlock()
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// unloadOne stops one module; e's op lock is held.
func (m *Manager) unloadOne(ctx context.Context, name string, e *entry) error {
	m.mu.Lock()
	if !e.loaded {
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
// it, which are unloaded first and loaded again after it). The load
// discovers again, so a version installed since is the one that starts.
func (m *Manager) Restart(ctx context.Context, name string) error {
	m.mu.Lock()
	deps := m.dependentsLocked(name)
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

// Shutdown unloads every module in reverse load order, publishes the last
// events, ends every event stream, and gives up the runtime root.
func (m *Manager) Shutdown(ctx context.Context) error {
	m.bulk.Lock()
	defer m.bulk.Unlock()
	m.mu.Lock()
	m.closing = true
	order := slices.Clone(m.order)
	slices.Reverse(order)
	var ended []string
	for name, e := range m.known {
		if e.ended != nil {
			ended = append(ended, name)
		}
	}
	m.mu.Unlock()
	errs := []error{m.unloadEach(ctx, order)}
	for _, name := range ended {
		if e, unlock := m.lockEntry(name); e != nil {
			m.reapLocked(name, e)
			unlock()
		}
	}
	// After the last unload event: a watcher sees every module go before
	// its stream ends.
	m.mu.Lock()
	m.shutDown = true
	for ch := range m.subs {
		delete(m.subs, ch)
		close(ch)
	}
	m.mu.Unlock()
	errs = append(errs, m.sup.Close(ctx))
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
			e.ended = &admin.Event{Module: ev.Module, Kind: "unloaded", State: string(ev.State), Detail: detail}
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
	if endedByItself && e.cand.Manifest != nil {
		// Not here: the supervisor calls this from the loop that Stop
		// waits for. Under the op lock, so that a start meanwhile either
		// reaps first or waits.
		go func() {
			if e, unlock := m.lockEntry(ev.Module); e != nil {
				m.reapLocked(ev.Module, e)
				unlock()
			}
		}()
	}
}

// reapLocked cleans up after a module that ended by itself: the
// supervisor forgets it, the hub detaches it, ModuleUnloaded goes out.
// e's op lock is held.
func (m *Manager) reapLocked(name string, e *entry) {
	m.mu.Lock()
	ev := e.ended
	e.ended = nil
	var id string
	if ev != nil && e.cand.Manifest != nil {
		id = moduleID(e.cand.Manifest)
	}
	m.mu.Unlock()
	if ev == nil {
		return
	}
	m.sup.Stop(context.Background(), name) // forget it in the supervisor
	m.hub.Detach(name)
	if id != "" {
		m.hub.ModuleUnloaded(id, name)
	}
	m.emit(*ev)
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
	return runtime.Layout{Root: m.config().Paths.Root}.Log(name), nil
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
	defer m.mu.Unlock()
	if m.shutDown {
		close(ch) // nothing more will happen
		return ch
	}
	m.subs[ch] = struct{}{}
	go func() {
		<-ctx.Done()
		m.mu.Lock()
		if _, ok := m.subs[ch]; ok { // Shutdown may have ended it first
			delete(m.subs, ch)
			close(ch)
		}
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
