// Package record watches one development run of a module (the hub calls it
// makes, the syscalls its normal filter would not simply allow, the
// resources it uses) and turns what it saw into a report and a suggested
// manifest, in capability terms. It never changes a manifest, and what it
// suggests covers only what the run did: coverage is not confidence.
package record

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/blvm/blvm-sandbox/audit/eval"
	"github.com/blvm/blvm-sandbox/audit/seccompabi"
	"github.com/blvm/blvm-sandbox/capabilities"
	"github.com/blvm/blvm-sandbox/policy"
)

// Decision is how the recorder answers one notified syscall.
type Decision struct {
	// Errno is the error the normal filter answers with; 0 lets the
	// syscall run.
	Errno     uint16
	ErrnoName string
	// Record is set for what the normal filter would refuse: a syscall
	// outside the allowlist (let run here) or one a rule refuses
	// (answered as that rule does).
	Record bool
	// Reason is the refusing rules' reason, when a rule refuses.
	Reason string
	// Arg is the argument the normal rules of this syscall test (ioctl's
	// command, prctl's option), and its value in this call; -1 when they
	// test none.
	Arg      int
	ArgValue uint64
}

// Decider answers notifications exactly as the module's normal filter
// would, from the normal policy's own rules (audit/eval evaluates them).
type Decider struct {
	normal *eval.Evaluator // the normal filter
	// rules is the normal filter with an allowing default: it refuses only
	// where a rule refuses, which tells a rule's errno from the default's.
	rules  *eval.Evaluator
	arch   eval.Arch
	names  map[int32]string
	policy policy.Seccomp
	errnos map[uint16]string
}

// NewDecider builds the decider for the normal (not the record) policy's
// seccomp part.
func NewDecider(normal policy.Seccomp) (*Decider, error) {
	a, err := eval.ArchOf(normal.Arch)
	if err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	n, err := eval.New(normal)
	if err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	allowing := normal
	allowing.DefaultAction, allowing.DefaultErrno = policy.ActAllow, ""
	r, err := eval.New(allowing)
	if err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	d := &Decider{normal: n, rules: r, arch: a, names: map[int32]string{}, policy: normal, errnos: map[uint16]string{}}
	for name, nr := range a.Nums {
		d.names[nr] = name
	}
	for name, v := range capabilities.Errnos {
		d.errnos[uint16(v)] = name
	}
	return d, nil
}

