package admin

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/blvm/blvm-sandbox/ipc/pb"
)

// fakeManager is a Manager over a fixed table, recording every action.
type fakeManager struct {
	mu    sync.Mutex
	mods  []ModuleInfo
	calls []string
	logs  map[string]string
	specs map[string]*pb.RegisterCliSpec
	run   func(module, command string, args []string) (*pb.CliResult, error)
	subs  map[chan Event]bool
}

func newFakeManager(mods ...ModuleInfo) *fakeManager {
	return &fakeManager{mods: mods, logs: map[string]string{}, specs: map[string]*pb.RegisterCliSpec{}, subs: map[chan Event]bool{}}
}

func (f *fakeManager) Modules() []ModuleInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]ModuleInfo(nil), f.mods...)
}

func (f *fakeManager) index(name string) (int, error) {
	for i, m := range f.mods {
		if m.Name == name {
			return i, nil
		}
	}
	return -1, fmt.Errorf("%w %q", ErrUnknownModule, name)
}

// set runs one action: it records it and moves the module to state.
func (f *fakeManager) set(verb, name string, from []string, state string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	i, err := f.index(name)
	if err != nil {
		return err
	}
	f.calls = append(f.calls, verb+" "+name)
	ok := len(from) == 0
	for _, s := range from {
		ok = ok || f.mods[i].State == s
	}
	if !ok {
		return fmt.Errorf("%w: %s is %s", ErrConflict, name, f.mods[i].State)
	}
	f.mods[i].State = state
	return nil
}

func (f *fakeManager) Load(_ context.Context, name string) error {
	return f.set("load", name, []string{StateStopped, StateRefused, StateFailed}, StateRunning)
}

func (f *fakeManager) Start(_ context.Context, name string) error {
	return f.set("start", name, []string{StateStopped, StateFailed}, StateRunning)
}

func (f *fakeManager) Stop(_ context.Context, name string) error {
	return f.set("stop", name, nil, StateStopped)
}

func (f *fakeManager) Restart(_ context.Context, name string) error {
	if err := f.set("restart", name, nil, StateRunning); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	i, _ := f.index(name)
	f.mods[i].Restarts++
	return nil
}

func (f *fakeManager) Unload(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	i, err := f.index(name)
	if err != nil {
		return err
	}
	f.calls = append(f.calls, "unload "+name)
	f.mods = append(f.mods[:i], f.mods[i+1:]...)
	return nil
}

func (f *fakeManager) LogPath(name string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.index(name); err != nil {
		return "", err
	}
	return f.logs[name], nil
}

func (f *fakeManager) CliSpecs() map[string]*pb.RegisterCliSpec { return f.specs }

func (f *fakeManager) RunCli(_ context.Context, module, command string, args []string) (*pb.CliResult, error) {
	f.mu.Lock()
	_, err := f.index(module)
	f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return f.run(module, command, args)
}

func (f *fakeManager) Subscribe(ctx context.Context) <-chan Event {
	ch := make(chan Event, 16)
	f.mu.Lock()
	f.subs[ch] = true
	f.mu.Unlock()
	go func() {
		<-ctx.Done()
		f.mu.Lock()
		delete(f.subs, ch)
		close(ch)
		f.mu.Unlock()
	}()
	return ch
}

func (f *fakeManager) subscribers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs)
}

func (f *fakeManager) publish(ev Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for ch := range f.subs {
		select {
		case ch <- ev:
		default:
		}
	}
}

func (f *fakeManager) callLog() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// shortDir is a temporary directory with a path short enough for a Unix
// socket (t.TempDir's can pass the 108-byte limit).
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "adm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// serve runs a Server for m on a fresh socket until the test ends, and
// checks that it shuts down cleanly and removes its socket.
func serve(t *testing.T, m Manager) (*Client, string) {
	t.Helper()
	sock := filepath.Join(shortDir(t), "run", "admin.sock")
	s := NewServer(m, ServerOptions{Socket: sock, Logger: quietLogger(), LogPollInterval: 5 * time.Millisecond})
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after its context ended")
		}
		if _, err := os.Lstat(sock); !os.IsNotExist(err) {
			t.Errorf("socket left behind after shutdown: %v", err)
		}
	})
	return &Client{Socket: sock}, sock
}

// eventually polls cond for up to 5s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
