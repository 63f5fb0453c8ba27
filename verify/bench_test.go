package verify

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/blvm/blvm-sandbox/internal/elftest"
	"github.com/blvm/blvm-sandbox/manifest"
)

// BenchmarkVerifySignature is one ECDSA secp256k1 verification over a
// manifest digest, including parsing the compact hex.
func BenchmarkVerifySignature(b *testing.B) {
	v, digest := loadVectors(b)
	k := v.Keys[0]
	pub, err := ParsePublicKeyHex(k.PublicKey)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		sig, _, err := ParseSignature(k.Compact)
		if err != nil || !sig.Verify(digest[:], pub) {
			b.Fatal("does not verify")
		}
	}
}

// BenchmarkSealReuse is a full Verify of an unchanged module the second
// time: 2-of-3 signatures, expiry, node version, rollback, and a store
// entry reused without reading the binary.
func BenchmarkSealReuse(b *testing.B) {
	f := newFixture(b, "2-of-3", "alice", "bob")
	if _, err := f.verify(b); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		res, err := f.verify(b)
		if err != nil || !res.Reused {
			b.Fatalf("reused=%v err=%v", res.Reused, err)
		}
	}
}

// BenchmarkSeal is a first-time seal of a 64 MiB binary: open, hash while
// copying, fsync, rename. Compare its MB/s with `sha256sum`.
func BenchmarkSeal(b *testing.B) {
	const size = 64 << 20
	dir, root := b.TempDir(), b.TempDir()
	data := make([]byte, size)
	rand.Read(data)
	copy(data, elftest.Static("")) // a static ELF header: Seal reads it
	if err := os.WriteFile(filepath.Join(dir, "mod"), data, 0o755); err != nil {
		b.Fatal(err)
	}
	sum := sha256.Sum256(data)
	m := &manifest.Manifest{Name: "bench", Version: "1.0.0", EntryPoint: "mod",
		Binary: &manifest.Binary{Hash: "sha256:" + hex.EncodeToString(sum[:]), Size: size}}
	s := &Store{Root: root}
	b.SetBytes(size)
	for b.Loop() {
		path, reused, err := s.Seal(dir, m)
		if err != nil || reused {
			b.Fatalf("reused=%v err=%v", reused, err)
		}
		b.StopTimer()
		os.Remove(path)
		b.StartTimer()
	}
}

// BenchmarkCheckSource is what `verify DIR` adds on a reused entry: open
// the module's 16 MiB binary through safefile and re-hash it.
func BenchmarkCheckSource(b *testing.B) {
	const size = 16 << 20
	dir := b.TempDir()
	data := make([]byte, size)
	rand.Read(data)
	copy(data, elftest.Static("")) // a static ELF header: Seal reads it
	if err := os.WriteFile(filepath.Join(dir, "mod"), data, 0o755); err != nil {
		b.Fatal(err)
	}
	sum := sha256.Sum256(data)
	m := &manifest.Manifest{Name: "bench", Version: "1.0.0", EntryPoint: "mod",
		Binary: &manifest.Binary{Hash: "sha256:" + hex.EncodeToString(sum[:]), Size: size}}
	b.SetBytes(size)
	for b.Loop() {
		if err := CheckSource(dir, m); err != nil {
			b.Fatal(err)
		}
	}
}
