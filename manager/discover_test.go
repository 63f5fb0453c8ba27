package manager

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Discovery of a modules dir holding a FIFO, a symlink and a directory in
// place of module.toml finishes at once, reporting each folder's refusal;
// the good module is still found.
func TestDiscoverRefusesSpecialManifests(t *testing.T) {
	dir := t.TempDir()
	mk := func(name string) string {
		d := filepath.Join(dir, name)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return filepath.Join(d, "module.toml")
	}
	os.WriteFile(mk("good"), []byte("name = \"good\"\nversion = \"1.0.0\"\nentry_point = \"good\"\n"), 0o644)
	syscall.Mkfifo(mk("fifo"), 0o644)
	os.Symlink("/etc/passwd", mk("link"))
	os.Mkdir(mk("dir"), 0o755)

	done := make(chan []Candidate, 1)
	go func() {
		cs, err := DirSource{Dir: dir}.Discover(context.Background())
		if err != nil {
			t.Error(err)
		}
		done <- cs
	}()
	var cs []Candidate
	select {
	case cs = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Discover hangs on a FIFO named module.toml")
	}
	want := map[string]string{"dir": "is a directory, not a regular file", "fifo": "is a FIFO, not a regular file", "link": "is a symlink"}
	if len(cs) != 4 {
		t.Fatalf("candidates %+v", cs)
	}
	for _, c := range cs {
		name := filepath.Base(c.Dir)
		if name == "good" {
			if c.Err != nil || c.Manifest == nil {
				t.Errorf("good: %v", c.Err)
			}
			continue
		}
		if c.Err == nil || !strings.Contains(c.Err.Error(), filepath.Join(c.Dir, "module.toml")+": "+want[name]) {
			t.Errorf("%s: %v, want %q", name, c.Err, want[name])
		}
	}
}
