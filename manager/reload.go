package manager

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/blvm/blvm-sandbox/admin"
	"github.com/blvm/blvm-sandbox/loader"
	"github.com/blvm/blvm-sandbox/nodeconfig"
	"github.com/blvm/blvm-sandbox/policy"
)

// Reload re-reads the node config from the file it came from and applies
// it without restarting the node. All of it is checked first: a config
// that does not parse or validate, or under which a module that would run
// no longer verifies or compiles, changes nothing, and the error says why.
// Then only the modules whose effective settings changed (policy, merged
// config, disk quota, binary, enabled) are stopped, dependents first, and
// started again in dependency order; a module enabled now, or newly
// installed, is started; one disabled now is stopped. Settings the running
// daemon cannot change (paths, the uid base, restart and stop timings, the
// node version) keep their old values and the report says so.
func (m *Manager) Reload(ctx context.Context) (*admin.ReloadReport, error) {
	m.bulk.Lock()
	defer m.bulk.Unlock()
	start := time.Now()
	old := m.config()
	if old.Path == "" {
		return nil, fmt.Errorf("%w: the node config was not read from a file", admin.ErrConflict)
	}
	next, err := nodeconfig.Parse(old.Path)
	if err != nil {
		return nil, fmt.Errorf("%w: nothing changed: %w", admin.ErrInvalid, err)
	}
	rep := &admin.ReloadReport{Config: old.Path, Warnings: keepDaemonWide(old, next)}
	m.mu.Lock()
	before := maps.Clone(m.known)
	m.mu.Unlock()
	if err := m.Discover(ctx); err != nil {
		return nil, fmt.Errorf("nothing changed: %w", err)
	}

	type module struct {
		name    string
		loaded  bool
		isNew   bool // installed since the last discovery
		state   string
		dir     string
		running *loader.Prepared
	}
	m.mu.Lock()
	var mods []module
	for _, name := range slices.Sorted(maps.Keys(m.known)) {
		e := m.known[name]
		if e.cand.Manifest == nil {
			continue // unreadable manifest: refused, and stays so
		}
		mods = append(mods, module{name: name, loaded: e.loaded, isNew: before[name] == nil, state: e.state, dir: e.cand.Dir, running: e.prep})
	}
	closing := m.closing
	m.mu.Unlock()
	if closing {
		return nil, fmt.Errorf("%w: the daemon is shutting down", admin.ErrConflict)
	}

	// Decide, verifying under the new config everything that will run.
	action := map[string]admin.ReloadResult{}
	made := map[string]*loader.Prepared{}
	var problems []error
	for _, mod := range mods {
		was, now := old.IsEnabled(mod.name), next.IsEnabled(mod.name)
		res := admin.ReloadResult{Module: mod.name, Action: admin.ReloadUnchanged, Reason: mod.state}
		switch {
		case mod.loaded && !now:
			res.Action, res.Reason = admin.ReloadStopped, "enabled = false"
		case mod.loaded || (now && (!was || mod.isNew)):
			prep, err := m.prepareDir(mod.dir, next)
			if err != nil {
				problems = append(problems, fmt.Errorf("%s: %w", mod.name, err))
				break
			}
			if !mod.loaded {
				res.Action, res.Reason = admin.ReloadStarted, "enabled"
				if mod.isNew {
					res.Reason = "installed"
				}
				made[mod.name] = prep
				break
			}
			// Kept either way: a module that requires one that restarts
			// restarts too, with this.
			made[mod.name] = prep
			if why := changed(mod.running, prep); why != "" {
				res.Action, res.Reason = admin.ReloadRestarted, why
			}
		}
		action[mod.name] = res
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%w: nothing changed: under %s: %w", admin.ErrInvalid, old.Path, errors.Join(problems...))
	}
	// A module that goes takes the loaded modules that require it along;
	// those come back with it unless they are disabled now.
	m.mu.Lock()
	order := slices.Clone(m.order)
	for _, name := range order {
		a := action[name].Action
		if a != admin.ReloadStopped && a != admin.ReloadRestarted {
			continue
		}
		for _, dep := range m.dependentsLocked(name) {
			if d := action[dep]; d.Action == admin.ReloadUnchanged {
				action[dep] = admin.ReloadResult{Module: dep, Action: admin.ReloadRestarted, Reason: "requires " + name}
			}
		}
	}
	m.mu.Unlock()

	// Apply: the new config, then the unloads in reverse load order, then
	// the loads in dependency order.
	m.mu.Lock()
	m.cfg = next
	m.mu.Unlock()
	var stop []string
	for i := len(order) - 1; i >= 0; i-- {
		if a := action[order[i]].Action; a == admin.ReloadStopped || a == admin.ReloadRestarted {
			stop = append(stop, order[i])
		}
	}
	if err := m.unloadEach(ctx, stop); err != nil {
		m.log.Warn("reload: unload", "err", err)
	}
	startSet := func(name string) bool {
		a := action[name].Action
		return a == admin.ReloadStarted || a == admin.ReloadRestarted
	}
	err = m.loadPlanned(ctx, func(name string) bool {
		e := m.known[name] // plan calls this under m.mu
		return startSet(name) || (e != nil && e.loaded)
	}, made)
	// The outcome per module, from what runs now.
	m.mu.Lock()
	for name, res := range action {
		if !startSet(name) {
			continue
		}
		if e := m.known[name]; e == nil || !e.loaded {
			res.Action = admin.ReloadFailed
			if e != nil {
				res.Error = e.reason
			}
			action[name] = res
		}
	}
	m.mu.Unlock()
	if err != nil {
		m.log.Warn("reload: some modules did not start", "err", err)
	}
	for _, name := range slices.Sorted(maps.Keys(action)) {
		rep.Modules = append(rep.Modules, action[name])
	}
	for _, w := range rep.Warnings {
		m.log.Warn("reload", "warning", w)
	}
	for _, r := range rep.Modules {
		if r.Action != admin.ReloadUnchanged {
			m.log.Info("reload", "module", r.Module, "action", r.Action, "reason", r.Reason, "error", r.Error)
		}
	}
	rep.Took = time.Since(start)
	return rep, nil
}

