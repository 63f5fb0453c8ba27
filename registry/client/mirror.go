package client

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/blvm/blvm-sandbox/internal/atomicfile"
	"github.com/blvm/blvm-sandbox/registry/layout"
)

// Mirror copies one consistent snapshot of the registry opt names into
// dir, verified as a client verifies it: the root chain, the timestamp,
// snapshot and targets that were trusted together, and every blob they
// pin. The client then installs from file://dir, with no network. The
// timestamp is copied as is, so the mirror is judged fresh or stale by
// its expiry like any other copy.
func Mirror(opt Options, dir string) (*Client, error) {
	c, err := Open(opt)
	if err != nil {
		return nil, err
	}
	meta := filepath.Join(dir, layout.MetadataDir)
	blobs := filepath.Join(dir, layout.BlobsDir)
	for _, d := range []string{meta, blobs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	read := func(role string) ([]byte, error) { return os.ReadFile(filepath.Join(c.metaDir(), role+".json")) }
	root, err := read(metadata.ROOT)
	if err != nil {
		return nil, err
	}
	rm, err := metadata.Root().FromBytes(root)
	if err != nil {
		return nil, err
	}
	for v := int64(1); v < rm.Signed.Version; v++ {
		name := fmt.Sprintf("%d.root.json", v)
		data, err := c.fetch.DownloadFile(joinURL(opt.URL, layout.MetadataDir, name), 512000, 0)
		if err != nil {
			return nil, fmt.Errorf("mirror %s: %w", name, err)
		}
		if err := atomicfile.WriteFile(filepath.Join(meta, name), data, 0o644); err != nil {
			return nil, err
		}
	}
	ts, err := read(metadata.TIMESTAMP)
	if err != nil {
		return nil, err
	}
	snap, err := read(metadata.SNAPSHOT)
	if err != nil {
		return nil, err
	}
	targ, err := read(metadata.TARGETS)
	if err != nil {
		return nil, err
	}
	sm, err := metadata.Snapshot().FromBytes(snap)
	if err != nil {
		return nil, err
	}
	for _, e := range c.Entries {
		ds := []layout.Digest{e.Manifest, e.Binary}
		if e.Config != nil {
			ds = append(ds, *e.Config)
		}
		for _, d := range ds {
			h, err := layout.HexOf(d.Hash)
			if err != nil {
				return nil, err
			}
			p, err := c.Blob(h, d.Size, nil)
			if err != nil {
				return nil, fmt.Errorf("mirror %s %s: %w", e.Name, e.Version, err)
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return nil, err
			}
			if err := atomicfile.WriteFile(filepath.Join(blobs, h), data, 0o644); err != nil {
				return nil, err
			}
		}
	}
	// Metadata last, timestamp very last: a reader of a half-written
	// mirror sees the previous consistent state or none.
	files := []struct {
		name string
		data []byte
	}{
		{fmt.Sprintf("%d.root.json", rm.Signed.Version), root}, {"root.json", root},
		{fmt.Sprintf("%d.targets.json", sm.Signed.Meta["targets.json"].Version), targ},
		{fmt.Sprintf("%d.snapshot.json", sm.Signed.Version), snap},
		{"timestamp.json", ts},
	}
	for _, f := range files {
		if err := atomicfile.WriteFile(filepath.Join(meta, f.name), f.data, 0o644); err != nil {
			return nil, err
		}
	}
	return c, nil
}
