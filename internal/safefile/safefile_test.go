package safefile

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Each way a module dir can hold something other than a small regular file
// is refused quickly, with the file's path and the reason in one line.
func TestReadFileRefuses(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret.toml")
	if err := os.WriteFile(secret, []byte("key = \"root only\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name   string
		plant  func(t *testing.T, dir string) // creates dir/config.toml
		reason string
	}{
		{"symlink outside", func(t *testing.T, dir string) { must(t, os.Symlink(secret, filepath.Join(dir, "config.toml"))) }, "symlink"},
		{"symlink inside", func(t *testing.T, dir string) {
			must(t, os.WriteFile(filepath.Join(dir, "real.toml"), []byte("a = 1\n"), 0o644))
			must(t, os.Symlink("real.toml", filepath.Join(dir, "config.toml")))
		}, "symlink"},
		{"fifo", func(t *testing.T, dir string) { must(t, syscall.Mkfifo(filepath.Join(dir, "config.toml"), 0o644)) }, "is a FIFO, not a regular file"},
		{"device", func(t *testing.T, dir string) {
			if os.Geteuid() != 0 {
				t.Skip("mknod needs root")
			}
			must(t, syscall.Mknod(filepath.Join(dir, "config.toml"), syscall.S_IFCHR|0o644, 1<<8|5)) // /dev/zero
		}, "is a character device, not a regular file"},
		{"directory", func(t *testing.T, dir string) { must(t, os.Mkdir(filepath.Join(dir, "config.toml"), 0o755)) }, "is a directory, not a regular file"},
		{"oversize", func(t *testing.T, dir string) {
			must(t, os.WriteFile(filepath.Join(dir, "config.toml"), bytes.Repeat([]byte("#"), MaxTOML+1), 0o644))
		}, "is 1048577 bytes, over the limit of 1048576 bytes"},
		{"socket", func(t *testing.T, dir string) {
			fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
			must(t, err)
			defer syscall.Close(fd)
			must(t, syscall.Bind(fd, &syscall.SockaddrUnix{Name: filepath.Join(dir, "config.toml")}))
		}, "not a regular file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.plant(t, dir)
			start := time.Now()
			data, err := ReadFile(dir, "config.toml", MaxTOML)
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("took %v", took)
			}
			if err == nil {
				t.Fatalf("read %d bytes, want a refusal", len(data))
			}
			msg := err.Error()
			if want := filepath.Join(dir, "config.toml") + ": "; !strings.HasPrefix(msg, want) || !strings.Contains(msg, tt.reason) || strings.Contains(msg, "\n") {
				t.Errorf("error %q, want one line starting %q and naming %q", msg, want, tt.reason)
			}
			var se *Error
			if !errors.As(err, &se) || errors.Is(err, fs.ErrNotExist) {
				t.Errorf("error %#v: want a *safefile.Error that is not ErrNotExist", err)
			}
		})
	}
}

func TestReadFileReadsRegularFiles(t *testing.T) {
	dir := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(dir, "sub"), 0o755))
	want := bytes.Repeat([]byte("x"), MaxTOML) // exactly at the limit
	must(t, os.WriteFile(filepath.Join(dir, "sub", "f.toml"), want, 0o644))
	got, err := ReadFile(dir, "sub/f.toml", MaxTOML)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("ReadFile = %d bytes, %v", len(got), err)
	}
	// The directory itself may be reached through a symlink: it is the
	// caller's choice.
	link := filepath.Join(t.TempDir(), "link")
	must(t, os.Symlink(dir, link))
	if _, err := ReadPath(filepath.Join(link, "sub", "f.toml"), MaxTOML); err != nil {
		t.Errorf("through a symlinked dir: %v", err)
	}
}

func TestEscapesAndAbsence(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(filepath.Dir(dir), "outside.toml")
	must(t, os.WriteFile(outside, []byte("a = 1\n"), 0o644))
	defer os.Remove(outside)
	must(t, os.Mkdir(filepath.Join(dir, "sub"), 0o755))
	must(t, os.Symlink(".", filepath.Join(dir, "loop")))
	for name, want := range map[string]string{
		"../outside.toml":      "resolves outside " + dir,
		outside:                "resolves outside " + dir,
		"loop/sub":             "symlink",
		"sub/../../x":          "resolves outside",
		"missing.toml":         "no such file",
		"sub/missing/any.toml": "no such file",
	} {
		_, err := ReadFile(dir, name, MaxTOML)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", name, err, want)
		}
		if strings.Contains(want, "no such file") != errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: errors.Is(ErrNotExist) = %v", name, errors.Is(err, fs.ErrNotExist))
		}
	}
	if _, err := ReadFile(filepath.Join(dir, "nope"), "x", 1); err == nil || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "nope") {
		t.Errorf("missing dir: %v", err)
	}
}

// Open returns the fd it checked, so a caller hashes exactly what fstat saw.
func TestOpenReturnsTheCheckedFile(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "bin"), []byte("abc"), 0o755))
	f, fi, err := Open(dir, "bin")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Replacing the path after the open changes nothing for the holder.
	must(t, os.Remove(filepath.Join(dir, "bin")))
	must(t, os.WriteFile(filepath.Join(dir, "bin"), []byte("evil!"), 0o755))
	buf := make([]byte, 16)
	n, _ := f.Read(buf)
	if string(buf[:n]) != "abc" || fi.Size() != 3 {
		t.Errorf("read %q (size %d) from the opened file", buf[:n], fi.Size())
	}
	if _, _, err := Open(dir, "."); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("Open(.) = %v", err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// A special file is refused from an O_PATH look, without being opened: a
// writer blocked on a FIFO is not woken (an open for reading would wake
// it), just as a device's driver never sees an open.
func TestSpecialFilesAreNotOpened(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "config.toml")
	must(t, syscall.Mkfifo(fifo, 0o644))
	woken := make(chan struct{})
	go func() {
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0) // blocks until a reader opens
		if err == nil {
			f.Close()
		}
		close(woken)
	}()
	time.Sleep(50 * time.Millisecond) // let the writer block in open
	if _, err := ReadFile(dir, "config.toml", MaxTOML); err == nil || !strings.Contains(err.Error(), "is a FIFO") {
		t.Fatalf("ReadFile = %v", err)
	}
	select {
	case <-woken:
		t.Fatal("ReadFile opened the FIFO: its writer woke up")
	case <-time.After(200 * time.Millisecond):
	}
	r, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0) // release the writer
	must(t, err)
	<-woken
	r.Close()
}
