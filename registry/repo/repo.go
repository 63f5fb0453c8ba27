// Package repo is a registry's TUF repository on disk: init, publish, yank
// and key rotation, on go-tuf v2's metadata API. It signs with the
// registry's role keys; whether a module may run is still decided by the
// maintainers' signatures, which publish checks and the client re-checks.
package repo

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/blvm/blvm-sandbox/internal/atomicfile"
	"github.com/blvm/blvm-sandbox/registry/layout"
)

// Role lifetimes. The timestamp is short: a client that cannot get a fresh
// one within a day is being frozen, and says so.
const (
	RootTTL      = 365 * 24 * time.Hour
	TargetsTTL   = 90 * 24 * time.Hour
	SnapshotTTL  = 7 * 24 * time.Hour
	TimestampTTL = 24 * time.Hour
)

// Repo is an opened repository directory:
//
//	DIR/root.json             the root an operator pins (version 1)
//	DIR/keys/<role>-<id>.key  role keys, 0600; the root keys belong offline
//	DIR/pins.json             the maintainer keys pinned per module name
//	DIR/repository/           what is served: metadata/ and blobs/sha256/
type Repo struct {
	Dir string
	Now func() time.Time
	// TimestampTTL overrides the timestamp's lifetime (tests freeze with it).
	TimestampTTL time.Duration

	root      *metadata.Metadata[metadata.RootType]
	targets   *metadata.Metadata[metadata.TargetsType]
	snapshot  *metadata.Metadata[metadata.SnapshotType]
	timestamp *metadata.Metadata[metadata.TimestampType]
	keys      map[string]*roleKey // by TUF key id
}

func (r *Repo) now() time.Time {
	if r.Now != nil {
		return r.Now().UTC()
	}
	return time.Now().UTC()
}

func (r *Repo) metaDir() string { return filepath.Join(r.Dir, "repository", layout.MetadataDir) }
func (r *Repo) blobDir() string { return filepath.Join(r.Dir, "repository", layout.BlobsDir) }
func (r *Repo) keyDir() string  { return filepath.Join(r.Dir, "keys") }

// ServeDir is the directory a server, or any static file server, serves.
func ServeDir(dir string) string { return filepath.Join(dir, "repository") }

// Init creates a repository in dir (which must be empty or missing) with
// an m-of-n root and one online key each for targets, snapshot and
// timestamp, and writes dir/root.json.
func Init(dir string, m, n int) (*Repo, error) {
	if m < 1 || n < m || n > 16 {
		return nil, fmt.Errorf("registry init: root threshold %d-of-%d: want 1 <= m <= n <= 16", m, n)
	}
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return nil, fmt.Errorf("registry init: %s is not empty", dir)
	}
	r := &Repo{Dir: dir, keys: map[string]*roleKey{}}
	for _, d := range []string{r.keyDir(), r.metaDir(), r.blobDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	os.Chmod(r.keyDir(), 0o700)
	now := r.now()
	r.root = metadata.Root(now.Add(RootTTL))
	r.root.Signed.ConsistentSnapshot = true
	for _, role := range []string{metadata.ROOT, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP} {
		count := 1
		if role == metadata.ROOT {
			count = n
			r.root.Signed.Roles[role].Threshold = m
		}
		for range count {
			if _, err := r.addKey(role); err != nil {
				return nil, err
			}
		}
	}
	r.targets = metadata.Targets(now.Add(TargetsTTL))
	r.snapshot = metadata.Snapshot(now.Add(SnapshotTTL))
	r.timestamp = metadata.Timestamp(now.Add(TimestampTTL))
	if err := r.writeRoot(); err != nil {
		return nil, err
	}
	if err := atomicWrite(filepath.Join(dir, "pins.json"), []byte("{}\n")); err != nil {
		return nil, err
	}
	if err := r.commit(false); err != nil {
		return nil, err
	}
	src := filepath.Join(r.metaDir(), "1.root.json")
	data, err := os.ReadFile(src)
	if err != nil {
		return nil, err
	}
	return r, atomicWrite(filepath.Join(dir, "root.json"), data)
}

func (r *Repo) addKey(role string) (*roleKey, error) {
	tmp := filepath.Join(r.keyDir(), fmt.Sprintf(".new-%s-%d.key", role, time.Now().UnixNano()))
	k, err := newKey(tmp)
	if err != nil {
		return nil, err
	}
	final := filepath.Join(r.keyDir(), fmt.Sprintf("%s-%s.key", role, k.id()[:16]))
	if err := os.Rename(tmp, final); err != nil {
		return nil, err
	}
	k.file = final
	tk, err := k.tufKey()
	if err != nil {
		return nil, err
	}
	if err := r.root.Signed.AddKey(tk, role); err != nil {
		return nil, err
	}
	r.keys[k.id()] = k
	return k, nil
}

