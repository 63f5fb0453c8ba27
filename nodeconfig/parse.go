package nodeconfig

import (
	"fmt"
	"maps"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/blvm/blvm-sandbox/internal/safefile"
	"github.com/blvm/blvm-sandbox/internal/suggest"
	"github.com/blvm/blvm-sandbox/internal/tomlfile"
	"github.com/blvm/blvm-sandbox/manifest"
)

// DefaultFileName is the node config's conventional name, used in problems
// when no file name is given.
const DefaultFileName = "blvm-sandbox.toml"

// Tiers are the capability tiers, lowest to highest.
var Tiers = []string{"observe", "participate", "govern", "transact"}

// Dangers are the danger levels a provided capability may declare.
var Dangers = []string{"low", "medium", "high", "critical"}

// Networks are the node networks the config accepts.
var Networks = []string{"mainnet", "testnet", "signet", "regtest"}

// TierRank returns the position of tier in Tiers (0 for "observe"), or -1
// when the tier is unknown.
func TierRank(tier string) int { return slices.Index(Tiers, tier) }

// ScopesLandlockABI is the first Landlock ABI with the abstract-unix and
// signal scopes every module's policy carries: the runtime cannot start a
// module below it, so it is also the lowest min_landlock_abi accepted.
const ScopesLandlockABI = 6

// Default returns the configuration used when no file is given; Parse fills
// every unset value from it.
func Default() *Config {
	return &Config{
		Node:  Node{Version: "0.1.0", Network: "regtest", DatabaseBackend: "redb"},
		Paths: Paths{Root: "/var/lib/blvm-sandbox", ModulesDir: "/var/lib/blvm-sandbox/modules"},
		Sandbox: Sandbox{
			MinLandlockABI: ScopesLandlockABI,
			RestartDelay:   500 * time.Millisecond, RestartMaxDelay: 30 * time.Second,
			MaxCrashes: 5, CrashWindow: 5 * time.Minute,
			StopGrace: 5 * time.Second, ReadyTimeout: 10 * time.Second,
			DiskBytes: 1 << 30, DiskInodes: 1_000_000, UIDBase: DefaultUIDBase,
		},
		Capabilities: Ceiling{MaxTier: "participate"},
		Limits: Limits{
			MemoryBytes: 256 << 20,
			Pids:        64,
			CPUs:        0.5,
			OpenFiles:   256,
			TmpBytes:    16 << 20,
		},
		Backend: Backend{Kind: BackendDevchain},

		Modules:  map[string]*Module{},
		Provided: map[string]Provided{},
		Lines:    map[string]int{},
	}
}

// DefaultUIDBase is the first host uid handed to modules unless [sandbox]
// uid_base says otherwise.
const DefaultUIDBase = 1 << 20

// Quota bounds: below MinDiskBytes an ext4 image has no room for its own
// metadata; below MinDiskInodes a module cannot create its database files.
const (
	MinDiskBytes  = 16 << 20
	MinDiskInodes = 1024
	// MinUIDBase keeps module ranges clear of the first 65536 ids, where
	// distributions put system and human users.
	MinUIDBase = 1 << 16
)

// Parse reads and validates the node config at path. On error it returns
// manifest.Problems listing everything wrong, each as "FILE:LINE: FIELD:
// message" with the file's base name; the Config is then nil, because a
// half-understood operator config must never be used.
//
// The file is read through safefile: its directory as given, the file
// itself a regular file (not a symlink, FIFO or device) of at most
// safefile.MaxTOML bytes.
func Parse(path string) (*Config, error) {
	data, err := safefile.ReadPath(path, safefile.MaxTOML)
	if err != nil {
		return nil, fmt.Errorf("read node config: %w", err)
	}
	return ParseBytes(path, data)
}

// moduleReserved are the [modules.<name>] keys the operator's settings use;
// every other key is module configuration.
var moduleReserved = []string{"enabled", "threshold", "maintainers", "allow", "deny", "limits", "allow_downgrade", "disk_bytes", "disk_inodes"}

