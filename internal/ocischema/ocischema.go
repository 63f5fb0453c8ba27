// Package ocischema validates a config.json against the runtime-spec JSON
// schema of the version it declares, for tests. The schemas ship in the
// github.com/opencontainers/runtime-spec module, one release per module
// version; the module's go.mod can hold only one, so the release asked for
// is fetched into the module cache with `go mod download`.
package ocischema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

var (
	mu      sync.Mutex
	schemas = map[string]*jsonschema.Schema{} // ociVersion -> compiled config-schema.json
	release = regexp.MustCompile(`^1\.[0-9]+\.[0-9]+$`)
)

// Validate checks js against the schema of its ociVersion. The error names
// the version and every failing location.
func Validate(js []byte) (version string, err error) {
	var head struct {
		Version string `json:"ociVersion"`
	}
	if err := json.Unmarshal(js, &head); err != nil {
		return "", fmt.Errorf("config.json: %w", err)
	}
	if !release.MatchString(head.Version) {
		return head.Version, fmt.Errorf("config.json: ociVersion %q is not a runtime-spec release", head.Version)
	}
	sch, err := schema(head.Version)
	if err != nil {
		return head.Version, err
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(js))
	if err != nil {
		return head.Version, fmt.Errorf("config.json: %w", err)
	}
	if err := sch.Validate(inst); err != nil {
		return head.Version, fmt.Errorf("config.json against the runtime-spec %s schema: %w", head.Version, err)
	}
	return head.Version, nil
}

func schema(version string) (*jsonschema.Schema, error) {
	mu.Lock()
	defer mu.Unlock()
	if s, ok := schemas[version]; ok {
		return s, nil
	}
	out, err := exec.Command("go", "mod", "download", "-json", "github.com/opencontainers/runtime-spec@v"+version).Output()
	if err != nil {
		return nil, fmt.Errorf("go mod download runtime-spec@v%s: %w\n%s", version, err, out)
	}
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		return nil, fmt.Errorf("go mod download runtime-spec@v%s: %v %s", version, err, mod.Error)
	}
	s, err := jsonschema.NewCompiler().Compile(filepath.Join(mod.Dir, "schema", "config-schema.json"))
	if err != nil {
		return nil, fmt.Errorf("runtime-spec %s schema: %w", version, err)
	}
	schemas[version] = s
	return s, nil
}
