// Package policy compiles a module's manifest, its granted capabilities, the
// operator's config and the host's facts into one confinement Policy, and
// renders that Policy for libcontainer, OCI runtimes and auditors.
//
// The compiler is a pure function: it reads no files and touches no kernel.
// Every item in a Policy carries a Provenance naming the capability or base
// group that put it there, so renderers print what is there and never
// re-derive it.
package policy

// Provenance says where a rule came from and why it exists.
type Provenance struct {
	Source string `json:"source"` // "base:<group>", "capability:<name>", "deny", "operator", "manifest", "sandbox"
	Reason string `json:"reason"`
}

// Source prefixes.
const (
	SourceSandbox  = "sandbox"  // a fixed choice of this runtime's design
	SourceOperator = "operator" // the node config
	SourceManifest = "manifest" // the module's own manifest
	SourceDeny     = "deny"     // the always-denied list
)

// BaseSource names a base syscall group as a source.
func BaseSource(group string) string { return "base:" + group }

// CapabilitySource names a capability as a source.
func CapabilitySource(name string) string { return "capability:" + name }

// Host holds the facts about the machine a policy is compiled for. They are
// detected by the runtime or given as flags for offline use.
type Host struct {
	Arch          string `json:"arch"`           // Go GOARCH, e.g. "amd64"
	LandlockABI   int    `json:"landlock_abi"`   // 0 when Landlock is absent
	CgroupVersion int    `json:"cgroup_version"` // 1 or 2
	// StorageBackend is how this host enforces the /data quota: one of the
	// Storage* constants, or "" when it enforces none.
	StorageBackend string `json:"storage_backend"`
}

// Storage backends: how the kernel enforces a module's /data quota.
const (
	StorageProject = "project" // a project quota on the data dir's filesystem
	StorageImage   = "image"   // a per-module filesystem image on a loop device
	StorageNone    = ""        // nothing: the quota is configured but not enforced
)

// Policy is everything the runtime applies to one module.
type Policy struct {
	// Mode is empty for the policy every module runs under, ModeRecord for
	// the development variant Record makes.
	Mode         string       `json:"mode,omitempty"`
	Module       Module       `json:"module"`
	Host         Host         `json:"host"`
	Capabilities []Capability `json:"capabilities"`
	Seccomp      Seccomp      `json:"seccomp"`
	Landlock     Landlock     `json:"landlock"`
	Namespaces   []Namespace  `json:"namespaces"`
	Process      Process      `json:"process"`
	Cgroup       Cgroup       `json:"cgroup"`
	Storage      Storage      `json:"storage"`
	Rlimits      []Rlimit     `json:"rlimits"`
	Mounts       []Mount      `json:"mounts"`
	Env          []EnvVar     `json:"env"`
	Hub          HubACL       `json:"hub"`
}

// Module identifies the module a policy is for.
type Module struct {
	Name       string `json:"name"`
	Version    string `json:"version"`
	EntryPoint string `json:"entry_point"`
	BinaryHash string `json:"binary_hash,omitempty"`
}

// Capability is a granted capability as the auditor sees it.
type Capability struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Tier        string `json:"tier"`
	Danger      string `json:"danger"`
	Provider    string `json:"provider,omitempty"`
}

// Action is what seccomp does with a matching syscall.
type Action string

// Seccomp actions.
const (
	ActAllow Action = "allow"
	ActErrno Action = "errno"
	ActKill  Action = "kill"
)

// Seccomp is an allowlist filter for the native architecture.
type Seccomp struct {
	DefaultAction Action     `json:"default_action"`
	DefaultErrno  string     `json:"default_errno"`
	Default       Provenance `json:"default_provenance"`
	// Arch is the only architecture accepted; syscalls from any other
	// (including x32 on amd64) kill the process.
	Arch    string        `json:"arch"`
	BadArch Provenance    `json:"bad_arch_provenance"`
	Rules   []SyscallRule `json:"rules"`
	// Families shows, per family of sibling syscalls, how each member is
	// treated; the reason is given once for the family.
	Families []SyscallFamily `json:"families"`
}

// SyscallFamily is a set of syscalls that reach one kernel operation
// through different entry points (policies/syscalls.toml [families]).
type SyscallFamily struct {
	Name    string         `json:"name"`
	Reason  string         `json:"reason"`
	Members []FamilyMember `json:"members"`
}

// FamilyMember is one syscall of a family and what the filter does with it.
type FamilyMember struct {
	Syscall string `json:"syscall"`
	// Treatment is the member's rules with argument positions left out
	// (chmod's mode is argument 1, fchmodat's argument 2), so members that
	// are treated alike have equal treatments.
	Treatment string `json:"treatment"`
	ArgIndex  []uint `json:"arg_index,omitempty"` // the argument positions its rules test
	Differs   string `json:"differs,omitempty"`   // why it is treated unlike the family
}

// SyscallRule is one seccomp rule.
type SyscallRule struct {
	Syscall string       `json:"syscall"`
	Action  Action       `json:"action"`
	Errno   string       `json:"errno,omitempty"`
	Args    []Arg        `json:"args,omitempty"`
	Sources []Provenance `json:"sources"`          // every group or capability that asked for this exact rule
	Family  string       `json:"family,omitempty"` // the syscall family it belongs to, whose reason explain shows
}

// Arg is one argument condition; all of a rule's Args must hold.
type Arg struct {
	Index uint   `json:"index"`
	Op    string `json:"op"` // eq, ne, masked_eq ((arg&mask)==value), masked_ne ((arg&mask)!=value)
	Mask  uint64 `json:"mask,omitempty"`
	Value uint64 `json:"value"`
}