// knownKeys lists the keys allowed in each table, for "did you mean".
var knownKeys = map[string][]string{
	"":                      {"node", "paths", "sandbox", "trust", "capabilities", "limits", "modules", "provided_capabilities", "backend", "registry"},
	"backend":               backendKeys,
	"node":                  {"version", "network", "database_backend"},
	"paths":                 {"root", "modules_dir"},
	"sandbox":               {"min_landlock_abi", "restart_delay", "restart_max_delay", "max_crashes", "crash_window", "stop_grace", "ready_timeout", "disk_bytes", "disk_inodes", "uid_base"},
	"trust":                 {"threshold", "maintainers"},
	"trust.maintainers":     {"name", "public_key"},
	"capabilities":          {"max_tier", "deny"},
	"limits":                {"memory_bytes", "pids", "cpus", "open_files", "tmp_bytes"},
	"provided_capabilities": {"provider", "description", "tier", "danger"},
	"registry":              registryKeys,
}

// ParseBytes is Parse for a config already in memory; file is recorded in
// Config.Path and its base name is printed in problems.
func ParseBytes(file string, data []byte) (*Config, error) {
	name := DefaultFileName
	if file != "" {
		name = filepath.Base(file)
	}
	d, raw, syntax := tomlfile.Open(data)
	if syntax != nil {
		return nil, manifest.Problems{{File: name, Line: syntax.Line, Message: syntax.Message}}
	}

	c := &Config{Path: file, Lines: d.Lines, Modules: map[string]*Module{}, Provided: map[string]Provided{}}
	var modules map[string]toml.Primitive
	fields := map[string]any{
		"node":                  &c.Node,
		"paths":                 &c.Paths,
		"sandbox":               &c.Sandbox,
		"trust":                 &c.Trust,
		"capabilities":          &c.Capabilities,
		"limits":                &c.Limits,
		"modules":               &modules,
		"provided_capabilities": &c.Provided,
		"backend":               &c.Backend,
		"registry":              &c.Registry,
	}
	for _, key := range d.SortedKeys(raw) {
		dst, ok := fields[key]
		if !ok {
			d.Unknown(key, knownKeys[""])
			continue
		}
		d.Decode(key, raw[key], dst)
	}
	for _, mod := range slices.Sorted(maps.Keys(modules)) {
		field := tomlfile.Key("modules", mod)
		// "" is a table only implied by a header such as [modules.m.limits].
		if typ := d.MD.Type("modules", mod); typ != "Hash" && typ != "" {
			// Dropped, it would silently lose an operator setting such as a
			// global deny. Reported here, it is not "unknown" as well.
			d.Add(field, "%s is not a table: [modules] holds only [modules.<name>] tables%s", tomlTypeName(typ), globalHint(mod))
			d.Opaque(field)
			continue
		}
		var raw map[string]toml.Primitive
		if d.Decode(field, modules[mod], &raw) {
			c.Modules[mod] = decodeModule(d, mod, raw)
		}
	}
	d.Undecoded(func(parent toml.Key) []string {
		switch {
		case len(parent) == 2 && parent[0] == "provided_capabilities":
			return knownKeys["provided_capabilities"]
		case len(parent) == 3 && parent[0] == "modules" && parent[2] == "limits":
			return knownKeys["limits"]
		}
		return knownKeys[parent.String()]
	})

	v := &validator{file: name, lines: d.Lines, md: d.MD}
	c.validate(v)
	var ps manifest.Problems
	for _, is := range d.Issues {
		ps = append(ps, manifest.Problem{File: name, Line: is.Line, Field: is.Field, Message: is.Message})
	}
	for _, p := range v.ps {
		if !d.Failed(p.Field) {
			ps = append(ps, p)
		}
	}
	if len(ps) > 0 {
		manifest.SortProblems(ps)
		return nil, ps
	}
	c.fillDefaults()
	return c, nil
}

// tomlTypeName names a TOML metadata type for a person.
func tomlTypeName(typ string) string {
	switch typ {
	case "Array":
		return "an array"
	case "ArrayHash":
		return "an array of tables"
	case "Integer":
		return "an integer"
	}
	return "a " + strings.ToLower(typ)
}