// Open reads the repository in dir: the newest root, the current
// timestamp, and the snapshot and targets it names.
func Open(dir string) (*Repo, error) {
	r := &Repo{Dir: dir, keys: map[string]*roleKey{}}
	var err error
	if r.root, err = metadata.Root().FromFile(filepath.Join(r.metaDir(), "root.json")); err != nil {
		return nil, fmt.Errorf("registry %s: %w", dir, err)
	}
	if r.timestamp, err = metadata.Timestamp().FromFile(filepath.Join(r.metaDir(), "timestamp.json")); err != nil {
		return nil, fmt.Errorf("registry %s: %w", dir, err)
	}
	sv := r.timestamp.Signed.Meta["snapshot.json"].Version
	if r.snapshot, err = metadata.Snapshot().FromFile(filepath.Join(r.metaDir(), fmt.Sprintf("%d.snapshot.json", sv))); err != nil {
		return nil, fmt.Errorf("registry %s: %w", dir, err)
	}
	tv := r.snapshot.Signed.Meta["targets.json"].Version
	if r.targets, err = metadata.Targets().FromFile(filepath.Join(r.metaDir(), fmt.Sprintf("%d.targets.json", tv))); err != nil {
		return nil, fmt.Errorf("registry %s: %w", dir, err)
	}
	ents, err := os.ReadDir(r.keyDir())
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".key") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		k, err := readKey(filepath.Join(r.keyDir(), e.Name()))
		if err != nil {
			return nil, err
		}
		r.keys[k.id()] = k
	}
	return r, nil
}

// Entries returns every module version in the current targets.
func (r *Repo) Entries() ([]layout.Entry, error) { return EntriesOf(r.targets) }

