package manager

import (
	"encoding/json"
	"fmt"

	"github.com/blvm/blvm-sandbox/admin"
)

// ModulePolicy is the policy a loaded module was compiled to and started
// with, and its pid (0 while it does not run), for inspect.
func (m *Manager) ModulePolicy(name string) (admin.ModulePolicy, error) {
	m.mu.Lock()
	e := m.known[name]
	var mp admin.ModulePolicy
	var err error
	switch {
	case e == nil:
		err = fmt.Errorf("%w %q", admin.ErrUnknownModule, name)
	case e.prep == nil:
		err = fmt.Errorf("%w: %s is not loaded (state %s)", admin.ErrConflict, name, e.state)
	default:
		mp.Name, mp.Version = name, e.prep.Manifest.Version
		mp.Policy, err = json.Marshal(e.prep.Policy)
	}
	m.mu.Unlock()
	if err != nil {
		return admin.ModulePolicy{}, err
	}
	if st, ok := m.sup.Status(name); ok {
		mp.Pid = st.Pid
	}
	return mp, nil
}