// globalHint says where a setting that applies to every module belongs,
// for a key written directly under [modules].
func globalHint(key string) string {
	switch key {
	case "deny", "max_tier":
		return fmt.Sprintf(" (did you mean [capabilities] %s, which applies to every module?)", key)
	case "threshold", "maintainers":
		return fmt.Sprintf(" (did you mean [trust] %s?)", key)
	case "memory_bytes", "pids", "cpus", "open_files", "tmp_bytes":
		return fmt.Sprintf(" (did you mean [limits] %s?)", key)
	case "disk_bytes", "disk_inodes":
		return fmt.Sprintf(" (did you mean [sandbox] %s?)", key)
	case "allow", "allow_downgrade", "enabled":
		return fmt.Sprintf(" (%s is set per module: [modules.<name>] %s)", key, key)
	}
	return ""
}

// decodeModule splits one [modules.<name>] table into the operator's
// reserved settings and the module's own configuration.
func decodeModule(d *tomlfile.Decoder, name string, raw map[string]toml.Primitive) *Module {
	m := &Module{Config: map[string]any{}}
	prefix := tomlfile.Key("modules", name)
	for _, key := range slices.Sorted(maps.Keys(raw)) {
		field := prefix + "." + tomlfile.Key(key)
		var dst any
		switch key {
		case "threshold":
			dst = &m.Threshold
		case "maintainers":
			dst = &m.Maintainers
		case "allow":
			dst = &m.Allow
		case "deny":
			dst = &m.Deny
		case "limits":
			dst = &m.Limits
		case "allow_downgrade":
			dst = &m.AllowDowngrade
		case "enabled":
			dst = &m.Enabled
		case "disk_bytes":
			dst = &m.DiskBytes
		case "disk_inodes":
			dst = &m.DiskInodes
		default:
			// A near miss of a reserved key is almost certainly a typo; as
			// module configuration it would silently drop an operator
			// setting such as a denial.
			if s := suggest.Closest(key, moduleReserved); s != "" {
				d.Add(field, "looks like a misspelled %q (module configuration keys must not be near-misses of reserved keys)", s)
				continue
			}
			var v any
			if d.Decode(field, raw[key], &v) {
				m.Config[key] = v
				d.Opaque(field)
			}
			continue
		}
		d.Decode(field, raw[key], dst)
	}
	return m
}

