// Package nodeconfig parses the operator's node configuration: the keys the
// operator pins, the capability ceiling, resource limits and per-module
// settings. Everything the operator decides lives here; nothing in it comes
// from a module.
package nodeconfig

import "time"

// Config is a parsed node config file.
type Config struct {
	Node         Node                `toml:"node"`
	Paths        Paths               `toml:"paths"`
	Sandbox      Sandbox             `toml:"sandbox"`
	Trust        Trust               `toml:"trust"`
	Capabilities Ceiling             `toml:"capabilities"`
	Limits       Limits              `toml:"limits"`
	Modules      map[string]*Module  `toml:"-"`
	Provided     map[string]Provided `toml:"provided_capabilities"`
	Backend      Backend             `toml:"backend"` // see backend.go
	Registry     Registry            `toml:"registry"`

	Path  string         `toml:"-"`
	Lines map[string]int `toml:"-"`
}

// Node describes the node the modules attach to.
type Node struct {
	Version         string `toml:"version"`          // checked against a module's "blvm-node" dependency
	Network         string `toml:"network"`          // mainnet, testnet, signet, regtest
	DatabaseBackend string `toml:"database_backend"` // inherited by modules that do not set their own
}

// Paths says where the runtime keeps its files and finds modules.
type Paths struct {
	Root       string `toml:"root"`        // default /var/lib/blvm-sandbox
	ModulesDir string `toml:"modules_dir"` // one folder per module; default ROOT/modules
}

// Sandbox holds runtime-wide settings. The default limits and the
// capability ceiling have their own tables, [limits] and [capabilities].
type Sandbox struct {
	MinLandlockABI int `toml:"min_landlock_abi"` // refuse to run modules below this ABI
	// Restart policy after a crash: RestartDelay doubled per crash up to
	// RestartMaxDelay; MaxCrashes within CrashWindow marks the module failed.
	RestartDelay    time.Duration `toml:"restart_delay"`
	RestartMaxDelay time.Duration `toml:"restart_max_delay"`
	MaxCrashes      int           `toml:"max_crashes"`
	CrashWindow     time.Duration `toml:"crash_window"`
	StopGrace       time.Duration `toml:"stop_grace"`    // SIGTERM to SIGKILL
	ReadyTimeout    time.Duration `toml:"ready_timeout"` // start to the module's Hello, accepted by the hub
	// DiskBytes and DiskInodes are the kernel-enforced quota on each
	// module's /data, unless [modules.<name>] sets its own.
	DiskBytes  int64 `toml:"disk_bytes"`
	DiskInodes int64 `toml:"disk_inodes"`
	// UIDBase is the first host uid handed to modules; each module gets
	// 65536 ids from there. It must not overlap /etc/subuid, /etc/subgid or
	// the host's users (checked at allocation).
	UIDBase int64 `toml:"uid_base"`
}

// Trust pins maintainer keys. Keys inside a manifest are hints only.
type Trust struct {
	Threshold   string       `toml:"threshold"` // "m-of-n", default for every module
	Maintainers []Maintainer `toml:"maintainers"`
}

// Maintainer is one pinned key.
type Maintainer struct {
	Name      string `toml:"name"`
	PublicKey string `toml:"public_key"` // 33-byte compressed hex
}

// Ceiling bounds what any module may be granted.
type Ceiling struct {
	MaxTier string   `toml:"max_tier"` // highest tier granted without a per-module allowance
	Deny    []string `toml:"deny"`     // never granted, whatever the tier
}

// Limits are cgroup and rlimit values. Zero means "use the default".
type Limits struct {
	MemoryBytes int64   `toml:"memory_bytes"`
	Pids        int64   `toml:"pids"`
	CPUs        float64 `toml:"cpus"`       // cores, e.g. 0.5
	OpenFiles   uint64  `toml:"open_files"` // RLIMIT_NOFILE
	TmpBytes    int64   `toml:"tmp_bytes"`  // size of the /tmp tmpfs
}

// Module is [modules.<name>]. The keys below are reserved for the operator;
// every other key is module configuration and wins over the module's own
// config.toml when the configs are merged.
type Module struct {
	Enabled        *bool          // nil: enabled; false: discovered but not loaded by the daemon
	Threshold      string         // per-module "m-of-n" override
	Maintainers    []string       // names of pinned keys that apply (default: all)
	Allow          []string       // capabilities granted above the tier ceiling
	Deny           []string       // capabilities refused to this module
	Limits         Limits         // overrides [limits]
	AllowDowngrade bool           // accept a version below the high-water mark
	DiskBytes      int64          // overrides [sandbox] disk_bytes
	DiskInodes     int64          // overrides [sandbox] disk_inodes
	Config         map[string]any // everything else: module configuration
}

// Provided declares a capability that a module offers to other modules
// (such as "read_lightning"), so that it resolves like a catalog entry.
type Provided struct {
	Provider    string `toml:"provider"` // module that registers the API
	Description string `toml:"description"`
	Tier        string `toml:"tier"`
	Danger      string `toml:"danger"`
}

// EffectiveDisk returns the module's /data quota: [modules.<name>]
// disk_bytes and disk_inodes when set, else [sandbox]'s, else the defaults.
func (c *Config) EffectiveDisk(name string) (bytes, inodes int64) {
	def := Default().Sandbox
	bytes, inodes = def.DiskBytes, def.DiskInodes
	if c.Sandbox.DiskBytes != 0 {
		bytes = c.Sandbox.DiskBytes
	}
	if c.Sandbox.DiskInodes != 0 {
		inodes = c.Sandbox.DiskInodes
	}
	m := c.ModuleSettings(name)
	if m.DiskBytes != 0 {
		bytes = m.DiskBytes
	}
	if m.DiskInodes != 0 {
		inodes = m.DiskInodes
	}
	return bytes, inodes
}

// IsEnabled reports whether the daemon loads module name at start: unless
// [modules.<name>] enabled = false.
func (c *Config) IsEnabled(name string) bool {
	m := c.ModuleSettings(name)
	return m == nil || m.Enabled == nil || *m.Enabled
}
