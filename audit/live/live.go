// Package live reads, from the host, the confinement a running module's
// process actually has (credentials, capabilities, no_new_privs, seccomp
// mode, namespaces, rlimits, cgroup limits, the mounts it sees) and compares each with its
// Policy, one row per control. It reads /proc and /sys only; the seccomp
// filters themselves are read and proven by audit/kernelfilter and audit.
package live

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/blvm/blvm-sandbox/policy"
)

// Row is one control: what the policy wants, what the process has.
type Row struct {
	Control string
	Want    string
	Got     string
	OK      bool
}

// Inspect compares process pid with p. proc and cgroupRoot are normally
// "/proc" and "/sys/fs/cgroup".
func Inspect(pid int, p *policy.Policy, proc, cgroupRoot string) ([]Row, error) {
	dir := filepath.Join(proc, strconv.Itoa(pid))
	status, err := fields(filepath.Join(dir, "status"), ":")
	if err != nil {
		return nil, err
	}
	var rows []Row
	add := func(control, want, got string) {
		rows = append(rows, Row{Control: control, Want: want, Got: got, OK: want == got})
	}
	nnp := "0"
	if p.Process.NoNewPrivileges.Enabled {
		nnp = "1"
	}
	add("no_new_privs", nnp, status["NoNewPrivs"])
	add("seccomp mode", "2", status["Seccomp"])
	// The runtime's filter and the shim's.
	add("seccomp filters", "2", status["Seccomp_filters"])
	if len(p.Process.Capabilities) == 0 {
		for _, c := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
			add("capabilities "+c, "0000000000000000", status[c])
		}
	}
	base, err := idBase(filepath.Join(dir, "uid_map"))
	if err != nil {
		return nil, err
	}
	gbase, err := idBase(filepath.Join(dir, "gid_map"))
	if err != nil {
		return nil, err
	}
	want := strconv.Itoa(int(p.Process.UID))
	add("uid inside (real effective saved fs)", strings.Repeat(want+" ", 4), inside(status["Uid"], base))
	add("gid inside (real effective saved fs)", strings.Repeat(want+" ", 4), inside(status["Gid"], gbase))
	for _, ns := range p.Namespaces {
		name := map[string]string{"mount": "mnt", "network": "net"}[ns.Type]
		if name == "" {
			name = ns.Type
		}
		own, err1 := os.Readlink(filepath.Join(dir, "ns", name))
		// The inspector's own namespaces stand for the host's: it runs
		// on the host, and pid 1 may be out of its reach.
		host, err2 := os.Readlink(filepath.Join(proc, "self", "ns", name))
		got := "shared with the inspector"
		switch {
		case err1 != nil || err2 != nil:
			got = fmt.Sprintf("unreadable: %v %v", err1, err2)
		case own != host:
			got = "own"
		}
		add("namespace "+ns.Type, "own", got)
	}
	limits, err := rlimits(filepath.Join(dir, "limits"))
	if err != nil {
		return nil, err
	}
	for _, r := range p.Rlimits {
		add(r.Type+" soft hard", fmt.Sprintf("%d %d", r.Soft, r.Hard), limits[r.Type])
	}
	mem, pids, err := cgroupLimits(filepath.Join(dir, "cgroup"), cgroupRoot)
	if err != nil {
		return nil, err
	}
	add("cgroup memory bytes", strconv.FormatInt(p.Cgroup.MemoryBytes.Value, 10), mem)
	add("cgroup pids", strconv.FormatInt(p.Cgroup.Pids.Value, 10), pids)
	seen, err := mounts(filepath.Join(dir, "mountinfo"))
	if err != nil {
		return nil, err
	}
	for _, m := range p.Mounts {
		want := "rw"
		if slices.Contains(m.Options, "ro") {
			want = "ro"
		}
		add("mount "+m.Destination, want, mountState(seen, m.Destination))
	}
	root := "rw"
	if p.Process.ReadonlyRootfs.Enabled {
		root = "ro"
	}
	add("mount / (the rootfs)", root, mountState(seen, "/"))
	extra := "none"
	if u := unexpected(seen, p); len(u) > 0 {
		extra = strings.Join(u, " ")
	}
	add("mounts outside the policy", "none", extra)
	return rows, nil
}