// fillDefaults sets every value the file left unset from Default.
func (c *Config) fillDefaults() {
	def := Default()
	setString(&c.Node.Version, def.Node.Version)
	setString(&c.Node.Network, def.Node.Network)
	setString(&c.Node.DatabaseBackend, def.Node.DatabaseBackend)
	if c.Paths.ModulesDir == "" {
		if c.Paths.Root != "" {
			c.Paths.ModulesDir = path.Join(c.Paths.Root, "modules")
		} else {
			c.Paths.ModulesDir = def.Paths.ModulesDir
		}
	}
	setString(&c.Paths.Root, def.Paths.Root)
	setDefault(&c.Sandbox.MinLandlockABI, def.Sandbox.MinLandlockABI)
	setDefault(&c.Sandbox.RestartDelay, def.Sandbox.RestartDelay)
	setDefault(&c.Sandbox.RestartMaxDelay, def.Sandbox.RestartMaxDelay)
	setDefault(&c.Sandbox.MaxCrashes, def.Sandbox.MaxCrashes)
	setDefault(&c.Sandbox.CrashWindow, def.Sandbox.CrashWindow)
	setDefault(&c.Sandbox.StopGrace, def.Sandbox.StopGrace)
	setDefault(&c.Sandbox.ReadyTimeout, def.Sandbox.ReadyTimeout)
	setDefault(&c.Sandbox.DiskBytes, def.Sandbox.DiskBytes)
	setDefault(&c.Sandbox.DiskInodes, def.Sandbox.DiskInodes)
	setDefault(&c.Sandbox.UIDBase, def.Sandbox.UIDBase)
	setString(&c.Capabilities.MaxTier, def.Capabilities.MaxTier)
	c.Limits = overlay(def.Limits, c.Limits)
	c.Backend.fillDefaults()
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

func setString(s *string, def string) {
	if *s == "" {
		*s = def
	}
}

// overlay returns base with every non-zero field of over replacing it.
func overlay(base, over Limits) Limits {
	if over.MemoryBytes != 0 {
		base.MemoryBytes = over.MemoryBytes
	}
	if over.Pids != 0 {
		base.Pids = over.Pids
	}
	if over.CPUs != 0 {
		base.CPUs = over.CPUs
	}
	if over.OpenFiles != 0 {
		base.OpenFiles = over.OpenFiles
	}
	if over.TmpBytes != 0 {
		base.TmpBytes = over.TmpBytes
	}
	return base
}

// ModuleSettings returns the operator's settings for the module name; a
// module without a [modules.<name>] table gets empty settings, never nil.
func (c *Config) ModuleSettings(name string) *Module {
	if m, ok := c.Modules[name]; ok && m != nil {
		return m
	}
	return &Module{Config: map[string]any{}}
}

// EffectiveLimits returns the limits for the module name: the defaults,
// overlaid by [limits], overlaid by [modules.<name>.limits].
func (c *Config) EffectiveLimits(name string) Limits {
	return overlay(overlay(Default().Limits, c.Limits), c.ModuleSettings(name).Limits)
}

// ThresholdFor returns the signature threshold that applies to the module
// name and the pinned keys that count toward it: the module's own threshold
// and maintainers when set, else [trust]'s. It fails when no threshold is
// configured, when a named maintainer is not pinned, or when n is not the
// number of keys that apply.
func (c *Config) ThresholdFor(name string) (m, n int, keys []Maintainer, err error) {
	mod := c.ModuleSettings(name)
	threshold, source := c.Trust.Threshold, "[trust] threshold"
	if mod.Threshold != "" {
		threshold, source = mod.Threshold, fmt.Sprintf("[modules.%s] threshold", name)
	}
	if threshold == "" {
		return 0, 0, nil, fmt.Errorf("module %s: no signature threshold configured: pin maintainer keys and a threshold in [trust]", name)
	}
	m, n, err = manifest.ParseThreshold(threshold)
	if err != nil {
		return 0, 0, nil, fmt.Errorf("module %s: %s: %w", name, source, err)
	}
	keys = c.Trust.Maintainers
	if len(mod.Maintainers) > 0 {
		keys = nil
		for _, want := range mod.Maintainers {
			i := slices.IndexFunc(c.Trust.Maintainers, func(k Maintainer) bool { return k.Name == want })
			if i < 0 {
				return 0, 0, nil, fmt.Errorf("module %s: maintainer %q is not pinned in [trust]", name, want)
			}
			keys = append(keys, c.Trust.Maintainers[i])
		}
	}
	if n != len(keys) {
		return 0, 0, nil, fmt.Errorf("module %s: %s %q needs n = %d pinned keys, but %d apply (%s)",
			name, source, threshold, n, len(keys), keyNames(keys))
	}
	return m, n, keys, nil
}

func keyNames(keys []Maintainer) string {
	if len(keys) == 0 {
		return "none"
	}
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = k.Name
	}
	return strings.Join(names, ", ")
}

type validator struct {
	file  string
	lines map[string]int
	md    *toml.MetaData
	ps    manifest.Problems
}

func (v *validator) add(field, format string, args ...any) {
	v.ps = append(v.ps, manifest.Problem{
		File: v.file, Line: tomlfile.Find(v.lines, field), Field: field,
		Message: fmt.Sprintf(format, args...),
	})
}

// defined reports whether the dotted key was written in the file, so that
// an explicit zero is told apart from "unset, use the default".
func (v *validator) defined(key ...string) bool { return v.md.IsDefined(key...) }

