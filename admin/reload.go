package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"time"
)

// Reloader is what POST /v1/reload and POST /v1/install need besides a
// Manager. A Manager without it answers those with 501.
type Reloader interface {
	// Reload re-reads the node config, checks all of it, and restarts only
	// the modules whose effective settings changed. A config that does not
	// parse or validate changes nothing: the error says why (ErrInvalid).
	Reload(ctx context.Context) (*ReloadReport, error)
	// Install verifies the module in dir, copies it into the modules dir
	// and discovers again; it does not load it.
	Install(ctx context.Context, dir string, allowDowngrade bool) (*InstallResult, error)
}

// Reload actions, as ReloadResult.Action reports them.
const (
	ReloadStarted   = "started"
	ReloadStopped   = "stopped"
	ReloadRestarted = "restarted"
	ReloadUnchanged = "unchanged"
	ReloadFailed    = "failed" // the action was tried and failed; Error says why
)

// ReloadReport is what a reload did, one row per known module.
type ReloadReport struct {
	Config   string         `json:"config"`
	Took     time.Duration  `json:"took_ns"`
	Modules  []ReloadResult `json:"modules"`
	Warnings []string       `json:"warnings,omitempty"`
}

// ReloadResult is one module's part of a reload.
type ReloadResult struct {
	Module string `json:"module"`
	Action string `json:"action"`
	// Reason says what changed ("config", "policy: cgroup", "enabled =
	// false", "requires stratum-v2"), or the state of an unchanged module.
	Reason string `json:"reason,omitempty"`
	Error  string `json:"error,omitempty"`
}

// InstallResult is the answer of POST /v1/install.
type InstallResult struct {
	Name         string   `json:"name"`
	Version      string   `json:"version"`
	Dir          string   `json:"dir"` // where it was installed
	Capabilities []string `json:"capabilities"`
	Warnings     []string `json:"warnings,omitempty"`
	// Running is the version that runs now, if the module is loaded: a
	// new version runs after a restart.
	Running string `json:"running,omitempty"`
}

type installRequest struct {
	Dir            string `json:"dir"`
	AllowDowngrade bool   `json:"allow_downgrade"`
}

func (s *Server) reloader(w http.ResponseWriter, r *http.Request) (Reloader, bool) {
	rl, ok := s.m.(Reloader)
	if !ok {
		writeJSON(w, http.StatusNotImplemented, errorResponse{Error: r.URL.Path + ": this daemon does not reload or install"})
		return nil, false
	}
	return rl, true
}

func (s *Server) handleReload(w http.ResponseWriter, r *http.Request) {
	rl, ok := s.reloader(w, r)
	if !ok {
		return
	}
	// Like an action: it ends with the daemon, not with the request.
	rep, err := rl.Reload(s.actionContext())
	if err != nil {
		s.fail(w, r, fmt.Errorf("reload: %w", err))
		return
	}
	s.log.Info("admin: reload", "config", rep.Config, "took", rep.Took.Round(time.Millisecond))
	writeJSON(w, http.StatusOK, rep)
}

func (s *Server) handleInstall(w http.ResponseWriter, r *http.Request) {
	rl, ok := s.reloader(w, r)
	if !ok {
		return
	}
	var req installRequest
	if err := decodeBody(w, r, &req); err != nil {
		s.fail(w, r, fmt.Errorf("install: %w request body: %v", ErrInvalid, err))
		return
	}
	if !filepath.IsAbs(req.Dir) {
		s.fail(w, r, fmt.Errorf("install: %w request: dir %q must be an absolute path", ErrInvalid, req.Dir))
		return
	}
	res, err := rl.Install(s.actionContext(), req.Dir, req.AllowDowngrade)
	if err != nil {
		s.fail(w, r, fmt.Errorf("install %s: %w", req.Dir, err))
		return
	}
	s.log.Info("admin: install", "module", res.Name, "version", res.Version, "from", req.Dir)
	writeJSON(w, http.StatusOK, res)
}

// Reload asks the daemon to re-read its node config (as SIGHUP does) and
// returns what it did.
func (c *Client) Reload(ctx context.Context) (*ReloadReport, error) {
	resp, err := c.do(ctx, http.MethodPost, "/v1/reload", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var rep ReloadReport
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		return nil, fmt.Errorf("admin %s: reload: %w", c.socket(), err)
	}
	return &rep, nil
}

// Install has the daemon verify and install the module in dir (made
// absolute here: the daemon has its own working directory).
func (c *Client) Install(ctx context.Context, dir string, allowDowngrade bool) (*InstallResult, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	resp, err := c.do(ctx, http.MethodPost, "/v1/install", installRequest{Dir: abs, AllowDowngrade: allowDowngrade})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var res InstallResult
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return nil, fmt.Errorf("admin %s: install: %w", c.socket(), err)
	}
	return &res, nil
}