// Native lists every syscall name of the architecture, the table
// policy.Record names its notifying rows from.
func (d *Decider) Native() []string {
	out := make([]string, 0, len(d.arch.Nums))
	for name := range d.arch.Nums {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// Name is the syscall's name, or "syscall_<nr>" when the table has none.
func (d *Decider) Name(nr int32) string {
	if n, ok := d.names[nr]; ok {
		return n
	}
	return fmt.Sprintf("syscall_%d", nr)
}

// Decide answers a native-arch syscall: its number and arguments.
func (d *Decider) Decide(nr int32, args [6]uint64) Decision {
	data := seccompabi.Data{Nr: nr, Arch: d.arch.Audit, Args: args}
	arg := d.testedArg(d.Name(nr))
	var val uint64
	if arg >= 0 {
		val = args[arg]
	}
	if v := d.rules.Verdict(data); v&seccompabi.RetActionFull == seccompabi.RetErrno {
		e := uint16(v & seccompabi.RetData)
		name := d.errnoName(e)
		return Decision{Errno: e, ErrnoName: name, Record: true, Reason: d.reason(d.Name(nr), name), Arg: arg, ArgValue: val}
	}
	if d.normal.Verdict(data) == seccompabi.RetAllow {
		return Decision{Arg: -1}
	}
	// No rule matched: the normal default (ENOSYS) refuses it. Let it run
	// to see what the module does with it.
	return Decision{Record: true, Arg: arg, ArgValue: val}
}

// testedArg is the argument index the syscall's normal rules test first,
// or -1.
func (d *Decider) testedArg(syscall string) int {
	for _, r := range d.policy.Rules {
		if r.Syscall == syscall && len(r.Args) > 0 {
			return int(r.Args[0].Index)
		}
	}
	return -1
}

func (d *Decider) errnoName(e uint16) string {
	if n, ok := d.errnos[e]; ok {
		return n
	}
	return fmt.Sprintf("errno %d", e)
}

// reason joins the reasons of the syscall's rules that answer errno.
func (d *Decider) reason(syscall, errno string) string {
	var out []string
	seen := map[string]bool{}
	for _, r := range d.policy.Rules {
		if r.Syscall != syscall || r.Action != policy.ActErrno || r.Errno != errno {
			continue
		}
		for _, s := range r.Sources {
			why := s.Source + ": " + s.Reason
			if !seen[why] {
				seen[why] = true
				out = append(out, why)
			}
		}
	}
	return strings.Join(out, "; ")
}

// Who made a syscall, told apart by the executable of the calling process.
const (
	ByModule  = "module"
	ByShim    = "shim"    // the Landlock shim, before it execs the module
	ByRuntime = "runtime" // the container's init (libcontainer), before it execs the shim
)

// Syscall is one syscall the normal filter would refuse, as the run made it.
type Syscall struct {
	Nr    int32  `json:"nr"`
	Name  string `json:"name"`
	Count int    `json:"count"`
	// By is who made it: the module, or the sandbox's own code before the
	// module started (which no manifest change concerns).
	By string `json:"by"`
	// Arg and Values are the argument the normal rules test and the
	// distinct values seen (at most maxValues).
	Arg    *int     `json:"arg,omitempty"`
	Values []uint64 `json:"values,omitempty"`
	// Refused is the errno a rule of the normal filter answers, and the
	// recorder answered; empty when the syscall is outside the allowlist
	// (the normal filter answers ENOSYS) and the recorder let it run.
	Refused string `json:"refused,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

// SyscallLog counts the syscalls the recorder saw. Safe for concurrent use.
type SyscallLog struct {
	mu   sync.Mutex
	byNr map[answered]*Syscall
}

// answered keys the log: one syscall may be refused for some arguments
// (chmod with a group bit) and run for others.
type answered struct {
	nr    int32
	errno string
	by    string
}

// maxValues bounds the argument values kept per syscall.
const maxValues = 8

// NewSyscallLog returns an empty log.
func NewSyscallLog() *SyscallLog { return &SyscallLog{byNr: map[answered]*Syscall{}} }

// Add counts one call of syscall nr (named name) made by by and answered
// by d.
func (l *SyscallLog) Add(nr int32, name, by string, d Decision) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := answered{nr, d.ErrnoName, by}
	s := l.byNr[k]
	if s == nil {
		s = &Syscall{Nr: nr, Name: name, By: by, Refused: d.ErrnoName, Reason: d.Reason}
		if d.Arg >= 0 {
			arg := d.Arg
			s.Arg = &arg
		}
		l.byNr[k] = s
	}
	s.Count++
	if s.Arg != nil && len(s.Values) < maxValues && !slices.Contains(s.Values, d.ArgValue) {
		s.Values = append(s.Values, d.ArgValue)
		slices.Sort(s.Values)
	}
}

// Undo takes back one count of Add(nr, _, d): its answer found the call
// gone (ENOENT: a signal interrupted it, and the restarted call is
// notified anew).
func (l *SyscallLog) Undo(nr int32, by string, d Decision) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := answered{nr, d.ErrnoName, by}
	if s := l.byNr[k]; s != nil {
		if s.Count--; s.Count <= 0 {
			delete(l.byNr, k)
		}
	}
}

// List is the syscalls seen, most called first, then by name.
func (l *SyscallLog) List() []Syscall {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Syscall, 0, len(l.byNr))
	for _, s := range l.byNr {
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].By != out[j].By {
			return out[i].By < out[j].By
		}
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Name < out[j].Name
	})
	return out
}
