package verify

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/blvm/blvm-sandbox/internal/atomicfile"
	"github.com/blvm/blvm-sandbox/manifest"
)

// maxHighWater bounds the high-water file; it holds one short line per
// module.
const maxHighWater = 4 << 20

// HighWater is the per-module version high-water mark, kept in
// Root/trust/highwater.json as {"module-name": "1.2.3", ...}. It is TUF's
// rollback protection: a signed but older manifest is refused unless the
// operator asks for the downgrade.
type HighWater struct {
	path  string
	marks map[string]string
}

// HighWaterPath returns Root/trust/highwater.json ("" Root means DefaultRoot).
func HighWaterPath(root string) string {
	if root == "" {
		root = DefaultRoot
	}
	return filepath.Join(root, "trust", "highwater.json")
}

// LoadHighWater reads the high-water file under root. A missing file means
// no module has been loaded yet; a corrupt one is an error, never "empty",
// since that would silently re-enable every downgrade.
func LoadHighWater(root string) (*HighWater, error) {
	h := &HighWater{path: HighWaterPath(root), marks: map[string]string{}}
	f, err := os.Open(h.path)
	if errors.Is(err, os.ErrNotExist) {
		return h, nil
	}
	if err != nil {
		return nil, fmt.Errorf("rollback: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxHighWater+1))
	if err != nil {
		return nil, fmt.Errorf("rollback: read %s: %w", h.path, err)
	}
	if len(data) > maxHighWater {
		return nil, fmt.Errorf("rollback: %s is larger than %d bytes", h.path, maxHighWater)
	}
	if err := json.Unmarshal(data, &h.marks); err != nil {
		return nil, fmt.Errorf("rollback: %s is corrupt (%v); fix or restore it, do not delete it", h.path, err)
	}
	if h.marks == nil { // the file said null
		h.marks = map[string]string{}
	}
	for name, v := range h.marks {
		if _, err := manifest.ParseVersion(v); err != nil {
			return nil, fmt.Errorf("rollback: %s: module %s: %v", h.path, name, err)
		}
	}
	return h, nil
}

// Mark returns the highest version recorded for name, or "".
func (h *HighWater) Mark(name string) string { return h.marks[name] }

// Check refuses version when it is below the module's high-water mark,
// unless allowDowngrade. The same version (a reload) is always fine.
func (h *HighWater) Check(name, version string, allowDowngrade bool) error {
	v, err := manifest.ParseVersion(version)
	if err != nil {
		return fmt.Errorf("rollback: %w", err)
	}
	mark := h.marks[name]
	if mark == "" {
		return nil
	}
	hv, err := manifest.ParseVersion(mark)
	if err != nil {
		return fmt.Errorf("rollback: high-water mark of %s: %w", name, err)
	}
	if v.LessThan(hv) && !allowDowngrade {
		return fmt.Errorf("rollback: downgrade from %s to %s refused (pass --allow-downgrade to accept)", mark, version)
	}
	return nil
}

// Record raises name's mark to version when version is higher, and writes
// the file atomically. It never lowers a mark, so a downgrade the operator
// accepted keeps the older version loadable only while they keep accepting.
func (h *HighWater) Record(name, version string) error {
	v, err := manifest.ParseVersion(version)
	if err != nil {
		return fmt.Errorf("rollback: %w", err)
	}
	if mark := h.marks[name]; mark != "" {
		hv, err := manifest.ParseVersion(mark)
		if err == nil && !v.GreaterThan(hv) {
			return nil
		}
	}
	h.marks[name] = version
	return h.save()
}

// save writes the file: temp file, fsync, rename, fsync of the directory,
// so a crash leaves the old file or the new one, never a torn one.
func (h *HighWater) save() error {
	dir := filepath.Dir(h.path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("rollback: %w", err)
	}
	data, err := json.MarshalIndent(h.marks, "", "  ") // map keys sorted: stable diffs
	if err != nil {
		return fmt.Errorf("rollback: %w", err)
	}
	if err := atomicfile.WriteFile(h.path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("rollback: write %s: %w", h.path, err)
	}
	return nil
}

// RecordLoaded raises the high-water mark of module name to version under
// root. The runtime calls it when it loads a module, not Verify: verifying
// (or explaining) a module must not change what may be loaded next. It
// holds an exclusive lock on Root/trust/highwater.lock so two loads cannot
// lose each other's marks.
func RecordLoaded(root, name, version string) error {
	path := HighWaterPath(root)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("rollback: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(filepath.Dir(path), "highwater.lock"), os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("rollback: lock: %w", err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("rollback: lock: %w", err)
	}
	h, err := LoadHighWater(root)
	if err != nil {
		return err
	}
	return h.Record(name, version)
}
