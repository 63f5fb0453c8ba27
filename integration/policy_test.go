package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/blvm/blvm-sandbox/internal/syncbuf"
	"github.com/blvm/blvm-sandbox/runtime"
)

// holdAttack starts the hostile module with one of the attacks that report
// and then stay up (integration/hostile/policy_attacks.go), waits for its
// result line and returns it with the module's host pid. The module is
// stopped when the test ends.
func (s *sandbox) holdAttack(attack, arg string) (hostileResult, int) {
	s.t.Helper()
	var out, errw syncbuf.Buffer
	if err := s.start("hostile", attack, arg, &out, &errw); err != nil {
		s.t.Fatalf("start %s: %v", attack, err)
	}
	s.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.sup.Stop(ctx, "hostile")
	})
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		sc := bufio.NewScanner(strings.NewReader(out.String()))
		for sc.Scan() {
			var res hostileResult
			if json.Unmarshal(sc.Bytes(), &res) == nil && res.Attack == attack {
				st, _ := s.sup.Status("hostile")
				if st.State != runtime.Running || st.Pid == 0 {
					s.t.Fatalf("%s: module not running after its report: %+v", attack, st)
				}
				return res, st.Pid
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("%s: no result line in 20s\nstdout %q\nstderr %q", attack, out.String(), errw.String())
	return hostileResult{}, 0
}

func permOf(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Lstat(path)
	if err != nil {
		t.Fatalf("host stat: %v", err)
	}
	return st.Mode().Perm()
}

// TestRootPolicyModeChanges makes every chmod entry point try to open /data
// and the hub socket to group and others, then checks from the host that
// the modes did not move, and that narrowing changes still work.
func TestRootPolicyModeChanges(t *testing.T) {
	s := newSandbox(t, runtime.RestartPolicy{Never: true})
	layout := runtime.Layout{Root: s.root}
	calls := []string{"chmod", "fchmod", "fchmodat", "fchmodat2"}
	var items []string
	want := map[string]string{}
	// Allowed first: modes without group or other bits, on the module's
	// own /data and socket (unchanged) and on new files it created 0644.
	// The refused changes come last, so one that got through stays visible
	// from the host.
	for _, c := range calls {
		for _, item := range []string{c + ":/data:0700", c + ":/data/new-" + c + "-0700:0700", c + ":/data/new-" + c + "-0600:0600"} {
			items = append(items, item)
			want[item] = "ok"
		}
		if c != "fchmod" { // fchmod of a socket file needs an O_PATH fd, which fchmod refuses (EBADF)
			items = append(items, c+":/run/blvm/hub.sock:0600")
			want[c+":/run/blvm/hub.sock:0600"] = "ok"
		}
	}
	for _, c := range calls {
		for _, target := range []string{"/data", "/run/blvm/hub.sock"} {
			for _, mode := range []string{"0777", "0770", "0705", "0740"} {
				item := c + ":" + target + ":" + mode
				items = append(items, item)
				want[item] = "EPERM"
			}
		}
	}
	// A POSIX ACL would open them without a mode change: no xattr call is
	// in the policy (families xattr-set, xattr-get).
	for _, target := range []string{"/data", "/run/blvm/hub.sock"} {
		items = append(items, "setxattr:"+target+":0777")
		want["setxattr:"+target+":0777"] = "ENOSYS"
	}
	// The modes the runtime gives them (runtime/supervisor.go, socket.go).
	const dataBefore, sockBefore = os.FileMode(0o700), os.FileMode(0o600)
	res, _ := s.holdAttack("chmod", strings.Join(items, ","))
	for _, item := range items {
		if got := res.Info[item]; got != want[item] {
			t.Errorf("%s = %s, want %s", item, got, want[item])
		}
	}
	// The host side, while the container still runs.
	if got := permOf(t, layout.Data("hostile")); got != dataBefore {
		t.Errorf("host: %s is %04o, was %04o", layout.Data("hostile"), got, dataBefore)
	}
	if got := permOf(t, layout.Socket("hostile")); got != sockBefore {
		t.Errorf("host: %s is %04o, want %04o", layout.Socket("hostile"), got, sockBefore)
	}
	for _, path := range []string{layout.Data("hostile"), layout.Socket("hostile")} {
		if _, err := unix.Getxattr(path, "system.posix_acl_access", make([]byte, 64)); err != unix.ENODATA {
			t.Errorf("host: %s has an access ACL, or it cannot be read: %v", path, err)
		}
	}
	for _, c := range calls {
		for _, m := range []os.FileMode{0o700, 0o600} {
			path := filepath.Join(layout.Data("hostile"), fmt.Sprintf("new-%s-%04o", c, m))
			if got := permOf(t, path); got != m {
				t.Errorf("host: %s is %04o after the module's %s to %04o (created 0644)", path, got, c, m)
			}
		}
	}
}

// TestRootPolicyStatfsFamily: statfs and fstatfs of /data both work and
// agree, where statfs used to get ENOSYS while fstatfs was allowed.
func TestRootPolicyStatfsFamily(t *testing.T) {
	s := newSandbox(t, runtime.RestartPolicy{Never: true})
	o := s.attack("statfs", "/data")
	if o.res.Errno != "ok" || o.res.Info["statfs"] != "ok" || o.res.Info["fstatfs"] != "ok" {
		t.Fatalf("statfs/fstatfs of /data: %+v\nstderr %s", o.res, o.stderr)
	}
	for _, k := range []string{"type", "blocks"} {
		if a, b := o.res.Info["statfs_"+k], o.res.Info["fstatfs_"+k]; a != b || a == "" {
			t.Errorf("statfs %s %q, fstatfs %s %q: want the same answer", k, a, k, b)
		}
	}
}

// TestRootPolicyForkWait: a module runs its own binary as a child with
// os/exec and waits for it. Wait must return the child's exit code 7, and
// the host must see no zombie left in the container. A run that never
// waits must leave one, or the zombie count proves nothing.
func TestRootPolicyForkWait(t *testing.T) {
	t.Run("wait", func(t *testing.T) {
		s := newSandbox(t, runtime.RestartPolicy{Never: true})
		res, pid := s.holdAttack("fork-wait", "")
		if res.Errno != "ok" || res.Info["exit_code"] != "7" {
			t.Fatalf("fork-wait: %+v, want exit code 7 from Wait", res)
		}
		if z := zombiesUnder(t, pid); len(z) != 0 {
			t.Errorf("host: zombies in the container after Wait: %v", z)
		}
	})
	t.Run("no-wait", func(t *testing.T) {
		s := newSandbox(t, runtime.RestartPolicy{Never: true})
		res, pid := s.holdAttack("fork-nowait", "")
		if res.Errno != "ok" {
			t.Fatalf("fork-nowait: %+v", res)
		}
		if z := zombiesUnder(t, pid); len(z) != 1 {
			t.Errorf("host: %d zombies under the module that never waited (%v), want 1", len(z), z)
		}
	})
}

// zombiesUnder walks the host's /proc for descendants of pid (the module,
// which is its container's init) in state Z. A zombie keeps its parent
// until it is reaped, so the parent chain finds it even though its
// namespace links are gone.
func zombiesUnder(t *testing.T, pid int) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	parent, state := map[int]int{}, map[int]string{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		rest := string(data[strings.LastIndexByte(string(data), ')')+1:])
		f := strings.Fields(rest)
		if len(f) < 2 {
			continue
		}
		pp, _ := strconv.Atoi(f[1])
		parent[p], state[p] = pp, f[0]
	}
	var out []int
	for p := range parent {
		for a, hops := parent[p], 0; a > 1 && hops < 64; a, hops = parent[a], hops+1 {
			if a == pid {
				if state[p] == "Z" {
					out = append(out, p)
				}
				break
			}
		}
	}
	return out
}
