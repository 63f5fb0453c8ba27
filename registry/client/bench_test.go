package client

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/blvm/blvm-sandbox/registry/layout"
	"github.com/blvm/blvm-sandbox/registry/repo"
)

// BenchmarkBlobDownload: the client's bounded, hashed download of a 64 MiB
// blob from the registry server on loopback (sub-benchmark "client"), and
// curl of the same blob from the same server ("curl").
func BenchmarkBlobDownload(b *testing.B) {
	w := &world{}
	dir := b.TempDir()
	w.dir = filepath.Join(dir, "reg")
	if _, err := repo.Init(w.dir, 1, 1); err != nil {
		b.Fatal(err)
	}
	data := make([]byte, 64<<20)
	rand.Read(data)
	sum := sha256.Sum256(data)
	h := hex.EncodeToString(sum[:])
	os.WriteFile(filepath.Join(repo.ServeDir(w.dir), layout.BlobsDir, h), data, 0o644)
	srv := newBenchServer(w.dir)
	defer srv.Close()
	b.Run("client", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			c := &Client{opt: Options{URL: srv.URL, CacheDir: b.TempDir()}, fetch: &fetcher{http: newHTTPClient(0)}}
			// As install fetches a binary: its size signed, its space reserved.
			if _, err := c.blob(h, int64(len(data)), nil, true); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("curl", func(b *testing.B) {
		if _, err := exec.LookPath("curl"); err != nil {
			b.Skip("no curl")
		}
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			out := filepath.Join(b.TempDir(), "blob")
			if err := exec.Command("curl", "-sf", "-o", out, srv.URL+"/blobs/sha256/"+h).Run(); err != nil {
				b.Fatal(err)
			}
		}
	})
	// What the client does besides the transfer: hash and fsync.
	b.Run("curl-sha256-sync", func(b *testing.B) {
		if _, err := exec.LookPath("curl"); err != nil {
			b.Skip("no curl")
		}
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			out := filepath.Join(b.TempDir(), "blob")
			sh := "curl -sf " + srv.URL + "/blobs/sha256/" + h + " | tee " + out + " | sha256sum >/dev/null && sync " + out
			if err := exec.Command("sh", "-c", sh).Run(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func newBenchServer(dir string) *httptestServer { return startServer(dir) }
