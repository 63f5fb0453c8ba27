package manifest

import "github.com/blvm/blvm-sandbox/internal/safefile"

// MaxConfigSize is the largest config.toml [config] may pin: the limit the
// runtime reads TOML from a module dir with.
const MaxConfigSize = safefile.MaxTOML

func (v *validator) config(c *Config) {
	if !hashRE().MatchString(c.Hash) {
		v.add("config.hash", "%q: want \"sha256:\" and 64 lowercase hex digits", c.Hash)
	}
	if c.Size < 0 || c.Size > MaxConfigSize {
		v.add("config.size", "%d: want a size in bytes between 0 and %d", c.Size, MaxConfigSize)
	}
}