// EntriesOf decodes the entries of a targets role, sorted by path.
func EntriesOf(t *metadata.Metadata[metadata.TargetsType]) ([]layout.Entry, error) {
	var out []layout.Entry
	for _, p := range slices.Sorted(mapsKeys(t.Signed.Targets)) {
		e, err := EntryOf(p, t.Signed.Targets[p])
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// EntryOf decodes one target's custom data and checks that it names the
// target it sits under.
func EntryOf(path string, tf *metadata.TargetFiles) (layout.Entry, error) {
	var e layout.Entry
	if tf.Custom == nil {
		return e, fmt.Errorf("target %q: no custom data", path)
	}
	if err := json.Unmarshal(*tf.Custom, &e); err != nil {
		return e, fmt.Errorf("target %q: custom: %w", path, err)
	}
	if err := layout.CheckName(e.Name, e.Version); err != nil {
		return e, fmt.Errorf("target %q: %w", path, err)
	}
	if layout.TargetPath(e.Name, e.Version) != path {
		return e, fmt.Errorf("target %q names %s %s", path, e.Name, e.Version)
	}
	return e, nil
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// sign signs md with every key the root lists for role that this
// repository holds; it fails when they do not reach the role's threshold.
func sign[T metadata.Roles](r *Repo, root *metadata.Metadata[metadata.RootType], role string, md *metadata.Metadata[T]) error {
	md.ClearSignatures()
	ro := root.Signed.Roles[role]
	signed := 0
	for _, id := range ro.KeyIDs {
		k, ok := r.keys[id]
		if !ok {
			continue
		}
		s, err := k.signer()
		if err != nil {
			return err
		}
		if _, err := md.Sign(s); err != nil {
			return err
		}
		signed++
	}
	if signed < ro.Threshold {
		return fmt.Errorf("registry: %s: %d of the %d keys it needs are in %s", role, signed, ro.Threshold, r.keyDir())
	}
	return nil
}

func (r *Repo) writeRoot() error {
	if err := sign(r, r.root, metadata.ROOT, r.root); err != nil {
		return err
	}
	data, err := r.root.ToBytes(true)
	if err != nil {
		return err
	}
	if err := atomicWrite(filepath.Join(r.metaDir(), fmt.Sprintf("%d.root.json", r.root.Signed.Version)), data); err != nil {
		return err
	}
	return atomicWrite(filepath.Join(r.metaDir(), "root.json"), data)
}

// commit signs and writes targets (a new version when bump), snapshot and
// timestamp, in the order a reader needs them: a client never sees a
// timestamp whose snapshot is not yet on disk.
func (r *Repo) commit(bump bool) error {
	now := r.now()
	if bump {
		r.targets.Signed.Version++
		r.targets.Signed.Expires = now.Add(TargetsTTL)
	}
	if err := sign(r, r.root, metadata.TARGETS, r.targets); err != nil {
		return err
	}
	tdata, err := r.targets.ToBytes(true)
	if err != nil {
		return err
	}
	if err := atomicWrite(filepath.Join(r.metaDir(), fmt.Sprintf("%d.targets.json", r.targets.Signed.Version)), tdata); err != nil {
		return err
	}
	if bump || r.snapshot.Signed.Meta["targets.json"].Version != r.targets.Signed.Version {
		r.snapshot.Signed.Version++
	}
	r.snapshot.Signed.Expires = now.Add(SnapshotTTL)
	r.snapshot.Signed.Meta["targets.json"] = metaFile(r.targets.Signed.Version, tdata)
	if err := sign(r, r.root, metadata.SNAPSHOT, r.snapshot); err != nil {
		return err
	}
	sdata, err := r.snapshot.ToBytes(true)
	if err != nil {
		return err
	}
	if err := atomicWrite(filepath.Join(r.metaDir(), fmt.Sprintf("%d.snapshot.json", r.snapshot.Signed.Version)), sdata); err != nil {
		return err
	}
	return r.writeTimestamp(sdata)
}

func (r *Repo) writeTimestamp(sdata []byte) error {
	ttl := TimestampTTL
	if r.TimestampTTL != 0 {
		ttl = r.TimestampTTL
	}
	r.timestamp.Signed.Version++
	r.timestamp.Signed.Expires = r.now().Add(ttl)
	r.timestamp.Signed.Meta["snapshot.json"] = metaFile(r.snapshot.Signed.Version, sdata)
	if err := sign(r, r.root, metadata.TIMESTAMP, r.timestamp); err != nil {
		return err
	}
	data, err := r.timestamp.ToBytes(true)
	if err != nil {
		return err
	}
	return atomicWrite(filepath.Join(r.metaDir(), "timestamp.json"), data)
}

// Refresh re-signs the timestamp alone: what a registry does on a timer so
// that clients can tell it is alive.
func (r *Repo) Refresh() error {
	sdata, err := os.ReadFile(filepath.Join(r.metaDir(), fmt.Sprintf("%d.snapshot.json", r.snapshot.Signed.Version)))
	if err != nil {
		return err
	}
	return r.writeTimestamp(sdata)
}

// Versions reports the current root, targets, snapshot and timestamp versions.
func (r *Repo) Versions() (root, targets, snapshot, timestamp int64) {
	return r.root.Signed.Version, r.targets.Signed.Version, r.snapshot.Signed.Version, r.timestamp.Signed.Version
}

func metaFile(version int64, data []byte) *metadata.MetaFiles {
	sum := sha256.Sum256(data)
	mf := metadata.MetaFile(version)
	mf.Length = int64(len(data))
	mf.Hashes = metadata.Hashes{"sha256": sum[:]}
	return mf
}

// Rotate replaces the keys of role with new ones and writes the next root,
// signed by the old root keys (their threshold) and, for a root rotation,
// the new ones too, so that a client walks from any earlier root to it.
// The other roles are re-signed under the new root.
func (r *Repo) Rotate(role string) error {
	if !slices.Contains([]string{metadata.ROOT, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP}, role) {
		return fmt.Errorf("registry rotate: role %q: want root, targets, snapshot or timestamp", role)
	}
	old := slices.Clone(r.root.Signed.Roles[role].KeyIDs)
	oldRoot, err := metadata.Root().FromBytes(mustBytes(r.root))
	if err != nil {
		return err
	}
	for range len(old) {
		if _, err := r.addKey(role); err != nil {
			return err
		}
	}
	for _, id := range old {
		if err := r.root.Signed.RevokeKey(id, role); err != nil {
			return fmt.Errorf("registry rotate %s: %w", role, err)
		}
	}
	r.root.Signed.Version++
	r.root.Signed.Expires = r.now().Add(RootTTL)
	// Signed by the new root's keys (writeRoot) and by the old root's.
	if err := sign(r, r.root, metadata.ROOT, r.root); err != nil {
		return err
	}
	newSigs := r.root.Signatures
	if err := sign(r, oldRoot, metadata.ROOT, r.root); err != nil {
		return err
	}
	for _, s := range newSigs {
		if !slices.ContainsFunc(r.root.Signatures, func(o metadata.Signature) bool { return o.KeyID == s.KeyID }) {
			r.root.Signatures = append(r.root.Signatures, s)
		}
	}
	data, err := r.root.ToBytes(true)
	if err != nil {
		return err
	}
	if err := atomicWrite(filepath.Join(r.metaDir(), fmt.Sprintf("%d.root.json", r.root.Signed.Version)), data); err != nil {
		return err
	}
	if err := atomicWrite(filepath.Join(r.metaDir(), "root.json"), data); err != nil {
		return err
	}
	return r.commit(true)
}

func mustBytes[T metadata.Roles](md *metadata.Metadata[T]) []byte {
	b, _ := md.ToBytes(false)
	return b
}

func atomicWrite(path string, data []byte) error {
	return atomicfile.WriteFile(path, data, 0o644)
}

func digestOf(data []byte) layout.Digest {
	sum := sha256.Sum256(data)
	return layout.Digest{Hash: "sha256:" + hex.EncodeToString(sum[:]), Size: int64(len(data))}
}
