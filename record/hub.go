package record

import (
	"sort"
	"sync"
)

// Use is one hub method or event type the module called or asked for.
type Use struct {
	Name    string `json:"name"`
	Count   int    `json:"count"`
	Granted bool   `json:"granted"`
}

// HubLog counts a module's hub calls and subscriptions as the hub decides
// them (it is a hub.Observer). Safe for concurrent use.
type HubLog struct {
	module string

	mu      sync.Mutex
	methods map[string]*Use
	events  map[string]*Use
	// unlisted counts the decisions on names past MaxHubNames: event types
	// are the module's own strings, and this log lives in the root-run
	// recorder, outside the module's memory limit.
	unlisted int
}

// MaxHubNames bounds the distinct names kept per kind: far above the hub's
// methods and the catalog's event types, far below what a module that
// subscribes to a new made-up type on every request would make.
const MaxHubNames = 512

// NewHubLog logs the decisions for module and ignores every other one.
func NewHubLog(module string) *HubLog {
	return &HubLog{module: module, methods: map[string]*Use{}, events: map[string]*Use{}}
}

// Method counts one call of method.
func (h *HubLog) Method(module, method string, granted bool) {
	h.add(h.methods, module, method, granted)
}

// Event counts one request for event type t.
func (h *HubLog) Event(module, t string, granted bool) { h.add(h.events, module, t, granted) }

func (h *HubLog) add(m map[string]*Use, module, name string, granted bool) {
	if module != h.module {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	u := m[name]
	if u == nil {
		if len(m) >= MaxHubNames {
			h.unlisted++
			return
		}
		u = &Use{Name: name}
		m[name] = u
	}
	u.Count++
	u.Granted = granted // the ACL is fixed for the run: every decision agrees
}

// Unlisted is how many decisions were not logged because MaxHubNames
// distinct names of their kind were already listed.
func (h *HubLog) Unlisted() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.unlisted
}

// Methods lists the methods called, by name.
func (h *HubLog) Methods() []Use { return h.list(h.methods) }

// Events lists the event types asked for, by name.
func (h *HubLog) Events() []Use { return h.list(h.events) }

func (h *HubLog) list(m map[string]*Use) []Use {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Use, 0, len(m))
	for _, u := range m {
		out = append(out, *u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