// mounts reads a mountinfo file: mount point -> "ro" or "rw" for the last
// mount on each point (the one the process sees).
func mounts(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			continue
		}
		state := "rw"
		if slices.Contains(strings.Split(f[5], ","), "ro") {
			state = "ro"
		}
		out[unescapeMountinfo(f[4])] = state
	}
	return out, nil
}

// unescapeMountinfo undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func mountState(seen map[string]string, dest string) string {
	if st, ok := seen[dest]; ok {
		return st
	}
	return "absent"
}

// unexpected lists the mount points the process sees that the policy does
// not name: not a mount, a masked or a read-only path, a device node, nor
// the root.
func unexpected(seen map[string]string, p *policy.Policy) []string {
	named := map[string]bool{"/": true}
	for _, d := range policy.DeviceNodes() {
		named[d] = true
	}
	for _, m := range p.Mounts {
		named[m.Destination] = true
	}
	for _, m := range p.Process.MaskedPaths {
		named[m.Path] = true
	}
	for _, m := range p.Process.ReadonlyPaths {
		named[m.Path] = true
	}
	var out []string
	for point := range seen {
		if !named[point] {
			out = append(out, point)
		}
	}
	slices.Sort(out)
	return out
}

// fields reads a "Key<sep> value" file.
func fields(path, sep string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, sep); ok {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out, nil
}

// idBase is the host id that id 0 inside maps to (the first uid_map line).
func idBase(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) < 3 || f[0] != "0" {
		return 0, fmt.Errorf("%s: %q does not map id 0", path, b)
	}
	return strconv.Atoi(f[1])
}

// inside turns a status line of host ids into ids inside the namespace.
func inside(line string, base int) string {
	var b strings.Builder
	for _, f := range strings.Fields(line) {
		n, err := strconv.Atoi(f)
		if err != nil {
			return line
		}
		b.WriteString(strconv.Itoa(n-base) + " ")
	}
	return b.String()
}

// rlimitLabels are /proc/PID/limits' names for the RLIMIT_* the policy sets.
var rlimitLabels = map[string]string{
	"Max open files": "RLIMIT_NOFILE", "Max core file size": "RLIMIT_CORE", "Max processes": "RLIMIT_NPROC",
	"Max address space": "RLIMIT_AS", "Max file size": "RLIMIT_FSIZE", "Max stack size": "RLIMIT_STACK",
	"Max locked memory": "RLIMIT_MEMLOCK", "Max cpu time": "RLIMIT_CPU", "Max data size": "RLIMIT_DATA",
}

func rlimits(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		for label, name := range rlimitLabels {
			if rest, ok := strings.CutPrefix(l, label); ok {
				f := strings.Fields(rest)
				if len(f) >= 2 {
					out[name] = num(f[0]) + " " + num(f[1])
				}
			}
		}
	}
	return out, nil
}

func num(s string) string {
	if s == "unlimited" {
		return strconv.FormatUint(^uint64(0), 10)
	}
	return s
}

// cgroupLimits reads the memory and pids limits of the process's cgroup,
// v1 (per-controller hierarchies) or v2 (the unified one).
func cgroupLimits(path, root string) (mem, pids string, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", "", err
	}
	read := func(p string) string {
		v, err := os.ReadFile(p)
		if err != nil {
			return "unreadable: " + err.Error()
		}
		return strings.TrimSpace(string(v))
	}
	var unified string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(l, ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[1] == "memory":
			mem = read(filepath.Join(root, "memory", parts[2], "memory.limit_in_bytes"))
		case parts[1] == "pids":
			pids = read(filepath.Join(root, "pids", parts[2], "pids.max"))
		case parts[0] == "0" && parts[1] == "":
			unified = parts[2]
		}
	}
	if mem == "" && unified != "" {
		mem = read(filepath.Join(root, unified, "memory.max"))
	}
	if pids == "" && unified != "" {
		pids = read(filepath.Join(root, unified, "pids.max"))
	}
	return mem, pids, nil
}
