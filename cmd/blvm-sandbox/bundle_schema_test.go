package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blvm/blvm-sandbox/internal/ocischema"
)

// TestOCIConfigMatchesItsSchema validates the config.json explain --format
// oci renders (bundle writes the same rendering) for every example module
// against the runtime-spec schema of the version it declares, and that the
// version is the lowest that carries it: 1.1.0, as every example's policy
// answers ENOSYS with errnoRet.
func TestOCIConfigMatchesItsSchema(t *testing.T) {
	paths := map[string]string{"lightning-network": examples["lightning-network"]}
	dirs, err := os.ReadDir("../../examples")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		if d.IsDir() {
			paths[d.Name()] = filepath.Join("../../examples", d.Name())
		}
	}
	if len(paths) < 5 {
		t.Fatalf("only %d example modules found", len(paths))
	}
	for name, path := range paths {
		t.Run(name, func(t *testing.T) {
			// The operator config the examples ship with: it allows
			// governance-voter its tier.
			out, errOut, code := explain(t, "--node-config", "../../examples/node.toml", "--format", "oci", path)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			v, err := ocischema.Validate([]byte(out))
			if err != nil {
				t.Fatal(err)
			}
			if v != "1.1.0" {
				t.Errorf("ociVersion %s, want 1.1.0", v)
			}
		})
	}
}

// TestOCISchemaCatchesWhatRuntimesRefuse: the validator fails the
// renderings issue 17 found broken, so the test above can fail.
func TestOCISchemaCatchesWhatRuntimesRefuse(t *testing.T) {
	out, errOut, code := explain(t, "--format", "oci", examples["stratum-v2"])
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for what, edit := range map[string]func(string) string{
		"rootfsPropagation rprivate": func(s string) string {
			return strings.Replace(s, `"maskedPaths"`, `"rootfsPropagation": "rprivate", "maskedPaths"`, 1)
		},
		"a memory limit as a string": func(s string) string {
			return strings.Replace(s, `"limit": 268435456`, `"limit": "256M"`, 1)
		},
		"no ociVersion": func(s string) string { return strings.Replace(s, `"ociVersion": "1.1.0"`, `"ociVersion": ""`, 1) },
	} {
		bad := edit(out)
		if bad == out {
			t.Fatalf("%s: the edit did not apply", what)
		}
		if _, err := ocischema.Validate([]byte(bad)); err == nil {
			t.Errorf("%s: validated", what)
		} else {
			t.Logf("%s: %v", what, strings.SplitN(err.Error(), "\n", 2)[0])
		}
	}
}
