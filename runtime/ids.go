package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/blvm/blvm-sandbox/internal/atomicfile"
	"github.com/blvm/blvm-sandbox/nodeconfig"
	"github.com/blvm/blvm-sandbox/policy"
)

// Each module's user namespace maps container ids 0..IDsPerModule-1 to its
// own host range, far from the host's real users, so one module can never
// own another's files, even by uid. Ranges are recorded host-wide
// (DefaultUIDRegistry), so that two runtime roots on one host never hand out
// the same range.
const (
	IDsBase      = nodeconfig.DefaultUIDBase // first host id handed out unless Options.UIDBase says otherwise
	IDsPerModule = 1 << 16
	// idsEnd bounds every range: the kernel refuses a mapping that reaches
	// uid 2^32-1 (the invalid uid -1).
	idsEnd = 1<<32 - 1
	// ModuleUID is the uid (and gid) the module runs as inside its user
	// namespace: not 0, so setuid(0) fails even there.
	ModuleUID = policy.ModuleUID
)

// DefaultUIDRegistry is the host-wide record of every range handed out, by
// every runtime root on the host. It must not live under a root: two roots
// would each keep their own and hand out the same ranges.
const DefaultUIDRegistry = "/var/lib/blvm-sandbox-uids/ranges.json"

// IDRange is a module's host uid/gid range (the same numbers for both).
type IDRange struct {
	Base  uint32 `json:"base"`
	Count uint32 `json:"count"`
}

// HostUID is the host uid the module's process runs as.
func (r IDRange) HostUID() int { return int(r.Base) + ModuleUID }

func (r IDRange) end() uint64 { return uint64(r.Base) + uint64(r.Count) } // exclusive

func (r IDRange) overlaps(lo, hi uint64) bool { return uint64(r.Base) < hi && lo < r.end() }

func (r IDRange) String() string { return fmt.Sprintf("%d-%d", r.Base, r.end()-1) }

// checkUIDBase refuses a base that is not a multiple of the range size or
// leaves no room for one range.
func checkUIDBase(base uint32) error {
	if base < nodeconfig.MinUIDBase || base%IDsPerModule != 0 || uint64(base)+IDsPerModule > idsEnd {
		return fmt.Errorf("uid base %d: want a multiple of %d from %d, with room for one range below %d",
			base, IDsPerModule, nodeconfig.MinUIDBase, uint64(idsEnd))
	}
	return nil
}

// rangeEntry is one allocation in the host-wide registry. ReownFrom is set
// while the module's files are being moved over from the range an older
// runtime gave it (see importLegacy); it is cleared once they all are.
type rangeEntry struct {
	Root      string `json:"root"`
	Module    string `json:"module"`
	Base      uint32 `json:"base"`
	Count     uint32 `json:"count"`
	ReownFrom uint32 `json:"reown_from,omitempty"`
	// ParentDev is the device of the filesystem holding the root's
	// directory entry when the range was recorded: a root whose entry is
	// missing is gone only if its parent is still on that device (not an
	// unmounted volume at boot).
	ParentDev uint64 `json:"parent_dev,omitempty"`
}

// parentDev is the device of root's parent directory, 0 when unknown.
func parentDev(root string) uint64 {
	var st unix.Stat_t
	if unix.Stat(filepath.Dir(root), &st) != nil {
		return 0
	}
	return st.Dev
}

// gone reports positive proof that the entry's root was removed: no entry
// at its path, while the nearest directory above it that still exists sits
// on the filesystem recorded with it. A root that is merely not mounted yet
// is not gone (its mountpoint's directory is on another device); a root
// removed with the tree around it (a test's temporary directory) is.
func (e rangeEntry) gone() bool {
	if e.ParentDev == 0 {
		return false
	}
	if _, err := os.Lstat(e.Root); !errors.Is(err, fs.ErrNotExist) {
		return false
	}
	for dir := filepath.Dir(e.Root); ; dir = filepath.Dir(dir) {
		var st unix.Stat_t
		err := unix.Stat(dir, &st)
		if err == nil {
			return st.Dev == e.ParentDev
		}
		if !errors.Is(err, unix.ENOENT) || dir == filepath.Dir(dir) {
			return false
		}
	}
}

func (e rangeEntry) ids() IDRange { return IDRange{Base: e.Base, Count: e.Count} }

type registryFile struct {
	Ranges []rangeEntry `json:"ranges"`
}

// uidRegistry hands out ranges from the host-wide registry. Slots are never
// reused while their root exists: a new module with a retired module's range
// could read the files it left behind. Entries of roots that no longer exist
// are pruned, and their ranges may be handed out again.
type uidRegistry struct {
	path  string
	base  uint32
	files hostIDFiles
}