// Landlock is the filesystem ruleset the shim applies before exec.
type Landlock struct {
	MinABI   int           `json:"min_abi"`
	Rules    []PathRule    `json:"rules"`
	Scopes   []Scope       `json:"scopes"`
	Degraded []Degradation `json:"degraded,omitempty"` // what this host's ABI cannot enforce
}

// PathRule grants access rights beneath a path inside the container.
type PathRule struct {
	Path   string     `json:"path"`
	Access []string   `json:"access"` // Landlock right names: execute, read_file, read_dir, write_file, ...
	Why    Provenance `json:"provenance"`
}

// Scope is a Landlock IPC scope (ABI 6): the sandbox cannot reach outside it.
type Scope struct {
	Name   string     `json:"name"` // abstract_unix_socket, signal
	MinABI int        `json:"min_abi"`
	Why    Provenance `json:"provenance"`
}

// Degradation is a Landlock feature this host's ABI lacks, and what covers for it.
type Degradation struct {
	Feature  string `json:"feature"`
	NeedsABI int    `json:"needs_abi"`
	Effect   string `json:"effect"`
}

// Namespace is one Linux namespace the module runs in.
type Namespace struct {
	Type   string     `json:"type"` // mount, pid, ipc, uts, cgroup, network, user
	Detail string     `json:"detail,omitempty"`
	Why    Provenance `json:"provenance"`
}

// Process holds per-process hardening.
type Process struct {
	NoNewPrivileges Flag       `json:"no_new_privileges"`
	ReadonlyRootfs  Flag       `json:"readonly_rootfs"`
	Capabilities    []string   `json:"capabilities"` // Linux capabilities kept: none
	CapabilitiesWhy Provenance `json:"capabilities_provenance"`
	MaskedPaths     []PathItem `json:"masked_paths"`
	ReadonlyPaths   []PathItem `json:"readonly_paths"`
	Args            []string   `json:"args"` // the module's argv inside the container
	Cwd             string     `json:"cwd"`
	// UID is the uid and gid the module runs as inside its user namespace
	// (ModuleUID): not 0, so even there it owns nothing it was not given.
	UID uint32 `json:"uid"`
}

// ModuleUID is the uid (and gid) every module runs as inside its user
// namespace: not 0, so setuid(0) fails even there, and root-owned files in
// its view stay out of reach.
const ModuleUID = 1000

// Flag is an on/off control with its reason.
type Flag struct {
	Enabled bool       `json:"enabled"`
	Why     Provenance `json:"provenance"`
}

// PathItem is a path with its reason.
type PathItem struct {
	Path string     `json:"path"`
	Why  Provenance `json:"provenance"`
}

// Cgroup holds the resource limits enforced by the kernel.
type Cgroup struct {
	MemoryBytes Limit `json:"memory_bytes"`
	Pids        Limit `json:"pids"`
	// CPU is a CFS quota per period: CPUQuotaMicros / CPUPeriodMicros cores.
	CPUQuotaMicros  Limit  `json:"cpu_quota_us"`
	CPUPeriodMicros uint64 `json:"cpu_period_us"`
}

// Limit is a numeric limit with its reason.
type Limit struct {
	Value int64      `json:"value"`
	Why   Provenance `json:"provenance"`
}

// Storage is the disk quota on the module's /data: bytes and inodes from the
// node config, enforced (or not) by the host's storage backend.
type Storage struct {
	Bytes   Limit      `json:"bytes"`
	Inodes  Limit      `json:"inodes"`
	Backend string     `json:"backend"` // a Storage* constant; "" when not enforced
	Why     Provenance `json:"provenance"`
}

// Enforced reports whether the kernel enforces the quota on this host.
func (s Storage) Enforced() bool { return s.Backend != StorageNone }

// Rlimit is a resource limit set before exec.
type Rlimit struct {
	Type string     `json:"type"` // RLIMIT_NOFILE, ...
	Soft uint64     `json:"soft"`
	Hard uint64     `json:"hard"`
	Why  Provenance `json:"provenance"`
}

// Mount is one mount inside the container. Source is symbolic (see the
// Source* constants); the runtime resolves it to a host path.
type Mount struct {
	Destination string     `json:"destination"`
	Source      string     `json:"source"`
	Type        string     `json:"type"`
	Options     []string   `json:"options"`
	Why         Provenance `json:"provenance"`
}

// Symbolic mount sources.
const (
	MountBinary = "store-entry" // the verified binary in the content-addressed store
	MountShim   = "landlock-shim"
	MountConfig = "merged-config"
	MountSocket = "hub-socket"
	MountData   = "module-data"
	MountTmpfs  = "tmpfs"
	MountProc   = "proc"
	MountDev    = "dev"
)

// EnvVar is one variable of the module's otherwise empty environment.
type EnvVar struct {
	Name  string     `json:"name"`
	Value string     `json:"value"`
	Why   Provenance `json:"provenance"`
}

// HubACL is the list of hub calls and events the module may use. The hub
// denies everything else.
type HubACL struct {
	Methods []HubGrant `json:"methods"`
	Events  []HubGrant `json:"events"`
	// PublishNamespace is the only event namespace the module may publish in.
	PublishNamespace string `json:"publish_namespace"`
}

// HubGrant is one allowed hub method or event type, with every capability
// that grants it.
type HubGrant struct {
	Name    string       `json:"name"`
	Sources []Provenance `json:"sources"`
}

// Paths inside the container.
const (
	ModuleDir     = "/module"
	ConfigPath    = "/etc/module/config.toml"
	HubSocketPath = "/run/blvm/hub.sock"
	DataDir       = "/data"
	TmpDir        = "/tmp"
	ShimPath      = "/.blvm/landlock-shim"
)
