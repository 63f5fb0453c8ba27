package nodeconfig

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// The node config is read as root: a FIFO, a symlink, a directory or a
// huge file at its path is refused with the path and the reason.
func TestParseRefusesSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real.toml")
	os.WriteFile(real, []byte("[node]\nversion = \"0.1.0\"\n"), 0o644)
	fifo, link, sub, big := filepath.Join(dir, "fifo.toml"), filepath.Join(dir, "link.toml"), filepath.Join(dir, "dir.toml"), filepath.Join(dir, "big.toml")
	syscall.Mkfifo(fifo, 0o644)
	os.Symlink(real, link)
	os.Mkdir(sub, 0o755)
	os.WriteFile(big, make([]byte, 1<<20+1), 0o644)
	for path, reason := range map[string]string{
		fifo: "is a FIFO, not a regular file",
		link: "is a symlink",
		sub:  "is a directory, not a regular file",
		big:  "is 1048577 bytes, over the limit of 1048576 bytes",
	} {
		if _, err := Parse(path); err == nil || !strings.Contains(err.Error(), path+": "+reason) {
			t.Errorf("Parse(%s) = %v, want %q", path, err, reason)
		}
	}
	if _, err := Parse(real); err != nil {
		t.Errorf("a regular node config: %v", err)
	}
}
