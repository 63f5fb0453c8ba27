package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The container init runs in every container start, with every package
// initialiser it links. It may hold libcontainer and what libcontainer
// needs, and nothing of the daemon: this fails when an import drags one in.
func TestInitLinksNothingOfTheDaemon(t *testing.T) {
	out, err := exec.Command("go", "list", "-tags", "seccomp", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	forbidden := []string{
		"github.com/blvm/blvm-sandbox/cmd/blvm-sandbox",
		"github.com/blvm/blvm-sandbox/manager",
		"github.com/blvm/blvm-sandbox/admin",
		"github.com/blvm/blvm-sandbox/ipc",
		"github.com/blvm/blvm-sandbox/devchain",
		"github.com/blvm/blvm-sandbox/loader",
		"github.com/blvm/blvm-sandbox/verify",
		"github.com/blvm/blvm-sandbox/policy",
		"github.com/blvm/blvm-sandbox/runtime/quota",
		"github.com/spf13/cobra",
		"github.com/prometheus/",
		"google.golang.org/protobuf",
		"google.golang.org/grpc",
		"github.com/btcsuite/",
		"github.com/theupdateframework/",
		"go.etcd.io/bbolt",
		"net/http",
	}
	var ours []string
	for _, d := range deps {
		for _, f := range forbidden {
			if d == f || strings.HasPrefix(d, strings.TrimSuffix(f, "/")+"/") || (strings.HasSuffix(f, "/") && strings.HasPrefix(d, f)) {
				t.Errorf("blvm-sandbox-init links %s (forbidden: %s)", d, f)
			}
		}
		if strings.HasPrefix(d, "github.com/blvm/blvm-sandbox/") {
			ours = append(ours, d)
		}
	}
	want := []string{"github.com/blvm/blvm-sandbox/runtime/containerinit", "github.com/blvm/blvm-sandbox/runtime/launch", "github.com/blvm/blvm-sandbox/cmd/blvm-sandbox-init"}
	if strings.Join(ours, " ") != strings.Join(want, " ") {
		t.Errorf("blvm-sandbox-init links these of ours: %v, want only %v", ours, want)
	}
	t.Logf("%d packages", len(deps))
}
