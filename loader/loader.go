// Package loader takes a module directory through Verification and into
// the shape the runtime runs: the verified store entry, the granted
// capabilities, the compiled policy and the merged config. It decides
// nothing itself; each step is the package that owns it.
package loader

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/blvm/blvm-sandbox/capabilities"
	"github.com/blvm/blvm-sandbox/internal/safefile"
	"github.com/blvm/blvm-sandbox/manifest"
	"github.com/blvm/blvm-sandbox/nodeconfig"
	"github.com/blvm/blvm-sandbox/policy"
	"github.com/blvm/blvm-sandbox/verify"
)

// ConfigFileName is the module's own config file in its directory.
const ConfigFileName = manifest.ConfigFileName

// Options for Prepare. Root "" means the node config's [paths] root.
type Options struct {
	Root           string
	Host           policy.Host
	AllowDowngrade bool
	Now            time.Time
	Catalog        *capabilities.Catalog // nil: the shipped catalog
}

// Prepared is a module ready to run.
type Prepared struct {
	Dir          string
	Manifest     *manifest.Manifest
	Verified     *verify.Result
	Capabilities *capabilities.Set
	Policy       *policy.Policy
	Config       []byte   // the merged config, TOML
	Warnings     []string // config keys the module's schema does not name
	// ManifestSource is module.toml exactly as read and parsed; install
	// writes these bytes, never a second read of the file.
	ManifestSource []byte
}

// Prepare verifies the module in dir under cfg, resolves its capabilities,
// compiles its policy and merges its config. Any refusal names the check.
//
// Every file is read from dir once, through safefile: module.toml here, the
// shipped config.toml and the binary by verify. The config merged is the
// bytes verify hashed against [config] (Result.Config), never a re-read.
func Prepare(dir string, cfg *nodeconfig.Config, opt Options) (*Prepared, error) {
	path := filepath.Join(dir, manifest.FileName)
	src, err := safefile.ReadFile(dir, manifest.FileName, safefile.MaxTOML)
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	m, err := manifest.ParseBytes(path, src)
	if err != nil {
		return nil, err
	}
	cat := opt.Catalog
	if cat == nil {
		if cat, err = capabilities.Default(); err != nil {
			return nil, err
		}
	}
	set, err := cat.Resolve(m, cfg)
	if err != nil {
		return nil, fmt.Errorf("%s %s refused: %w", m.Name, m.Version, err)
	}
	res, err := verify.Verify(dir, m, cfg, verify.Options{Root: opt.Root, Now: opt.Now, AllowDowngrade: opt.AllowDowngrade})
	if err != nil {
		return nil, fmt.Errorf("%s %s refused: %w", m.Name, m.Version, err)
	}
	p, err := policy.Compile(m, set, cfg, opt.Host)
	if err != nil {
		return nil, fmt.Errorf("%s %s: compile policy: %w", m.Name, m.Version, err)
	}
	merged, warnings, err := MergeConfig(filepath.Join(dir, ConfigFileName), res.Config, m, cfg)
	if err != nil {
		return nil, err
	}
	return &Prepared{
		Dir: dir, Manifest: m, Verified: res, Capabilities: set, Policy: p,
		Config: merged, Warnings: warnings, ManifestSource: src,
	}, nil
}