// keepDaemonWide copies into next the settings a running daemon cannot
// change, and says which of them the file changed.
func keepDaemonWide(old, next *nodeconfig.Config) []string {
	var warns []string
	keep := func(field string, o, n any, restore func()) {
		if !reflect.DeepEqual(o, n) {
			warns = append(warns, fmt.Sprintf("%s changed (%v -> %v): takes effect when the daemon restarts", field, o, n))
			restore()
		}
	}
	keep("[node] version", old.Node.Version, next.Node.Version, func() { next.Node.Version = old.Node.Version })
	keep("[paths] root", old.Paths.Root, next.Paths.Root, func() { next.Paths.Root = old.Paths.Root })
	keep("[paths] modules_dir", old.Paths.ModulesDir, next.Paths.ModulesDir, func() { next.Paths.ModulesDir = old.Paths.ModulesDir })
	o, n := old.Sandbox, next.Sandbox
	keep("[sandbox] min_landlock_abi", o.MinLandlockABI, n.MinLandlockABI, func() { next.Sandbox.MinLandlockABI = o.MinLandlockABI })
	keep("[sandbox] restart_delay", o.RestartDelay, n.RestartDelay, func() { next.Sandbox.RestartDelay = o.RestartDelay })
	keep("[sandbox] restart_max_delay", o.RestartMaxDelay, n.RestartMaxDelay, func() { next.Sandbox.RestartMaxDelay = o.RestartMaxDelay })
	keep("[sandbox] max_crashes", o.MaxCrashes, n.MaxCrashes, func() { next.Sandbox.MaxCrashes = o.MaxCrashes })
	keep("[sandbox] crash_window", o.CrashWindow, n.CrashWindow, func() { next.Sandbox.CrashWindow = o.CrashWindow })
	keep("[sandbox] stop_grace", o.StopGrace, n.StopGrace, func() { next.Sandbox.StopGrace = o.StopGrace })
	keep("[sandbox] ready_timeout", o.ReadyTimeout, n.ReadyTimeout, func() { next.Sandbox.ReadyTimeout = o.ReadyTimeout })
	keep("[sandbox] uid_base", o.UIDBase, n.UIDBase, func() { next.Sandbox.UIDBase = o.UIDBase })
	return warns
}

// changed says what differs between the module as it runs and as it
// would run now, "" when nothing does: the binary, the merged config, and
// each part of the compiled policy (limits, disk quota, capabilities...).
func changed(running, now *loader.Prepared) string {
	if running == nil {
		return "not prepared"
	}
	var what []string
	if running.Manifest.Version != now.Manifest.Version {
		what = append(what, fmt.Sprintf("version %s -> %s", running.Manifest.Version, now.Manifest.Version))
	}
	if running.Verified.StorePath != now.Verified.StorePath {
		what = append(what, "binary")
	}
	if !bytes.Equal(running.Config, now.Config) {
		what = append(what, "config")
	}
	what = append(what, policyChanges(running.Policy, now.Policy)...)
	return strings.Join(what, ", ")
}

// policyChanges names the parts of the policy that differ, by their JSON
// names (cgroup, storage, seccomp, hub...).
func policyChanges(a, b *policy.Policy) []string {
	va, vb := reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem()
	var out []string
	for i := range va.NumField() {
		x, _ := json.Marshal(va.Field(i).Interface())
		y, _ := json.Marshal(vb.Field(i).Interface())
		if !bytes.Equal(x, y) {
			name, _, _ := strings.Cut(va.Type().Field(i).Tag.Get("json"), ",")
			out = append(out, "policy "+name)
		}
	}
	return out
}

// Install verifies the module in dir exactly as a load would and installs
// it into the modules dir (see the package function Install), then
// discovers again so that `load NAME` finds it. A loaded module keeps
// running the version it runs until it is restarted.
func (m *Manager) Install(ctx context.Context, dir string, allowDowngrade bool) (*admin.InstallResult, error) {
	cfg := m.config()
	prep, dst, err := Install(dir, cfg, m.opts.Host, allowDowngrade)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", admin.ErrInvalid, err)
	}
	if err := m.Discover(ctx); err != nil {
		return nil, err
	}
	res := &admin.InstallResult{
		Name: prep.Manifest.Name, Version: prep.Manifest.Version, Dir: dst,
		Capabilities: prep.Capabilities.Names(), Warnings: prep.Warnings,
	}
	m.mu.Lock()
	if e := m.known[res.Name]; e != nil && e.loaded && e.cand.Manifest != nil {
		res.Running = e.cand.Manifest.Version
	}
	m.mu.Unlock()
	m.log.Info("module installed", "module", res.Name, "version", res.Version, "dir", dst, "running", res.Running)
	return res, nil
}

var _ admin.Reloader = (*Manager)(nil)
