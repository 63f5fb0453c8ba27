package policy

import (
	"errors"
	"fmt"
	"sort"
)

// ModeRecord marks a policy made by Record. Only `blvm-sandbox record`
// makes one; the runtime refuses to start it unless a recorder listens for
// its filter's notifications, which the daemon never does.
const ModeRecord = "record"

// SourceRecord is the source of the rows Record puts in a filter.
const SourceRecord = "record"

// ActNotify hands the syscall to the recorder (SECCOMP_RET_USER_NOTIF): the
// calling thread waits until the recorder answers.
const ActNotify Action = "notify"

// Record returns the record-mode variant of p, for a development run that
// watches what a module does instead of refusing it. native lists the
// syscall names of p's architecture that the filter can carry (those
// libseccomp knows: libcontainer skips a rule for any other). p is not
// changed.
//
// Only the filter changes, and only where the normal filter would not
// simply allow:
//   - a syscall with no rule (the normal filter answers ENOSYS) goes to the
//     recorder, which logs it and lets it run;
//   - a syscall whose rules are anything but one unconditional allow (an
//     argument test, an errno, the deny list) goes to the recorder whole,
//     which answers exactly as the normal filter would and logs what that
//     filter refuses. libseccomp cannot give a syscall conditional rules
//     and a different action for the arguments no rule matches, so the
//     argument tests move to the recorder, which evaluates the normal
//     policy's own rules;
//   - an unconditional allow, and every rule of a syscall with a kill
//     rule, stay in the kernel;
//   - syscalls outside native still fail with ENOSYS, unrecorded: libcontainer
//     refuses SECCOMP_RET_USER_NOTIF as the default action, because its init
//     could not then write the notify fd to its parent.
//
// Namespaces, Landlock, cgroups, mounts and the hub ACL are the normal ones.
func Record(p *Policy, native []string) (*Policy, error) {
	if p == nil {
		return nil, errors.New("policy: record: no policy")
	}
	if p.Mode != "" {
		return nil, fmt.Errorf("policy: record: the policy is already in mode %q", p.Mode)
	}
	if len(native) == 0 {
		return nil, fmt.Errorf("policy: record: no syscall table for %s", p.Seccomp.Arch)
	}
	out := *p
	out.Mode = ModeRecord
	s := p.Seccomp
	s.Default = Provenance{Source: SourceRecord,
		Reason: "record mode: syscalls with no row here (numbers libseccomp cannot name) still fail with ENOSYS, unrecorded: libcontainer refuses a notifying default"}
	byName := map[string][]SyscallRule{}
	var order []string
	for _, r := range p.Seccomp.Rules {
		if _, seen := byName[r.Syscall]; !seen {
			order = append(order, r.Syscall)
		}
		byName[r.Syscall] = append(byName[r.Syscall], r)
	}
	s.Rules = nil
	for _, name := range order {
		rules := byName[name]
		if keptInKernel(rules) {
			s.Rules = append(s.Rules, rules...)
			continue
		}
		s.Rules = append(s.Rules, SyscallRule{
			Syscall: name, Action: ActNotify, Family: rules[0].Family,
			Sources: []Provenance{{Source: SourceRecord,
				Reason: "the recorder answers as the normal filter would (" + treatment(stripFamily(rules), p.Seccomp.DefaultAction, p.Seccomp.DefaultErrno) + ") and logs what it refuses"}},
		})
	}
	for _, name := range native {
		if _, ruled := byName[name]; ruled {
			continue
		}
		byName[name] = nil
		s.Rules = append(s.Rules, SyscallRule{
			Syscall: name, Action: ActNotify,
			Sources: []Provenance{{Source: SourceRecord,
				Reason: "outside the allowlist: the recorder logs it and lets it run (the normal filter answers " + p.Seccomp.DefaultErrno + ")"}},
		})
	}
	for _, r := range s.Rules {
		// libcontainer's init writes the notify fd to its parent after the
		// filter is loaded: a notifying write would hang it for good.
		if r.Syscall == "write" && r.Action == ActNotify {
			return nil, errors.New("policy: record: write is not unconditionally allowed, and libcontainer's init cannot hand over a filter that notifies on write")
		}
	}
	sort.SliceStable(s.Rules, func(i, j int) bool { return ruleKey(s.Rules[i]) < ruleKey(s.Rules[j]) })
	s.Families = make([]SyscallFamily, len(p.Seccomp.Families))
	for i, f := range p.Seccomp.Families {
		nf := f
		nf.Members = make([]FamilyMember, len(f.Members))
		for j, m := range f.Members {
			rules := rulesOf(s.Rules, m.Syscall)
			m.Treatment = treatment(rules, s.DefaultAction, s.DefaultErrno)
			m.ArgIndex = argIndexes(rules)
			nf.Members[j] = m
		}
		s.Families[i] = nf
	}
	out.Seccomp = s
	return &out, nil
}

// keptInKernel says whether a syscall's rules stay in the kernel filter in
// record mode: a lone unconditional allow, or rules with a kill (the
// recorder can answer only with an errno or by letting the call run).
func keptInKernel(rules []SyscallRule) bool {
	for _, r := range rules {
		if r.Action == ActKill {
			return true
		}
	}
	return len(rules) == 1 && rules[0].Action == ActAllow && len(rules[0].Args) == 0
}

func rulesOf(rules []SyscallRule, name string) []SyscallRule {
	var out []SyscallRule
	for _, r := range rules {
		if r.Syscall == name {
			out = append(out, r)
		}
	}
	return out
}

func stripFamily(rules []SyscallRule) []SyscallRule {
	out := make([]SyscallRule, len(rules))
	for i, r := range rules {
		r.Family = ""
		out[i] = r
	}
	return out
}

// RecordChange is one syscall whose treatment Record changed.
type RecordChange struct {
	Syscall string `json:"syscall"`
	Normal  string `json:"normal"` // what the normal filter does
	Record  string `json:"record"` // what the record filter does
	Reason  string `json:"reason"`
}

// RecordChanges lists the syscalls whose treatment differs between the
// normal policy and its record variant, by name: the rows `explain
// --record` shows.
func RecordChanges(normal, rec *Policy) []RecordChange {
	names := map[string]bool{}
	for _, r := range normal.Seccomp.Rules {
		names[r.Syscall] = true
	}
	for _, r := range rec.Seccomp.Rules {
		names[r.Syscall] = true
	}
	var out []RecordChange
	for name := range names {
		was := treatment(stripFamily(rulesOf(normal.Seccomp.Rules, name)), normal.Seccomp.DefaultAction, normal.Seccomp.DefaultErrno)
		recRules := rulesOf(rec.Seccomp.Rules, name)
		now := treatment(stripFamily(recRules), rec.Seccomp.DefaultAction, rec.Seccomp.DefaultErrno)
		if was == now {
			continue
		}
		c := RecordChange{Syscall: name, Normal: was, Record: now}
		if len(recRules) > 0 && len(recRules[0].Sources) > 0 {
			c.Reason = recRules[0].Sources[0].Reason
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Syscall < out[j].Syscall })
	return out
}