// registryTx is the registry's content while its lock is held.
type registryTx struct {
	r      uidRegistry
	t      registryFile
	pruned []rangeEntry
	dirty  bool
}

// update runs fn on the registry under its flock and writes it back if fn
// changed it.
func (r uidRegistry) update(fn func(tx *registryTx) error) (pruned []rangeEntry, err error) {
	if err := os.MkdirAll(filepath.Dir(r.path), 0o700); err != nil {
		return nil, fmt.Errorf("uid registry: %w", err)
	}
	lock, err := os.OpenFile(r.path+".lock", os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("uid registry: %w", err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return nil, fmt.Errorf("uid registry: lock %s: %w", lock.Name(), err)
	}
	tx := &registryTx{r: r}
	data, err := os.ReadFile(r.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("uid registry: %w", err)
	default:
		if err := json.Unmarshal(data, &tx.t); err != nil {
			return nil, fmt.Errorf("uid registry: %s: %w", r.path, err)
		}
	}
	if err := fn(tx); err != nil {
		return tx.pruned, err
	}
	if tx.dirty {
		if err := atomicfile.WriteFile(r.path, mustJSON(tx.t), 0o600); err != nil {
			return tx.pruned, fmt.Errorf("uid registry: %w", err)
		}
	}
	return tx.pruned, nil
}

// prune forgets the entries of roots that were removed.
func (tx *registryTx) prune() {
	tx.t.Ranges = slices.DeleteFunc(tx.t.Ranges, func(e rangeEntry) bool {
		if e.gone() {
			tx.pruned = append(tx.pruned, e)
			tx.dirty = true
			return true
		}
		return false
	})
}

// find returns the entry of (root, module), if any.
func (tx *registryTx) find(root, module string) (*rangeEntry, bool) {
	for i := range tx.t.Ranges {
		if e := &tx.t.Ranges[i]; e.Root == root && e.Module == module {
			return e, true
		}
	}
	return nil, false
}

// taken reports the entry whose range overlaps ids, if any.
func (tx *registryTx) taken(ids IDRange) (rangeEntry, bool) {
	for _, e := range tx.t.Ranges {
		if e.ids().overlaps(uint64(ids.Base), ids.end()) {
			return e, true
		}
	}
	return rangeEntry{}, false
}

// allocate returns module's range under root: the recorded one, checked
// again against the host's ids (a user or subordinate range added since
// would share its files), or the first free range from the base that
// overlaps neither another allocation nor the host's ids.
func (tx *registryTx) allocate(root, module string, host hostIDs) (IDRange, error) {
	if e, ok := tx.find(root, module); ok {
		if c, bad := host.conflict(e.ids()); bad {
			return IDRange{}, fmt.Errorf("uid range %s of module %s (recorded in %s): overlaps %s; move that entry, or remove the module's data and its line in the registry",
				e.ids(), module, tx.r.path, c)
		}
		return e.ids(), nil
	}
	// Only a new range needs the space of removed roots: a load of a
	// module that has its range does not pay for the check.
	tx.prune()
	var last hostConflict
	for base := uint64(tx.r.base); base+IDsPerModule <= idsEnd; base += IDsPerModule {
		ids := IDRange{Base: uint32(base), Count: IDsPerModule}
		if _, used := tx.taken(ids); used {
			continue
		}
		if c, bad := host.conflict(ids); bad {
			last = c
			continue
		}
		tx.t.Ranges = append(tx.t.Ranges, rangeEntry{Root: root, Module: module, Base: ids.Base, Count: ids.Count, ParentDev: parentDev(root)})
		tx.dirty = true
		return ids, nil
	}
	why := ""
	if last.file != "" {
		why = "; the last candidate overlapped " + last.String()
	}
	return IDRange{}, fmt.Errorf("uid ranges: no free range of %d ids from %d below %d for module %s (registry %s)%s",
		IDsPerModule, tx.r.base, uint64(idsEnd), module, tx.r.path, why)
}

// allocateIDs returns the module's range under the root, allocating and
// recording one host-wide on first use. It also reports the registry
// entries it pruned because their root is gone.
func (l Layout) allocateIDs(reg uidRegistry, name string) (IDRange, []rangeEntry, error) {
	if err := checkName(name); err != nil {
		return IDRange{}, nil, err
	}
	root, err := filepath.Abs(l.Root)
	if err != nil {
		return IDRange{}, nil, err
	}
	host, err := reg.files.read()
	if err != nil {
		return IDRange{}, nil, err
	}
	var ids IDRange
	pruned, err := reg.update(func(tx *registryTx) error {
		if e, ok := tx.find(root, name); ok && e.ReownFrom != 0 {
			return fmt.Errorf("uid range of module %s: its files are still being moved from range %d (run the supervisor again to finish)", name, e.ReownFrom)
		}
		ids, err = tx.allocate(root, name, host)
		return err
	})
	return ids, pruned, err
}

// legacyIDs is the per-root table older runtimes kept in state/ids.json:
// module name -> slot, range IDsBase + slot*IDsPerModule.
type legacyIDs struct {
	Slots map[string]uint32 `json:"slots"`
}

// importLegacy moves the ranges an older runtime recorded in this root's
// state/ids.json into the host-wide registry, so that modules keep owning
// their files. A legacy range another root already holds (older runtimes
// handed every root the same ranges) or that overlaps the host's ids is
// replaced by a fresh one, and the module's files are re-owned into it. The
// old file is renamed to ids.json.migrated when done.
func (l Layout) importLegacy(reg uidRegistry) error {
	root, err := filepath.Abs(l.Root)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(l.legacyIDsFile())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("legacy uid ranges: %w", err)
	}
	var legacy legacyIDs
	if err == nil {
		if err := json.Unmarshal(data, &legacy); err != nil {
			return fmt.Errorf("legacy uid ranges: %s: %w", l.legacyIDsFile(), err)
		}
	}
	host, err := reg.files.read()
	if err != nil {
		return err
	}
	var pending []rangeEntry
	_, err = reg.update(func(tx *registryTx) error {
		// Every legacy range that is still free is adopted first, so that
		// a fresh range for one that is not never takes another's.
		var moved []string
		for _, name := range slices.Sorted(maps.Keys(legacy.Slots)) {
			if checkName(name) != nil {
				return fmt.Errorf("legacy uid ranges: %s: module name %q is not valid", l.legacyIDsFile(), name)
			}
			if _, ok := tx.find(root, name); ok {
				continue
			}
			if slot := legacy.Slots[name]; uint64(slot) >= (idsEnd-IDsBase)/IDsPerModule {
				return fmt.Errorf("legacy uid ranges: %s: module %s: slot %d is past the last range", l.legacyIDsFile(), name, slot)
			}
			old := IDRange{Base: IDsBase + legacy.Slots[name]*IDsPerModule, Count: IDsPerModule}
			_, used := tx.taken(old)
			_, clash := host.conflict(old)
			if used || clash || old.end() > idsEnd {
				moved = append(moved, name)
				continue
			}
			tx.t.Ranges = append(tx.t.Ranges, rangeEntry{Root: root, Module: name, Base: old.Base, Count: old.Count, ParentDev: parentDev(root)})
			tx.dirty = true
		}
		for _, name := range moved {
			if _, err := tx.allocate(root, name, host); err != nil {
				return err
			}
			e, _ := tx.find(root, name)
			e.ReownFrom = IDsBase + legacy.Slots[name]*IDsPerModule
		}
		// Re-owning that a crash interrupted is finished now, too.
		for _, e := range tx.t.Ranges {
			if e.Root == root && e.ReownFrom != 0 {
				pending = append(pending, e)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, e := range pending {
		if err := reownTree(l.DataParent(e.Module), IDRange{Base: e.ReownFrom, Count: e.Count}, e.ids()); err != nil {
			return fmt.Errorf("legacy uid ranges: module %s: %w", e.Module, err)
		}
		if _, err := reg.update(func(tx *registryTx) error {
			if f, ok := tx.find(root, e.Module); ok {
				f.ReownFrom, tx.dirty = 0, true
			}
			return nil
		}); err != nil {
			return err
		}
	}
	if len(legacy.Slots) > 0 || data != nil {
		if err := os.Rename(l.legacyIDsFile(), l.legacyIDsFile()+".migrated"); err != nil {
			return fmt.Errorf("legacy uid ranges: %w", err)
		}
	}
	return nil
}

// reownTree moves every file under dir owned by an id of from to the same
// offset in to (uid and gid alike). Symlinks are re-owned themselves, never
// followed. It is idempotent: files already moved are no longer in from.
func reownTree(dir string, from, to IDRange) error {
	shift := func(id uint32) (int, bool) {
		if uint64(id) >= uint64(from.Base) && uint64(id) < from.end() {
			return int(to.Base + (id - from.Base)), true
		}
		return -1, false
	}
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		// An entry that vanished mid-walk needs no new owner; any other
		// error stops the re-own, which then stays pending.
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			if errors.Is(err, unix.ENOENT) {
				return nil
			}
			return err
		}
		uid, u := shift(st.Uid)
		gid, g := shift(st.Gid)
		if !u && !g {
			return nil
		}
		if err := unix.Lchown(p, uid, gid); err != nil && !errors.Is(err, unix.ENOENT) {
			return err
		}
		return nil
	})
}

func mustJSON(v any) []byte {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		panic(err) // only plain structs, strings and numbers are marshalled here
	}
	return append(b, '\n')
}
