package client

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/blvm/blvm-sandbox/internal/atomicfile"
	"github.com/blvm/blvm-sandbox/nodeconfig"
	"github.com/blvm/blvm-sandbox/registry/layout"
)

// The verification cache remembers that a manifest met the operator's
// threshold, keyed by (manifest digest, pinned-key-set hash, threshold),
// so that search, info and outdated can say which versions this node
// would accept without re-checking signatures. Installs never rely on it:
// Stage always runs loader.Prepare. It is dropped whenever the operator's
// keys or thresholds change.

// keySetHash digests everything in cfg that decides whether a signature
// counts for name.
func keySetHash(cfg *nodeconfig.Config, name string) string {
	h := sha256.New()
	mod := cfg.ModuleSettings(name)
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00", cfg.Trust.Threshold, mod.Threshold, strings.Join(mod.Maintainers, ","))
	var keys []string
	for _, k := range cfg.Trust.Maintainers {
		keys = append(keys, k.Name+"="+strings.ToLower(k.PublicKey))
	}
	slices.Sort(keys)
	fmt.Fprint(h, strings.Join(keys, "\x00"))
	return hex.EncodeToString(h.Sum(nil))
}

// trustHash digests the whole trust configuration: a change drops the cache.
func trustHash(cfg *nodeconfig.Config) string {
	h := sha256.New()
	fmt.Fprint(h, keySetHash(cfg, ""))
	for _, n := range slices.Sorted(keysOf(cfg.Modules)) {
		fmt.Fprintf(h, "\x00%s=%s", n, keySetHash(cfg, n))
	}
	return hex.EncodeToString(h.Sum(nil))
}

func keysOf(m map[string]*nodeconfig.Module) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func (c *Client) vcacheDir(cfg *nodeconfig.Config) string {
	dir := filepath.Join(c.opt.CacheDir, "verified")
	th := trustHash(cfg)
	if data, err := os.ReadFile(filepath.Join(dir, "trust")); err != nil || string(data) != th {
		os.RemoveAll(dir)
		os.MkdirAll(dir, 0o700)
		atomicfile.WriteFile(filepath.Join(dir, "trust"), []byte(th), 0o600)
	}
	return dir
}

func vkey(e layout.Entry, cfg *nodeconfig.Config) string {
	m, _, _, _ := cfg.ThresholdFor(e.Name)
	sum := sha256.Sum256([]byte(e.Manifest.Hash + "\x00" + keySetHash(cfg, e.Name) + "\x00" + fmt.Sprint(m)))
	return hex.EncodeToString(sum[:])
}

func (c *Client) rememberVerified(e layout.Entry, cfg *nodeconfig.Config) {
	dir := c.vcacheDir(cfg)
	atomicfile.WriteFile(filepath.Join(dir, vkey(e, cfg)), []byte(e.Name+" "+e.Version+"\n"), 0o600)
}

// Verified reports whether this node verified e's manifest under its
// current keys before. Advisory only.
func (c *Client) Verified(e layout.Entry, cfg *nodeconfig.Config) bool {
	_, err := os.Stat(filepath.Join(c.vcacheDir(cfg), vkey(e, cfg)))
	return err == nil
}
