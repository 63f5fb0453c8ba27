package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// PolicyReader is the part of a Manager that `blvm-sandbox inspect NAME`
// needs: the policy a loaded module was compiled to, and its pid. A Manager
// without it answers 501.
type PolicyReader interface {
	ModulePolicy(name string) (ModulePolicy, error)
}

// ModulePolicy answers GET /v1/modules/{name}/policy.
type ModulePolicy struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// Pid is the module's host pid, 0 while it does not run.
	Pid int `json:"pid"`
	// Policy is the policy.Policy the daemon started the module with, as
	// JSON: this package does not depend on the policy compiler.
	Policy json.RawMessage `json:"policy"`
}

func (s *Server) handlePolicy(w http.ResponseWriter, r *http.Request) {
	name, ok := s.moduleName(w, r)
	if !ok {
		return
	}
	pr, ok := s.m.(PolicyReader)
	if !ok {
		writeJSON(w, http.StatusNotImplemented, errorResponse{Error: "this daemon does not serve module policies"})
		return
	}
	mp, err := pr.ModulePolicy(name)
	if err != nil {
		s.fail(w, r, fmt.Errorf("policy %s: %w", name, err))
		return
	}
	writeJSON(w, http.StatusOK, mp)
}

// ModulePolicy asks the daemon for a loaded module's policy and pid.
func (c *Client) ModulePolicy(ctx context.Context, name string) (*ModulePolicy, error) {
	path, err := modulePath(name, "policy")
	if err != nil {
		return nil, err
	}
	var mp ModulePolicy
	if err := c.getJSON(ctx, path, &mp); err != nil {
		return nil, err
	}
	if len(mp.Policy) == 0 || mp.Name != name {
		return nil, errors.New("admin: policy " + name + ": the daemon's answer holds no policy for it")
	}
	return &mp, nil
}
