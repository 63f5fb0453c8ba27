package verify

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/blvm/blvm-sandbox/internal/safefile"
	"github.com/blvm/blvm-sandbox/manifest"
)

// checkConfig reads the module's shipped config.toml once, through
// safefile, and holds it to the manifest's [config] pin. It returns the
// bytes it hashed, which are the only bytes the loader may merge.
//
// A config.toml that [config] does not pin is refused rather than ignored:
// its values change what the module does (a voter's votes), and dropping
// them silently would run the module with defaults its maintainers never
// chose. Refusing costs an attacker nothing new (flipping any byte of the
// binary refuses too) and tells the operator at once.
func checkConfig(moduleDir string, m *manifest.Manifest) ([]byte, string, error) {
	path := filepath.Join(moduleDir, manifest.ConfigFileName)
	data, err := safefile.ReadFile(moduleDir, manifest.ConfigFileName, safefile.MaxTOML)
	pin := m.Config
	switch {
	case errors.Is(err, fs.ErrNotExist) && pin == nil:
		return nil, "no " + manifest.ConfigFileName + " shipped, none pinned", nil
	case errors.Is(err, fs.ErrNotExist):
		return nil, "", fmt.Errorf("config: %s is missing; [config] pins %s (%d bytes)", path, pin.Hash, pin.Size)
	case err != nil:
		return nil, "", fmt.Errorf("config: %w", err)
	case pin == nil:
		return nil, "", fmt.Errorf("config: %s is not pinned by [config], so the signatures do not cover it; refused (sign pins it)", path)
	}
	sum := sha256.Sum256(data)
	got := "sha256:" + hex.EncodeToString(sum[:])
	if got != pin.Hash || int64(len(data)) != pin.Size {
		return nil, "", fmt.Errorf("config: %s is %s (%d bytes); [config] pins %s (%d bytes)", path, got, len(data), pin.Hash, pin.Size)
	}
	return data, fmt.Sprintf("%s %s, %d bytes, matches [config]", manifest.ConfigFileName, got, len(data)), nil
}
