//go:build cgo

package policy

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	libseccomp "github.com/seccomp/libseccomp-golang"
)

// familyArches are the architectures the family data is written for.
var familyArches = []string{"amd64", "arm64"}

// syscallNames is every syscall libseccomp knows on familyArches.
func syscallNames(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	for _, a := range familyArches {
		arch, err := libseccomp.GetArchFromString(a)
		if err != nil {
			t.Fatal(err)
		}
		for nr := 0; nr < 1024; nr++ {
			if n, err := libseccomp.ScmpSyscall(nr).GetNameByArch(arch); err == nil && n != "" {
				names[n] = true
			}
		}
	}
	return names
}

var siblingSuffix = regexp.MustCompile(`(at2|at|64|[0-9]+|x)$`)

// siblingStems guesses the operation a syscall name stands for: chmod,
// fchmod, fchmodat and fchmodat2 all give "chmod"; pread64 and preadv2 give
// "read". It is deliberately rough: it only finds candidates the family
// data must then place.
func siblingStems(name string) []string {
	base := strings.TrimPrefix(strings.TrimPrefix(name, "rt_"), "new")
	var out []string
	for _, b := range []string{base, strings.TrimPrefix(base, "f"), strings.TrimPrefix(base, "l"), strings.TrimPrefix(base, "p")} {
		b = siblingSuffix.ReplaceAllString(siblingSuffix.ReplaceAllString(b, ""), "")
		b = strings.TrimSuffix(b, "v")
		if len(b) >= 3 && !slices.Contains(out, b) {
			out = append(out, b)
		}
	}
	return out
}

// TestFamiliesCoverBaseSiblings fails when a syscall of a base group has a
// sibling on amd64 or arm64 that is not in its family, and when a family
// names a syscall neither architecture has (a typo would otherwise sit in
// the data, harmless and misleading).
func TestFamiliesCoverBaseSiblings(t *testing.T) {
	c := catalog(t)
	names := syscallNames(t)
	family := map[string]string{}
	for _, f := range c.FamilyList() {
		for _, sc := range f.Syscalls {
			family[sc] = f.Name
			if !names[sc] {
				t.Errorf("families.%s: %q is no syscall on %v", f.Name, sc, familyArches)
			}
		}
	}
	base := map[string]bool{}
	for _, g := range c.BaseGroups() {
		for _, sc := range g.Syscalls {
			base[sc] = true
		}
		for _, r := range g.Rules {
			base[r.Syscall] = true
		}
	}
	byStem := map[string][]string{}
	for n := range names {
		for _, s := range siblingStems(n) {
			byStem[s] = append(byStem[s], n)
		}
	}
	for stem, group := range byStem {
		if len(group) < 2 || !slices.ContainsFunc(group, func(n string) bool { return base[n] }) {
			continue
		}
		sort.Strings(group)
		var where []string
		split := false
		for _, n := range group {
			where = append(where, fmt.Sprintf("%s in %q", n, family[n]))
			split = split || family[n] == "" || family[n] != family[group[0]]
		}
		if split {
			t.Errorf("siblings (stem %q) are not one family: %s", stem, strings.Join(where, ", "))
		}
	}
}
