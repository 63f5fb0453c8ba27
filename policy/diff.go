package policy

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// Delta is the difference between two policies, as items an auditor reads.
type Delta struct {
	Added   []string `json:"added"`
	Removed []string `json:"removed"`
	// Wider lists the changes that grant more than before: a new
	// capability, allowed syscall, path, mount or hub grant, a raised
	// limit, or a denial that went away.
	Wider []string `json:"wider"`
}

// Diff compares old and new item by item.
func Diff(old, new *Policy) Delta {
	var d Delta
	oi, ni := items(old), items(new)
	for k, grants := range ni {
		if _, ok := oi[k]; !ok {
			d.Added = append(d.Added, k)
			if grants {
				d.Wider = append(d.Wider, "added "+k)
			}
		}
	}
	for k, grants := range oi {
		if _, ok := ni[k]; !ok {
			d.Removed = append(d.Removed, k)
			if !grants {
				d.Wider = append(d.Wider, "removed "+k)
			}
		}
	}
	for _, l := range limitChanges(old, new) {
		d.Added = append(d.Added, l.text)
		if l.raised {
			d.Wider = append(d.Wider, l.text)
		}
	}
	sort.Strings(d.Added)
	sort.Strings(d.Removed)
	sort.Strings(d.Wider)
	return d
}

// items flattens a policy to comparable strings; the value says whether the
// item grants something (true) or takes something away (false).
func items(p *Policy) map[string]bool {
	out := map[string]bool{}
	for _, c := range p.Capabilities {
		out["capability "+c.Name] = true
	}
	for _, r := range p.Seccomp.Rules {
		out["syscall "+ruleString(r)] = r.Action == ActAllow
	}
	for _, l := range p.Landlock.Rules {
		out["path "+l.Path+" "+strings.Join(l.Access, ",")] = true
	}
	for _, s := range p.Landlock.Scopes {
		out["landlock scope "+s.Name] = false
	}
	for _, m := range p.Mounts {
		out["mount "+m.Destination+" "+strings.Join(m.Options, ",")] = true
	}
	for _, n := range p.Namespaces {
		out["namespace "+n.Type] = false
	}
	for _, m := range p.Hub.Methods {
		out["hub method "+m.Name] = true
	}
	for _, e := range p.Hub.Events {
		out["hub event "+e.Name] = true
	}
	for _, e := range p.Env {
		out["env "+e.Name+"="+e.Value] = true
	}
	if p.Process.NoNewPrivileges.Enabled {
		out["no_new_privs"] = false
	}
	if p.Process.ReadonlyRootfs.Enabled {
		out["read-only rootfs"] = false
	}
	for _, c := range p.Process.Capabilities {
		out["linux capability "+c] = true
	}
	return out
}

type limitChange struct {
	text   string
	raised bool
}

func limitChanges(old, new *Policy) []limitChange {
	var out []limitChange
	cmp := func(name string, o, n int64) {
		if o == n {
			return
		}
		// Zero or less means unlimited, the widest value.
		raised := (n <= 0 && o > 0) || (o > 0 && n > o)
		out = append(out, limitChange{text: fmt.Sprintf("limit %s %d -> %d", name, o, n), raised: raised})
	}
	cmp("memory_bytes", old.Cgroup.MemoryBytes.Value, new.Cgroup.MemoryBytes.Value)
	cmp("pids", old.Cgroup.Pids.Value, new.Cgroup.Pids.Value)
	cmp("cpu_quota_us", old.Cgroup.CPUQuotaMicros.Value, new.Cgroup.CPUQuotaMicros.Value)
	cmp("disk_bytes", old.Storage.Bytes.Value, new.Storage.Bytes.Value)
	cmp("disk_inodes", old.Storage.Inodes.Value, new.Storage.Inodes.Value)
	if old.Storage.Backend != new.Storage.Backend {
		out = append(out, limitChange{
			text:   fmt.Sprintf("disk quota backend %s -> %s", storageBackendString(old.Storage), storageBackendString(new.Storage)),
			raised: old.Storage.Enforced() && !new.Storage.Enforced(),
		})
	}
	orl := map[string]Rlimit{}
	for _, r := range old.Rlimits {
		orl[r.Type] = r
	}
	for _, r := range new.Rlimits {
		cmp(r.Type, int64(orl[r.Type].Hard), int64(r.Hard))
	}
	return out
}

// WriteText prints the delta, one item a line.
func (d Delta) WriteText(w io.Writer) error {
	var b strings.Builder
	for _, a := range d.Added {
		fmt.Fprintf(&b, "+ %s\n", a)
	}
	for _, r := range d.Removed {
		fmt.Fprintf(&b, "- %s\n", r)
	}
	if len(d.Wider) > 0 {
		fmt.Fprintf(&b, "\nThe new policy is WIDER (%d changes grant more):\n", len(d.Wider))
		for _, x := range d.Wider {
			fmt.Fprintf(&b, "  %s\n", x)
		}
	} else {
		b.WriteString("\nThe new policy is not wider.\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}