func (c *Config) validate(v *validator) {
	c.validateBackend(v)
	if c.Node.Version != "" {
		if _, err := manifest.ParseVersion(c.Node.Version); err != nil {
			v.add("node.version", "not a strict semantic version: %v", err)
		}
	}
	if c.Node.Network != "" && !slices.Contains(Networks, c.Node.Network) {
		v.add("node.network", "%q: want one of %s", c.Node.Network, strings.Join(Networks, ", "))
	}
	if v.defined("node", "database_backend") && c.Node.DatabaseBackend == "" {
		v.add("node.database_backend", "must not be empty")
	}
	for _, p := range []struct{ key, value string }{{"root", c.Paths.Root}, {"modules_dir", c.Paths.ModulesDir}} {
		if v.defined("paths", p.key) && (!path.IsAbs(p.value) || path.Clean(p.value) != p.value) {
			v.add("paths."+p.key, "%q: want a clean absolute path", p.value)
		}
	}
	for _, d := range []struct {
		key   string
		value time.Duration
	}{
		{"restart_delay", c.Sandbox.RestartDelay}, {"restart_max_delay", c.Sandbox.RestartMaxDelay},
		{"crash_window", c.Sandbox.CrashWindow}, {"stop_grace", c.Sandbox.StopGrace}, {"ready_timeout", c.Sandbox.ReadyTimeout},
	} {
		if v.defined("sandbox", d.key) && d.value <= 0 {
			v.add("sandbox."+d.key, "%s: want a positive duration such as \"5s\"", d.value)
		}
	}
	if v.defined("sandbox", "max_crashes") && c.Sandbox.MaxCrashes < 1 {
		v.add("sandbox.max_crashes", "%d: want 1 or more", c.Sandbox.MaxCrashes)
	}
	if v.defined("sandbox", "min_landlock_abi") && c.Sandbox.MinLandlockABI < ScopesLandlockABI {
		v.add("sandbox.min_landlock_abi", "%d: want %d or more: every module's policy has the abstract-unix and signal scopes, which need Landlock ABI %d, so below it no module could start",
			c.Sandbox.MinLandlockABI, ScopesLandlockABI, ScopesLandlockABI)
	}

	v.disk("sandbox", c.Sandbox.DiskBytes, c.Sandbox.DiskInodes)
	if v.defined("sandbox", "uid_base") {
		if b := c.Sandbox.UIDBase; b < MinUIDBase || b%(1<<16) != 0 || b > 1<<31 {
			v.add("sandbox.uid_base", "%d: want a multiple of 65536 from %d to %d", b, MinUIDBase, int64(1)<<31)
		}
	}

	pinned := c.validateTrust(v)
	c.validateRegistry(v)

	if t := c.Capabilities.MaxTier; v.defined("capabilities", "max_tier") && TierRank(t) < 0 {
		v.tier("capabilities.max_tier", t)
	}
	v.capabilityList("capabilities.deny", c.Capabilities.Deny)
	v.limits("limits", c.Limits, "limits")

	for _, name := range slices.Sorted(maps.Keys(c.Modules)) {
		c.validateModule(v, name, c.Modules[name], pinned)
	}

	for _, name := range slices.Sorted(maps.Keys(c.Provided)) {
		p := c.Provided[name]
		f := tomlfile.Key("provided_capabilities", name)
		if !manifest.ValidCapabilityName(name) {
			v.add(f, "%q is not a valid capability name", name)
		}
		if !manifest.ValidModuleName(p.Provider) {
			v.add(f+".provider", "%q is not a valid module name", p.Provider)
		}
		if TierRank(p.Tier) < 0 {
			v.tier(f+".tier", p.Tier)
		}
		if !slices.Contains(Dangers, p.Danger) {
			v.add(f+".danger", "%q: want one of %s", p.Danger, strings.Join(Dangers, ", "))
		}
	}
}

func (v *validator) tier(field, t string) {
	if s := suggest.Closest(t, Tiers); s != "" {
		v.add(field, "unknown tier %q (did you mean %q?)", t, s)
		return
	}
	v.add(field, "unknown tier %q: want one of %s", t, strings.Join(Tiers, ", "))
}

// validateTrust checks the pinned keys and returns the pinned names.
func (c *Config) validateTrust(v *validator) map[string]bool {
	names := map[string]bool{}
	keys := map[string]string{} // normalized compressed key -> name
	for i, k := range c.Trust.Maintainers {
		f := fmt.Sprintf("trust.maintainers[%d]", i)
		switch {
		case k.Name == "":
			v.add(f+".name", "required")
		case names[k.Name]:
			v.add(f+".name", "maintainer %q is pinned twice", k.Name)
		}
		names[k.Name] = true
		pub, err := manifest.ParsePublicKey(k.PublicKey)
		if err != nil {
			v.add(f+".public_key", "%v", err)
			continue
		}
		// Compare normalized bytes: the same key in another hex case must not
		// count twice toward a threshold.
		norm := string(pub.SerializeCompressed())
		if other, dup := keys[norm]; dup {
			v.add(f+".public_key", "key of %q is already pinned as %q", k.Name, other)
			continue
		}
		keys[norm] = k.Name
	}
	if c.Trust.Threshold == "" {
		if len(c.Trust.Maintainers) > 0 {
			v.add("trust.threshold", "required when keys are pinned, e.g. \"%d-of-%d\"", len(c.Trust.Maintainers), len(c.Trust.Maintainers))
		}
		return names
	}
	_, n, err := manifest.ParseThreshold(c.Trust.Threshold)
	switch {
	case err != nil:
		v.add("trust.threshold", "%v", err)
	case n != len(c.Trust.Maintainers):
		v.add("trust.threshold", "%q needs n = %d pinned keys, but %d are pinned (%s)",
			c.Trust.Threshold, n, len(c.Trust.Maintainers), keyNames(c.Trust.Maintainers))
	}
	return names
}

