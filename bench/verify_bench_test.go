// Package bench measures blvm-sandbox against peers in the same run. Run it
// with `make bench`, which writes docs/BENCHMARKS.md.
package bench

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/blvm/blvm-sandbox/internal/elftest"
	"github.com/blvm/blvm-sandbox/manifest"
	"github.com/blvm/blvm-sandbox/verify"
)

const hashFileSize = 256 << 20

// moduleWithBinary writes a module dir holding a random binary of size
// bytes and returns the dir and a manifest pinning that binary.
func moduleWithBinary(b *testing.B, size int64) (string, *manifest.Manifest) {
	b.Helper()
	dir := b.TempDir()
	f, err := os.Create(filepath.Join(dir, "mod"))
	if err != nil {
		b.Fatal(err)
	}
	h := sha256.New()
	w := io.MultiWriter(f, h)
	head := elftest.Static("") // a static ELF header: Seal reads it
	if _, err := w.Write(head); err != nil {
		b.Fatal(err)
	}
	if _, err := io.CopyN(w, rand.Reader, size-int64(len(head))); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	m := &manifest.Manifest{Name: "bench", Version: "1.0.0", EntryPoint: "mod",
		Binary: &manifest.Binary{Hash: "sha256:" + hex.EncodeToString(h.Sum(nil)), Size: size}}
	return dir, m
}

// BenchmarkSeal256MiB hashes the binary while copying it into the store,
// the work of a first verification.
func BenchmarkSeal256MiB(b *testing.B) {
	dir, m := moduleWithBinary(b, hashFileSize)
	store := &verify.Store{Root: b.TempDir()}
	b.SetBytes(hashFileSize)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		path, reused, err := store.Seal(dir, m)
		if err != nil || reused {
			b.Fatalf("seal: reused=%t err=%v", reused, err)
		}
		b.StopTimer()
		if err := os.Remove(path); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkPeerSha256sum256MiB is the peer: coreutils sha256sum on the same
// size of file, hashing only (no copy).
func BenchmarkPeerSha256sum256MiB(b *testing.B) {
	if _, err := exec.LookPath("sha256sum"); err != nil {
		b.Skip("sha256sum not installed")
	}
	dir, _ := moduleWithBinary(b, hashFileSize)
	b.SetBytes(hashFileSize)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if out, err := exec.Command("sha256sum", filepath.Join(dir, "mod")).CombinedOutput(); err != nil {
			b.Fatalf("sha256sum: %v: %s", err, out)
		}
	}
}

// BenchmarkStoreReuse16MiB is the store side of a second verification of an
// unchanged module: the entry exists, the source is not read.
func BenchmarkStoreReuse16MiB(b *testing.B) {
	dir, m := moduleWithBinary(b, 16<<20)
	store := &verify.Store{Root: b.TempDir()}
	if _, _, err := store.Seal(dir, m); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, reused, err := store.Seal(dir, m); err != nil || !reused {
			b.Fatal(fmt.Errorf("second seal: reused=%t err=%v", reused, err))
		}
	}
}
