package manager

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/blvm/blvm-sandbox/manifest"
)

// Candidate is a module found by Discovery, not yet verified.
type Candidate struct {
	Dir      string
	Manifest *manifest.Manifest // nil when Err is set
	Err      error              // why its manifest could not be read
}

// Source finds modules. The modules dir is one; the registry client plugs
// in as another, delivering verified downloads into a directory.
type Source interface {
	Discover(ctx context.Context) ([]Candidate, error)
}

// DirSource discovers the modules dir: one folder per module, each with its
// module.toml. A folder's name must be its module's name.
type DirSource struct{ Dir string }

func (d DirSource) Discover(ctx context.Context) ([]Candidate, error) {
	entries, err := os.ReadDir(d.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("modules dir: %w", err)
	}
	var out []Candidate
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(d.Dir, e.Name())
		path := filepath.Join(dir, manifest.FileName)
		// Lstat: whatever stands at module.toml (a symlink or a FIFO too)
		// makes a candidate, and Parse's safefile read says why it is
		// refused instead of hanging on it or following it.
		if _, err := os.Lstat(path); err != nil {
			continue // not a module folder
		}
		c := Candidate{Dir: dir}
		c.Manifest, c.Err = manifest.Parse(path)
		if c.Err == nil && c.Manifest.Name != e.Name() {
			c.Err = fmt.Errorf("%s: name %q does not match its folder %q", path, c.Manifest.Name, e.Name())
			c.Manifest = nil
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Dir < out[j].Dir })
	return out, nil
}
