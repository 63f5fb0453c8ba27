package repo

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/blvm/blvm-sandbox/internal/safefile"
	"github.com/blvm/blvm-sandbox/manifest"
	"github.com/blvm/blvm-sandbox/nodeconfig"
	"github.com/blvm/blvm-sandbox/registry/layout"
	"github.com/blvm/blvm-sandbox/registry/market"
	"github.com/blvm/blvm-sandbox/verify"
)

// Pin is the maintainer key set a repository pins for one module name.
type Pin struct {
	Threshold   string                  `json:"threshold"`
	Maintainers []nodeconfig.Maintainer `json:"maintainers"`
}

func (r *Repo) pins() (map[string]Pin, error) {
	data, err := os.ReadFile(filepath.Join(r.Dir, "pins.json"))
	if err != nil {
		return nil, err
	}
	pins := map[string]Pin{}
	if err := json.Unmarshal(data, &pins); err != nil {
		return nil, fmt.Errorf("%s/pins.json: %w", r.Dir, err)
	}
	return pins, nil
}

// checkPin runs the project's signature check for m under one key set.
func checkPin(m *manifest.Manifest, p Pin) error {
	cfg := &nodeconfig.Config{Trust: nodeconfig.Trust{Threshold: p.Threshold, Maintainers: p.Maintainers}}
	_, err := verify.CheckSignatures(m, cfg)
	return err
}

// pinOf is the key set a manifest declares in [signatures].
func pinOf(m *manifest.Manifest) Pin {
	p := Pin{}
	if m.Signatures == nil {
		return p
	}
	p.Threshold = m.Signatures.Threshold
	for _, s := range m.Signatures.Maintainers {
		p.Maintainers = append(p.Maintainers, nodeconfig.Maintainer{Name: s.Name, PublicKey: s.PublicKey})
	}
	return p
}

func union(p, d Pin) Pin {
	out := Pin{Maintainers: slices.Clone(p.Maintainers)}
	for _, k := range d.Maintainers {
		if slices.ContainsFunc(out.Maintainers, func(o nodeconfig.Maintainer) bool { return strings.EqualFold(o.PublicKey, k.PublicKey) }) {
			continue
		}
		name := k.Name
		for slices.ContainsFunc(out.Maintainers, func(o nodeconfig.Maintainer) bool { return o.Name == name }) {
			name += "'"
		}
		out.Maintainers = append(out.Maintainers, nodeconfig.Maintainer{Name: name, PublicKey: k.PublicKey})
	}
	mm, _, _ := manifest.ParseThreshold(p.Threshold)
	out.Threshold = fmt.Sprintf("%d-of-%d", mm, len(out.Maintainers))
	return out
}

