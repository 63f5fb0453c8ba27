package nodeconfig

import (
	"net/url"
	"path"
	"time"

	"github.com/blvm/blvm-sandbox/manifest"
)

// Registry is [registry]: where the client finds modules by name, and the
// registry root the operator pins. Authority over what runs stays with
// [trust]; the registry only answers "which versions exist, and are they
// current".
type Registry struct {
	URL            string        `toml:"url"`             // http://, https:// or file:// (a mirror)
	Root           string        `toml:"root"`            // the pinned root.json, an absolute path
	CacheDir       string        `toml:"cache_dir"`       // default ROOT/registry
	MaxStaleness   time.Duration `toml:"max_staleness"`   // offline installs refused past it; default 168h
	MarketplaceKey string        `toml:"marketplace_key"` // secp256k1 key that signs receipts for paid modules
}

// DefaultMaxStaleness is how old the cached registry metadata may be before
// an offline install is refused.
const DefaultMaxStaleness = 7 * 24 * time.Hour

var registryKeys = []string{"url", "root", "cache_dir", "max_staleness", "marketplace_key"}

func (c *Config) validateRegistry(v *validator) {
	r := c.Registry
	if v.defined("registry", "url") || r.URL != "" {
		u, err := url.Parse(r.URL)
		switch {
		case err != nil:
			v.add("registry.url", "%q: %v", r.URL, err)
		case u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "file":
			v.add("registry.url", "%q: want an http://, https:// or file:// URL", r.URL)
		case u.Scheme == "file" && (u.Host != "" || !path.IsAbs(u.Path)):
			v.add("registry.url", "%q: a file URL needs an absolute path and no host (file:///srv/mirror)", r.URL)
		case u.Scheme != "file" && u.Host == "":
			v.add("registry.url", "%q: no host", r.URL)
		}
		if r.Root == "" {
			v.add("registry.root", "required with registry.url: the path of the root.json you pin")
		}
	}
	for _, p := range []struct{ key, value string }{{"root", r.Root}, {"cache_dir", r.CacheDir}} {
		if v.defined("registry", p.key) && (!path.IsAbs(p.value) || path.Clean(p.value) != p.value) {
			v.add("registry."+p.key, "%q: want a clean absolute path", p.value)
		}
	}
	if v.defined("registry", "max_staleness") && r.MaxStaleness <= 0 {
		v.add("registry.max_staleness", "%s: want a positive duration such as \"168h\"", r.MaxStaleness)
	}
	if v.defined("registry", "marketplace_key") {
		if _, err := manifest.ParsePublicKey(r.MarketplaceKey); err != nil {
			v.add("registry.marketplace_key", "%q: %v", r.MarketplaceKey, err)
		}
	}
}

// RegistryCacheDir is [registry] cache_dir, or ROOT/registry when unset.
func (c *Config) RegistryCacheDir() string {
	if c.Registry.CacheDir != "" {
		return c.Registry.CacheDir
	}
	return path.Join(c.Paths.Root, "registry")
}

// RegistryMaxStaleness is [registry] max_staleness, or DefaultMaxStaleness.
func (c *Config) RegistryMaxStaleness() time.Duration {
	if c.Registry.MaxStaleness > 0 {
		return c.Registry.MaxStaleness
	}
	return DefaultMaxStaleness
}
