package runtime

import (
	"strings"
	"testing"

	"github.com/blvm/blvm-sandbox/policy"
)

func TestWorst(t *testing.T) {
	for _, tc := range []struct {
		in   []Verdict
		want Verdict
	}{
		{nil, VerdictOK},
		{[]Verdict{VerdictOK, VerdictOK}, VerdictOK},
		{[]Verdict{VerdictOK, VerdictWarn}, VerdictWarn},
		{[]Verdict{VerdictFail, VerdictWarn}, VerdictFail},
		{[]Verdict{VerdictWarn, VerdictOK, VerdictFail}, VerdictFail},
	} {
		var checks []Check
		for _, v := range tc.in {
			checks = append(checks, Check{Verdict: v})
		}
		if got := Worst(checks); got != tc.want {
			t.Errorf("Worst(%v) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestControllersCheck(t *testing.T) {
	v1 := func(ctls ...string) []Hierarchy {
		var hs []Hierarchy
		for _, c := range ctls {
			hs = append(hs, Hierarchy{Version: 1, Controllers: strings.Split(c, ",")})
		}
		return hs
	}
	host := policy.Host{CgroupVersion: 1}
	for _, tc := range []struct {
		hs     []Hierarchy
		want   Verdict
		detail string
	}{
		{v1("memory", "pids", "cpu,cpuacct", "name=systemd"), VerdictOK, ""},
		{v1("memory", "pids"), VerdictWarn, "cpu"},
		{v1("pids", "cpu"), VerdictFail, "memory"},
		{v1("memory", "cpu"), VerdictFail, "pids"},
	} {
		c := controllersCheck(host, tc.hs, nil)
		if c.Verdict != tc.want || !strings.Contains(c.Detail, tc.detail) || strings.Contains(c.Value, "name=") {
			t.Errorf("controllers %v: %+v, want %s naming %q", tc.hs, c, tc.want, tc.detail)
		}
	}
}

func TestLandlockCheck(t *testing.T) {
	for _, tc := range []struct {
		abi, min int
		want     Verdict
	}{{0, 6, VerdictFail}, {5, 6, VerdictFail}, {6, 6, VerdictOK}, {7, 6, VerdictOK}} {
		if c := landlockCheck(policy.Host{LandlockABI: tc.abi}, nil, tc.min); c.Verdict != tc.want {
			t.Errorf("ABI %d, min %d: %+v, want %s", tc.abi, tc.min, c, tc.want)
		}
	}
}
