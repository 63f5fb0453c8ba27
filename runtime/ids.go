package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"

	"github.com/blvm/blvm-sandbox/internal/atomicfile"
)

// Each module's user namespace maps container ids 0..IDsPerModule-1 to its
// own host range, far from the host's real users, so one module can never
// own another's files, even by uid.
const (
	IDsBase      = 1 << 20 // first host id handed out
	IDsPerModule = 1 << 16
	maxSlots     = (1<<32 - IDsBase) / IDsPerModule
	// ModuleUID is the uid (and gid) the module runs as inside its user
	// namespace: not 0, so setuid(0) fails even there.
	ModuleUID = 1000
)

// IDRange is a module's host uid/gid range.
type IDRange struct {
	Base  uint32 `json:"base"`
	Count uint32 `json:"count"`
}

// HostUID is the host uid the module's process runs as.
func (r IDRange) HostUID() int { return int(r.Base) + ModuleUID }

// idTable is the persisted name -> slot map. Slots are never reused: a new
// module with a retired module's range could read files left behind.
type idTable struct {
	Next  uint32            `json:"next"`
	Slots map[string]uint32 `json:"slots"`
}

// allocateIDs returns the module's range, allocating and persisting one on
// first use. A file lock serialises runtimes sharing the root.
func (l Layout) allocateIDs(name string) (IDRange, error) {
	if err := checkName(name); err != nil {
		return IDRange{}, err
	}
	lock, err := os.OpenFile(l.IDsFile()+".lock", os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return IDRange{}, fmt.Errorf("uid ranges: %w", err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return IDRange{}, fmt.Errorf("uid ranges: lock: %w", err)
	}
	t := idTable{Slots: map[string]uint32{}}
	data, err := os.ReadFile(l.IDsFile())
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return IDRange{}, fmt.Errorf("uid ranges: %w", err)
	default:
		if err := json.Unmarshal(data, &t); err != nil {
			return IDRange{}, fmt.Errorf("uid ranges: %s: %w", l.IDsFile(), err)
		}
		if t.Slots == nil {
			t.Slots = map[string]uint32{}
		}
	}
	slot, ok := t.Slots[name]
	if !ok {
		if t.Next >= maxSlots {
			return IDRange{}, fmt.Errorf("uid ranges: all %d ranges are used", maxSlots)
		}
		slot = t.Next
		t.Slots[name] = slot
		t.Next++
		if err := atomicfile.WriteFile(l.IDsFile(), mustJSON(t), 0o600); err != nil {
			return IDRange{}, fmt.Errorf("uid ranges: %w", err)
		}
	}
	return IDRange{Base: IDsBase + slot*IDsPerModule, Count: IDsPerModule}, nil
}

func mustJSON(v any) []byte {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		panic(err) // only plain maps and numbers are marshalled here
	}
	return append(b, '\n')
}