// Publish adds the module version in moduleDir. It is refused unless the
// manifest's signatures meet the threshold of the keys the repository
// pins for its name (the first publisher of a name pins the set its
// manifest declares; a new set needs the old threshold as well), and the
// binary and config are the ones [binary] and [config] pin. A published
// version is immutable: publishing it again with other bytes is refused.
func (r *Repo) Publish(moduleDir string) (layout.Entry, error) {
	var e layout.Entry
	src, err := safefile.ReadFile(moduleDir, manifest.FileName, safefile.MaxTOML)
	if err != nil {
		return e, fmt.Errorf("publish: %w", err)
	}
	m, err := manifest.ParseBytes(filepath.Join(moduleDir, manifest.FileName), src)
	if err != nil {
		return e, fmt.Errorf("publish: %w", err)
	}
	if err := layout.CheckName(m.Name, m.Version); err != nil {
		return e, fmt.Errorf("publish: %w", err)
	}
	pins, err := r.pins()
	if err != nil {
		return e, fmt.Errorf("publish: %w", err)
	}
	declared := pinOf(m)
	pin, pinned := pins[m.Name]
	if !pinned {
		// The first publisher pins the keys its manifest lists, with the
		// manifest's m over them.
		mm, _, err := manifest.ParseThreshold(declared.Threshold)
		if err != nil {
			return e, fmt.Errorf("publish %s %s: [signatures] threshold: %w", m.Name, m.Version, err)
		}
		pin = Pin{Threshold: fmt.Sprintf("%d-of-%d", min(mm, max(len(declared.Maintainers), 1)), len(declared.Maintainers)), Maintainers: declared.Maintainers}
	}
	if err := checkPin(m, pin); err != nil {
		return e, fmt.Errorf("publish %s %s: against the keys pinned for %s: %w", m.Name, m.Version, m.Name, err)
	}
	// Keys the manifest adds join the pinned set: the old threshold has
	// just been met, which is what a key change needs.
	pin = union(pin, declared)
	// A paid module: both payment codes BIP47, and the author's
	// payment_signature over the terms by the key of author_payment_code.
	if err := market.CheckPaymentSignature(m); err != nil {
		return e, fmt.Errorf("publish: %w", err)
	}
	binPath := filepath.Join(moduleDir, m.EntryPoint)
	bin, err := readPinned(binPath, m.Binary.Hash, m.Binary.Size)
	if err != nil {
		return e, fmt.Errorf("publish %s %s: binary: %w", m.Name, m.Version, err)
	}
	var cfg []byte
	if m.Config != nil {
		if cfg, err = readPinned(filepath.Join(moduleDir, manifest.ConfigFileName), m.Config.Hash, m.Config.Size); err != nil {
			return e, fmt.Errorf("publish %s %s: config: %w", m.Name, m.Version, err)
		}
	}
	md := digestOf(src)
	e = layout.EntryFrom(m, md)
	path := layout.TargetPath(m.Name, m.Version)
	if old, ok := r.targets.Signed.Targets[path]; ok {
		oe, _ := EntryOf(path, old)
		if oe.Manifest.Hash != md.Hash {
			return e, fmt.Errorf("publish %s %s: already published with manifest %s; versions are immutable, publish a new one", m.Name, m.Version, oe.Manifest.Hash)
		}
		return oe, nil
	}
	for _, blob := range [][]byte{src, bin, cfg} {
		if blob != nil {
			if err := r.putBlob(blob); err != nil {
				return e, err
			}
		}
	}
	if err := r.setTarget(e, src); err != nil {
		return e, err
	}
	pins[m.Name] = pin
	pdata, _ := json.MarshalIndent(pins, "", "  ")
	if err := atomicWrite(filepath.Join(r.Dir, "pins.json"), append(pdata, '\n')); err != nil {
		return e, err
	}
	return e, r.commit(true)
}

func (r *Repo) setTarget(e layout.Entry, manifestBytes []byte) error {
	custom, err := json.Marshal(e)
	if err != nil {
		return err
	}
	raw := json.RawMessage(custom)
	path := layout.TargetPath(e.Name, e.Version)
	tf, err := metadata.TargetFile().FromBytes(path, manifestBytes, "sha256")
	if err != nil {
		return err
	}
	tf.Custom = &raw
	r.targets.Signed.Targets[path] = tf
	return nil
}

func readPinned(path, hash string, size int64) ([]byte, error) {
	f, st, err := safefile.OpenPath(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st.Size() != size {
		return nil, fmt.Errorf("%s is %d bytes, the manifest pins %d", path, st.Size(), size)
	}
	data := make([]byte, size)
	if _, err := f.ReadAt(data, 0); err != nil && size > 0 {
		return nil, err
	}
	if d := digestOf(data); d.Hash != hash {
		return nil, fmt.Errorf("%s is %s, the manifest pins %s", path, d.Hash, hash)
	}
	return data, nil
}

func (r *Repo) putBlob(data []byte) error {
	d := digestOf(data)
	p := filepath.Join(r.blobDir(), d.Hash[7:])
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	return atomicWrite(p, data)
}

// Yank marks a version yanked: still served (a pinned install can name it
// with --allow-yanked), never chosen by resolution.
func (r *Repo) Yank(name, version string) error {
	if err := layout.CheckName(name, version); err != nil {
		return fmt.Errorf("yank: %w", err)
	}
	path := layout.TargetPath(name, version)
	tf, ok := r.targets.Signed.Targets[path]
	if !ok {
		return fmt.Errorf("yank: %s %s is not published", name, version)
	}
	e, err := EntryOf(path, tf)
	if err != nil {
		return err
	}
	e.Yanked = true
	custom, _ := json.Marshal(e)
	raw := json.RawMessage(custom)
	tf.Custom = &raw
	return r.commit(true)
}

// Remove drops a version from the index (a takedown); its blobs stay, so
// a client holding an older snapshot cannot be told it never existed,
// but no new snapshot offers it.
func (r *Repo) Remove(name, version string) error {
	if err := layout.CheckName(name, version); err != nil {
		return fmt.Errorf("remove: %w", err)
	}
	path := layout.TargetPath(name, version)
	if _, ok := r.targets.Signed.Targets[path]; !ok {
		return fmt.Errorf("remove: %s %s is not published", name, version)
	}
	delete(r.targets.Signed.Targets, path)
	return r.commit(true)
}