func (c *Config) validateModule(v *validator, name string, m *Module, pinned map[string]bool) {
	f := tomlfile.Key("modules", name)
	if !manifest.ValidModuleName(name) {
		v.add(f, "%q is not a valid module name", name)
	}
	seen := map[string]bool{}
	maintainersOK := true
	for i, mt := range m.Maintainers {
		mf := fmt.Sprintf("%s.maintainers[%d]", f, i)
		switch {
		case !pinned[mt]:
			v.add(mf, "maintainer %q is not pinned in [trust]", mt)
			maintainersOK = false
		case seen[mt]:
			v.add(mf, "maintainer %q is listed twice", mt)
			maintainersOK = false
		}
		seen[mt] = true
	}
	// Only a module that changes the threshold or the keys needs its own
	// check; the [trust] default was checked already.
	if maintainersOK && (m.Threshold != "" || len(m.Maintainers) > 0) {
		field := f + ".threshold"
		if m.Threshold == "" {
			field = f + ".maintainers"
		}
		if _, _, _, err := c.ThresholdFor(name); err != nil {
			v.add(field, "%s", strings.TrimPrefix(err.Error(), "module "+name+": "))
		}
	}
	v.capabilityList(f+".allow", m.Allow)
	v.capabilityList(f+".deny", m.Deny)
	for i, a := range m.Allow {
		if slices.Contains(m.Deny, a) {
			v.add(fmt.Sprintf("%s.allow[%d]", f, i), "%q is both allowed and denied", a)
		}
	}
	v.limits(f+".limits", m.Limits, "modules", name, "limits")
	v.disk(f, m.DiskBytes, m.DiskInodes)
}

// disk checks the quota keys of the table at key (sandbox or
// modules.<name>); zero means unset.
func (v *validator) disk(table string, bytes, inodes int64) {
	if bytes != 0 && bytes < MinDiskBytes {
		v.add(table+".disk_bytes", "%d: want at least %d (16 MiB)", bytes, MinDiskBytes)
	}
	if inodes != 0 && inodes < MinDiskInodes {
		v.add(table+".disk_inodes", "%d: want at least %d", inodes, MinDiskInodes)
	}
}

func (v *validator) capabilityList(field string, caps []string) {
	seen := map[string]bool{}
	for i, c := range caps {
		f := fmt.Sprintf("%s[%d]", field, i)
		switch {
		case !manifest.ValidCapabilityName(c):
			v.add(f, "%q is not a valid capability name", c)
		case seen[c]:
			v.add(f, "%q is listed twice", c)
		}
		seen[c] = true
	}
}

// limits checks that every limit written in the file is positive. key is
// the table's key path, for IsDefined.
func (v *validator) limits(field string, l Limits, key ...string) {
	set := func(k string) bool { return v.defined(append(slices.Clone(key), k)...) }
	if set("memory_bytes") && l.MemoryBytes <= 0 {
		v.add(field+".memory_bytes", "%d: must be positive", l.MemoryBytes)
	}
	if set("pids") && l.Pids <= 0 {
		v.add(field+".pids", "%d: must be positive", l.Pids)
	}
	if set("cpus") && (l.CPUs <= 0 || l.CPUs > 64) {
		v.add(field+".cpus", "%g: want more than 0 and at most 64", l.CPUs)
	}
	if set("open_files") && l.OpenFiles == 0 {
		v.add(field+".open_files", "must be positive")
	}
	if set("tmp_bytes") && l.TmpBytes <= 0 {
		v.add(field+".tmp_bytes", "%d: must be positive", l.TmpBytes)
	}
}
