//go:build cgo

package policy

import (
	"bytes"
	"fmt"
	"io"
	"os"

	"github.com/opencontainers/runc/libcontainer/configs"
	libseccomp "github.com/seccomp/libseccomp-golang"
)

// BPF writes libseccomp's pseudo-filter-code listing of the seccomp filter
// to w: the same rules, in the same order, as libcontainer loads from
// SeccompConfig. Two things libcontainer adds at load time are not in the
// listing: its -ENOSYS stub for syscalls newer than any named in the policy
// (it only repeats the default action here), and the shim's stacked
// foreign-arch filter. The listing is unoptimised (no binary tree), so an
// auditor can read it top to bottom; the output is deterministic.
//
// It needs cgo (libseccomp); builds without cgo return an error.
func (p *Policy) BPF(w io.Writer) error {
	cfg, err := p.SeccompConfig()
	if err != nil {
		return fmt.Errorf("bpf: %w", err)
	}
	filter, err := seccompFilter(cfg)
	if err != nil {
		return fmt.Errorf("bpf: %w", err)
	}
	defer filter.Release()
	// ExportPFC writes to a file descriptor, not an io.Writer.
	f, err := os.CreateTemp("", "blvm-seccomp-*.pfc")
	if err != nil {
		return fmt.Errorf("bpf: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if err := filter.ExportPFC(f); err != nil {
		return fmt.Errorf("bpf: export pseudo filter code: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("bpf: %w", err)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(f); err != nil {
		return fmt.Errorf("bpf: read pseudo filter code: %w", err)
	}
	_, err = w.Write(buf.Bytes())
	return err
}

// seccompFilter builds a libseccomp filter from libcontainer's config the
// way libcontainer's seccomp.InitSeccomp does: same default, arches and
// rules, a rule equal to the default skipped, the bad-arch action left at
// libseccomp's default (kill), and no_new_privs left to the caller.
func seccompFilter(cfg *configs.Seccomp) (*libseccomp.ScmpFilter, error) {
	def, err := scmpAction(cfg.DefaultAction, cfg.DefaultErrnoRet)
	if err != nil {
		return nil, fmt.Errorf("default action: %w", err)
	}
	filter, err := libseccomp.NewFilter(def)
	if err != nil {
		return nil, fmt.Errorf("new filter: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			filter.Release()
		}
	}()
	for _, a := range cfg.Architectures {
		arch, err := libseccomp.GetArchFromString(a)
		if err != nil {
			return nil, fmt.Errorf("arch %s: %w", a, err)
		}
		if err := filter.AddArch(arch); err != nil {
			return nil, fmt.Errorf("arch %s: %w", a, err)
		}
	}
	if err := filter.SetNoNewPrivsBit(false); err != nil {
		return nil, fmt.Errorf("no_new_privs attribute: %w", err)
	}
	for _, sc := range cfg.Syscalls {
		act, err := scmpAction(sc.Action, sc.ErrnoRet)
		if err != nil {
			return nil, fmt.Errorf("rule %s: %w", sc.Name, err)
		}
		if act == def {
			// libseccomp refuses a rule that repeats the default action.
			continue
		}
		nr, err := libseccomp.GetSyscallFromName(sc.Name)
		if err != nil {
			return nil, fmt.Errorf("rule %s: unknown to libseccomp: %w", sc.Name, err)
		}
		var conds []libseccomp.ScmpCondition
		for _, a := range sc.Args {
			op, err := scmpOp(a.Op)
			if err != nil {
				return nil, fmt.Errorf("rule %s: %w", sc.Name, err)
			}
			c, err := libseccomp.MakeCondition(a.Index, op, a.Value, a.ValueTwo)
			if err != nil {
				return nil, fmt.Errorf("rule %s: %w", sc.Name, err)
			}
			conds = append(conds, c)
		}
		if len(conds) == 0 {
			err = filter.AddRule(nr, act)
		} else {
			err = filter.AddRuleConditional(nr, act, conds)
		}
		if err != nil {
			return nil, fmt.Errorf("rule %s: %w", sc.Name, err)
		}
	}
	ok = true
	return filter, nil
}

// scmpAction and scmpOp mirror libcontainer's own mapping for the subset
// SeccompConfig emits.
func scmpAction(a configs.Action, errnoRet *uint) (libseccomp.ScmpAction, error) {
	switch a {
	case configs.Allow:
		return libseccomp.ActAllow, nil
	case configs.Errno:
		if errnoRet == nil {
			return libseccomp.ActInvalid, fmt.Errorf("errno action without a number")
		}
		return libseccomp.ActErrno.SetReturnCode(int16(*errnoRet)), nil
	case configs.KillProcess:
		return libseccomp.ActKillProcess, nil
	case configs.Notify:
		return libseccomp.ActNotify, nil
	}
	return libseccomp.ActInvalid, fmt.Errorf("unexpected libcontainer action %d", a)
}

func scmpOp(op configs.Operator) (libseccomp.ScmpCompareOp, error) {
	switch op {
	case configs.EqualTo:
		return libseccomp.CompareEqual, nil
	case configs.NotEqualTo:
		return libseccomp.CompareNotEqual, nil
	case configs.MaskEqualTo:
		return libseccomp.CompareMaskedEqual, nil
	}
	return libseccomp.CompareInvalid, fmt.Errorf("unexpected libcontainer operator %d", op)
}
