package loader

import (
	"bytes"
	"fmt"
	"maps"
	"path/filepath"
	"slices"

	"github.com/BurntSushi/toml"

	"github.com/blvm/blvm-sandbox/internal/suggest"
	"github.com/blvm/blvm-sandbox/internal/tomlfile"
	"github.com/blvm/blvm-sandbox/manifest"
	"github.com/blvm/blvm-sandbox/nodeconfig"
)

// DatabaseBackendKey is inherited from [node] unless the module's config or
// the operator's [modules.<name>] sets it.
const DatabaseBackendKey = "database_backend"

// MergeConfig overlays the module's own config (file, may be empty) with the
// operator's [modules.<name>] values: the operator wins, key by key, nested
// tables merged. Keys the manifest's config_schema does not name are
// warnings, not errors: the schema documents, the module decides.
func MergeConfig(file string, own []byte, m *manifest.Manifest, node *nodeconfig.Config) ([]byte, []string, error) {
	merged := map[string]any{}
	if len(bytes.TrimSpace(own)) > 0 {
		if _, err := toml.Decode(string(own), &merged); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", file, err)
		}
	}
	if s := node.ModuleSettings(m.Name); s != nil {
		overlay(merged, s.Config)
	}
	if _, ok := merged[DatabaseBackendKey]; !ok && node.Node.DatabaseBackend != "" {
		merged[DatabaseBackendKey] = node.Node.DatabaseBackend
	}
	warnings := SchemaWarnings(m, node, merged)
	var buf bytes.Buffer
	buf.WriteString("# Merged by blvm-sandbox: the module's config.toml, then the node's [modules." + m.Name + "].\n")
	if err := toml.NewEncoder(&buf).Encode(merged); err != nil {
		return nil, nil, fmt.Errorf("%s: merged config: %w", m.Name, err)
	}
	return buf.Bytes(), warnings, nil
}

// SchemaWarnings names each key of config that the manifest's
// config_schema does not name; a key from the operator's [modules.<name>]
// table is located at its line in the node config. It is the one check:
// the load runs it on the merged config, verify and explain on the
// operator's table.
func SchemaWarnings(m *manifest.Manifest, node *nodeconfig.Config, config map[string]any) []string {
	op := node.ModuleSettings(m.Name).Config
	var warnings []string
	for _, k := range slices.Sorted(maps.Keys(config)) {
		if _, ok := m.ConfigSchema[k]; ok || k == DatabaseBackendKey {
			continue
		}
		w := fmt.Sprintf("%s: config key %q is not in its config_schema", m.Name, k)
		if s := suggest.Closest(k, slices.Sorted(maps.Keys(m.ConfigSchema))); s != "" {
			w += fmt.Sprintf(" (did you mean %q?)", s)
		}
		if _, fromOperator := op[k]; fromOperator {
			field := tomlfile.Key("modules", m.Name, k)
			file := nodeconfig.DefaultFileName
			if node.Path != "" {
				file = filepath.Base(node.Path)
			}
			if line := tomlfile.Find(node.Lines, field); line > 0 {
				file = fmt.Sprintf("%s:%d", file, line)
			}
			w = fmt.Sprintf("%s: %s: %s", file, field, w)
		}
		warnings = append(warnings, w)
	}
	return warnings
}

// overlay copies over into base; tables present in both are merged.
func overlay(base, over map[string]any) {
	for k, v := range over {
		if ov, ok := v.(map[string]any); ok {
			if bv, ok := base[k].(map[string]any); ok {
				overlay(bv, ov)
				continue
			}
		}
		base[k] = v
	}
}
