// Package layout is what the registry's server and client agree on: where
// files live in a repository, and what a module version's TUF target says.
package layout

import (
	"encoding/json"
	"fmt"
	"regexp"

	"github.com/blvm/blvm-sandbox/manifest"
)

// Paths inside a served repository. A plain static file server serving the
// repository directory is a complete registry for the client.
const (
	MetadataDir = "metadata"     // TUF metadata, consistent snapshots
	BlobsDir    = "blobs/sha256" // content-addressed manifests, binaries, configs
)

// Digest pins a blob by SHA-256 and size.
type Digest struct {
	Hash string `json:"hash"` // "sha256:<64 hex>"
	Size int64  `json:"size"`
}

// Entry is a module version's target custom data. The target itself is the
// manifest (TUF binds its length and hash); the rest repeats what the
// manifest says, so that search and resolution need no blob. The client
// checks that the manifest agrees with it before using either.
type Entry struct {
	Name                 string            `json:"name"`
	Version              string            `json:"version"`
	Manifest             Digest            `json:"manifest"`
	Binary               Digest            `json:"binary"`
	Config               *Digest           `json:"config,omitempty"`
	EntryPoint           string            `json:"entry_point"`
	Description          string            `json:"description,omitempty"`
	Dependencies         map[string]string `json:"dependencies,omitempty"`
	OptionalDependencies map[string]string `json:"optional_dependencies,omitempty"`
	Node                 string            `json:"blvm_node,omitempty"` // the blvm-node constraint
	Capabilities         []string          `json:"capabilities,omitempty"`
	PriceSats            int64             `json:"price_sats,omitempty"`
	Yanked               bool              `json:"yanked,omitempty"`
}

// TargetPath is the TUF target name of a module version.
func TargetPath(name, version string) string { return name + "/" + version }

// EntryFrom builds the entry of manifest m, whose bytes digest to md.
func EntryFrom(m *manifest.Manifest, md Digest) Entry {
	e := Entry{
		Name: m.Name, Version: m.Version, Manifest: md, EntryPoint: m.EntryPoint,
		Description: m.Description, Capabilities: m.Capabilities,
		OptionalDependencies: m.OptionalDependencies,
	}
	if m.Binary != nil {
		e.Binary = Digest{Hash: m.Binary.Hash, Size: m.Binary.Size}
	}
	if m.Config != nil {
		e.Config = &Digest{Hash: m.Config.Hash, Size: m.Config.Size}
	}
	for k, v := range m.Dependencies {
		if k == "blvm-node" {
			e.Node = v
			continue
		}
		if e.Dependencies == nil {
			e.Dependencies = map[string]string{}
		}
		e.Dependencies[k] = v
	}
	if m.Payment != nil && m.Payment.Required {
		e.PriceSats = m.Payment.PriceSats
	}
	return e
}

// Agrees reports how manifest m differs from entry e ("" when it does not).
func (e Entry) Agrees(m *manifest.Manifest) string {
	want := EntryFrom(m, e.Manifest)
	want.Yanked = e.Yanked
	a, _ := json.Marshal(want)
	b, _ := json.Marshal(e)
	if string(a) != string(b) {
		return fmt.Sprintf("the manifest says %s, the signed index says %s", a, b)
	}
	return ""
}

var hexRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// ValidHex reports whether s is a lowercase SHA-256 hex digest: the only
// blob names a server serves or a client asks for.
func ValidHex(s string) bool { return hexRE.MatchString(s) }

// HexOf returns the hex of "sha256:<hex>", or an error naming the value.
func HexOf(d string) (string, error) {
	if len(d) == 71 && d[:7] == "sha256:" && ValidHex(d[7:]) {
		return d[7:], nil
	}
	return "", fmt.Errorf("digest %q: want sha256:<64 lowercase hex>", d)
}

// CheckName refuses a module name or version that could name anything but
// one module version: the manifest's own rules, which allow no '/', '..'
// or NUL.
func CheckName(name, version string) error {
	if !manifest.ValidModuleName(name) {
		return fmt.Errorf("module name %q is not valid", name)
	}
	if version != "" {
		if _, err := manifest.ParseVersion(version); err != nil {
			return fmt.Errorf("module %s: version %q: %v", name, version, err)
		}
	}
	return nil
}
