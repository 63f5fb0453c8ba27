package admin

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSocketDirMustBeTheDaemons: a private mode is not enough; the owner of
// the directory can swap the socket, so it must be the daemon's own uid.
func TestSocketDirMustBeTheDaemons(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to hand a directory to another uid")
	}
	dir := filepath.Join(shortDir(t), "other")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "admin.sock")
	err := NewServer(twoModules(), ServerOptions{Socket: sock, Logger: quietLogger()}).Listen()
	if err == nil || !strings.Contains(err.Error(), "owned by uid 65534, not the daemon's uid 0") || !strings.Contains(err.Error(), dir) {
		t.Errorf("dir owned by another uid: err = %v", err)
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("a socket was created in it: %v", err)
	}

	// Back to the daemon's uid, the same directory is accepted.
	if err := os.Chown(dir, 0, 0); err != nil {
		t.Fatal(err)
	}
	s := NewServer(twoModules(), ServerOptions{Socket: sock, Logger: quietLogger()})
	if err := s.Listen(); err != nil {
		t.Fatalf("own dir: %v", err)
	}
	s.ln.remove()
}
