package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// reloadingManager adds Reloader to the fake.
type reloadingManager struct {
	*fakeManager
	reloadErr error
	installed []string
}

func (r *reloadingManager) Reload(ctx context.Context) (*ReloadReport, error) {
	if r.reloadErr != nil {
		return nil, r.reloadErr
	}
	return &ReloadReport{Config: "/etc/node.toml", Modules: []ReloadResult{
		{Module: "stratum-v2", Action: ReloadRestarted, Reason: "config"},
		{Module: "merge-mining", Action: ReloadUnchanged, Reason: "stopped"},
	}}, nil
}

func (r *reloadingManager) Install(ctx context.Context, dir string, allowDowngrade bool) (*InstallResult, error) {
	r.installed = append(r.installed, fmt.Sprintf("%s %v", dir, allowDowngrade))
	return &InstallResult{Name: "stratum-v2", Version: "1.3.0", Dir: "/mods/stratum-v2", Running: "1.2.0"}, nil
}

func TestReloadEndpoint(t *testing.T) {
	m := &reloadingManager{fakeManager: twoModules()}
	c, _ := serve(t, m)
	rep, err := c.Reload(context.Background())
	if err != nil || len(rep.Modules) != 2 || rep.Modules[0].Action != ReloadRestarted || rep.Modules[0].Reason != "config" {
		t.Fatalf("Reload = %+v, %v", rep, err)
	}
	// A config that does not validate: 400, the manager's words, ErrInvalid.
	m.reloadErr = fmt.Errorf("%w: nothing changed: node.toml:12: limits.memory_bytes: want an integer", ErrInvalid)
	_, err = c.Reload(context.Background())
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "node.toml:12") {
		t.Errorf("bad config: %v, want ErrInvalid naming node.toml:12", err)
	}
}

func TestInstallEndpoint(t *testing.T) {
	m := &reloadingManager{fakeManager: twoModules()}
	c, sock := serve(t, m)
	res, err := c.Install(context.Background(), "relative/dir", true)
	if err != nil || res.Version != "1.3.0" || res.Running != "1.2.0" {
		t.Fatalf("Install = %+v, %v", res, err)
	}
	// The client sends an absolute path: the daemon's cwd is not ours.
	if len(m.installed) != 1 || !strings.HasPrefix(m.installed[0], "/") || !strings.HasSuffix(m.installed[0], "relative/dir true") {
		t.Errorf("installed %q", m.installed)
	}
	if code, body := raw(t, sock, http.MethodPost, "/v1/install", `{"dir":"rel"}`); code != http.StatusBadRequest || !strings.Contains(body, "absolute") {
		t.Errorf("relative dir: %d %s", code, body)
	}
	if code, _ := raw(t, sock, http.MethodPost, "/v1/install", `{"dir":"/x","extra":1}`); code != http.StatusBadRequest {
		t.Errorf("unknown field: %d", code)
	}
}

func TestReloadNotOffered(t *testing.T) {
	_, sock := serve(t, twoModules())
	if code, _ := raw(t, sock, http.MethodPost, "/v1/reload", ""); code != http.StatusNotImplemented {
		t.Errorf("reload on a manager without Reloader: %d, want 501", code)
	}
}

// Events published before the daemon stops serving still reach the
// watcher: the shutdown's unload events come just before it.
func TestEventsPublishedBeforeShutdownDelivered(t *testing.T) {
	m := twoModules()
	sock := shortDir(t) + "/admin.sock"
	s := NewServer(m, ServerOptions{Socket: sock, Logger: quietLogger()})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx) }()
	c := &Client{Socket: sock}
	var got []string
	streamed := make(chan error, 1)
	eventually(t, "the socket", func() bool { _, err := c.Modules(context.Background()); return err == nil })
	go func() {
		streamed <- c.Events(context.Background(), func(e Event) error { got = append(got, e.Module); return nil })
	}()
	eventually(t, "a subscriber", func() bool { return m.subscribers() == 1 })
	for i := range 16 {
		m.publish(Event{Module: fmt.Sprintf("m%d", i), Kind: EventUnloaded})
	}
	cancel()
	<-served
	<-streamed
	if len(got) != 16 {
		t.Errorf("the watcher saw %d of the 16 events published before the shutdown: %v", len(got), got)
	}
}
