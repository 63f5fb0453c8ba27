package client

import (
	"crypto"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/blvm/blvm-sandbox/registry/layout"
	"github.com/blvm/blvm-sandbox/registry/repo"
	"github.com/blvm/blvm-sandbox/registry/server"
	"github.com/blvm/blvm-sandbox/verify"
)

func (w *world) metaPath(name string) string {
	return filepath.Join(repo.ServeDir(w.dir), layout.MetadataDir, name)
}

func (w *world) read(name string) []byte {
	data, err := os.ReadFile(w.metaPath(name))
	if err != nil {
		w.t.Fatal(err)
	}
	return data
}

func (w *world) write(name string, data []byte) {
	if err := os.WriteFile(w.metaPath(name), data, 0o644); err != nil {
		w.t.Fatal(err)
	}
}

// signer is the repository's current key for role: what an attacker who
// stole that one online key holds.
func (w *world) signer(role string) signature.Signer {
	root, err := metadata.Root().FromFile(w.metaPath("root.json"))
	if err != nil {
		w.t.Fatal(err)
	}
	id := root.Signed.Roles[role].KeyIDs[0]
	ents, _ := filepath.Glob(filepath.Join(w.dir, "keys", role+"-"+id[:16]+".key"))
	if len(ents) != 1 {
		w.t.Fatalf("key for %s: %v", role, ents)
	}
	data, _ := os.ReadFile(ents[0])
	seed, _ := hex.DecodeString(strings.TrimSpace(string(data)))
	s, err := signature.LoadSigner(ed25519.NewKeyFromSeed(seed), crypto.Hash(0))
	if err != nil {
		w.t.Fatal(err)
	}
	return s
}

func refreshCheck(t *testing.T, err error, check string) {
	t.Helper()
	var re *RefreshError
	if !errors.As(err, &re) {
		t.Fatalf("err = %v, want a RefreshError (%s)", err, check)
	}
	if !strings.HasPrefix(re.Check, check) {
		t.Fatalf("check = %q (%v), want %q", re.Check, err, check)
	}
}

func TestCompromisedRegistryInstallsNothingWithoutMaintainers(t *testing.T) {
	w := newWorld(t)
	attacker, _ := verify.GenerateKey()
	// The registry accepts and TUF-signs whatever it is given: here a
	// module whose first publisher pinned the attacker's key.
	if _, err := w.repo.Publish(w.module("evil", "1.0.0", nil, w.keys[:0:0])); err == nil {
		t.Fatal("publish of an unsigned module succeeded")
	}
	if _, err := w.repo.Publish(w.module("evil", "1.0.0", nil, append(w.keys[:0:0], attacker))); err != nil {
		t.Fatal(err)
	}
	c, err := w.open()
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.install(c, ResolveOptions{}, "evil")
	mustContain(t, err, "before downloading its binary", "threshold 2-of-2 not met")
	// Refused before a byte of its binary was fetched.
	for _, e := range c.Entries {
		bin, _ := layout.HexOf(e.Binary.Hash)
		for _, p := range []string{filepath.Join("blobs", "sha256", bin), filepath.Join("blobs", "partial", bin)} {
			if _, err := os.Stat(filepath.Join(c.opt.CacheDir, p)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the unsigned module's binary is in the cache: %s (%v)", p, err)
			}
		}
	}
	if w.installed("evil") != "" {
		t.Fatal("evil was installed")
	}
	if ents, _ := os.ReadDir(w.cfg.Paths.ModulesDir); len(ents) != 0 {
		t.Fatalf("modules dir holds %v", ents)
	}
}

func TestPublishRefusesKeyChangeWithoutOldThreshold(t *testing.T) {
	w := newWorld(t)
	w.publish("base", "1.0.0", nil)
	other, _ := verify.GenerateKey()
	_, err := w.repo.Publish(w.module("base", "1.1.0", nil, append(w.keys[:0:0], other)))
	mustContain(t, err, "against the keys pinned for base", "not met")
	// With the old threshold as well, the new key set is accepted.
	if _, err := w.repo.Publish(w.module("base", "1.2.0", nil, append(append(w.keys[:0:0], w.keys...), other))); err != nil {
		t.Fatal(err)
	}
}

func TestRollbackOfTimestampRefused(t *testing.T) {
	w := newWorld(t)
	w.publish("base", "1.0.0", nil)
	old := w.read("timestamp.json")
	w.publish("base", "1.1.0", nil)
	if _, err := w.open(); err != nil {
		t.Fatal(err)
	}
	w.write("timestamp.json", old)
	_, err := w.open()
	refreshCheck(t, err, "rollback")
	mustContain(t, err, "timestamp version")
}

func TestRollbackOfSnapshotAndTargetsRefused(t *testing.T) {
	w := newWorld(t)
	w.publish("base", "1.0.0", nil)
	w.publish("base", "1.1.0", nil)
	if _, err := w.open(); err != nil {
		t.Fatal(err)
	}
	// An attacker with the timestamp key points a fresh timestamp at the
	// older snapshot.
	ts, _ := metadata.Timestamp().FromBytes(w.read("timestamp.json"))
	cur := ts.Signed.Meta["snapshot.json"].Version
	oldSnap := w.read(fmt.Sprintf("%d.snapshot.json", cur-1))
	ts.Signed.Version++
	ts.Signed.Meta["snapshot.json"] = metaOf(cur-1, oldSnap)
	ts.ClearSignatures()
	ts.Sign(w.signer("timestamp"))
	data, _ := ts.ToBytes(true)
	w.write("timestamp.json", data)
	_, err := w.open()
	refreshCheck(t, err, "rollback")
	mustContain(t, err, "snapshot version")

	// With the snapshot key too: a new snapshot naming the older targets.
	snap, _ := metadata.Snapshot().FromBytes(w.read(fmt.Sprintf("%d.snapshot.json", cur)))
	tv := snap.Signed.Meta["targets.json"].Version
	snap.Signed.Version = cur + 1
	snap.Signed.Meta["targets.json"] = metaOf(tv-1, w.read(fmt.Sprintf("%d.targets.json", tv-1)))
	snap.ClearSignatures()
	snap.Sign(w.signer("snapshot"))
	sdata, _ := snap.ToBytes(true)
	w.write(fmt.Sprintf("%d.snapshot.json", cur+1), sdata)
	ts.Signed.Version++
	ts.Signed.Meta["snapshot.json"] = metaOf(cur+1, sdata)
	ts.ClearSignatures()
	ts.Sign(w.signer("timestamp"))
	data, _ = ts.ToBytes(true)
	w.write("timestamp.json", data)
	_, err = w.open()
	refreshCheck(t, err, "rollback")
	mustContain(t, err, "targets.json version")
}

func metaOf(v int64, data []byte) *metadata.MetaFiles {
	m := metadata.MetaFile(v)
	tf, _ := metadata.TargetFile().FromBytes("x", data, "sha256")
	m.Length, m.Hashes = tf.Length, tf.Hashes
	return m
}

func TestExpiredTimestampRefused(t *testing.T) {
	w := newWorld(t)
	w.publish("base", "1.0.0", nil)
	w.repo.TimestampTTL = -time.Hour
	if err := w.repo.Refresh(); err != nil {
		t.Fatal(err)
	}
	_, err := w.open()
	refreshCheck(t, err, "freeze")
}

func TestMixAndMatchTargetsRefused(t *testing.T) {
	w := newWorld(t)
	w.publish("base", "1.0.0", nil)
	w.publish("mid", "1.0.0", nil)
	_, tv, _, _ := w.repo.Versions()
	// The current snapshot's targets file replaced by an older one's bytes.
	w.write(fmt.Sprintf("%d.targets.json", tv), w.read(fmt.Sprintf("%d.targets.json", tv-1)))
	_, err := w.open()
	refreshCheck(t, err, "length/hash")
}

func TestRootRotationChainAndSkippedRoot(t *testing.T) {
	w := newWorld(t)
	w.publish("base", "1.0.0", nil)
	if err := w.repo.Rotate("root"); err != nil {
		t.Fatal(err)
	}
	if err := w.repo.Rotate("targets"); err != nil {
		t.Fatal(err)
	}
	if r, _, _, _ := w.repo.Versions(); r != 3 {
		t.Fatalf("root version %d", r)
	}
	// A fresh client pinned to root 1 walks 1 -> 2 -> 3.
	c, err := w.open()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.install(c, ResolveOptions{}, "base"); err != nil {
		t.Fatal(err)
	}
	// A client that cannot get root 2 cannot skip to 3: it keeps root 1,
	// whose keys signed none of the current metadata.
	w2 := *w
	w2.node = t.TempDir()
	os.Rename(w.metaPath("2.root.json"), w.metaPath("2.root.json.hidden"))
	_, err = Open(w2.options(w.srv.URL))
	refreshCheck(t, err, "role signatures")
}

func TestFastForwardRecoveredByKeyRotation(t *testing.T) {
	w := newWorld(t)
	w.publish("base", "1.0.0", nil)
	legit := w.read("timestamp.json")
	// A stolen timestamp key signs version 1000; the client accepts it.
	ts, _ := metadata.Timestamp().FromBytes(legit)
	ts.Signed.Version = 1000
	ts.ClearSignatures()
	ts.Sign(w.signer("timestamp"))
	ff, _ := ts.ToBytes(true)
	w.write("timestamp.json", ff)
	if _, err := w.open(); err != nil {
		t.Fatal(err)
	}
	// The real timestamp is now a rollback to this client...
	w.write("timestamp.json", legit)
	_, err := w.open()
	refreshCheck(t, err, "rollback")
	// ...until the registry rotates the timestamp key: the fast-forwarded
	// timestamp no longer verifies under the new root and is dropped.
	if err := w.repo.Rotate("timestamp"); err != nil {
		t.Fatal(err)
	}
	c, err := w.open()
	if err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	if _, err := w.install(c, ResolveOptions{}, "base"); err != nil {
		t.Fatal(err)
	}
}

// hostile wraps the real server: when match says so, it answers instead.
func (w *world) hostile(match func(r *http.Request) bool, answer http.HandlerFunc) *httptest.Server {
	real := server.Handler(w.dir, nil)
	s := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if match(r) {
			answer(rw, r)
			return
		}
		real.ServeHTTP(rw, r)
	}))
	w.t.Cleanup(s.Close)
	return s
}

type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = '{'
	}
	return len(p), nil
}

func TestEndlessDataRefused(t *testing.T) {
	w := newWorld(t)
	w.publish("base", "1.0.0", nil)
	e, _ := w.repo.Entries()
	bin, _ := layout.HexOf(e[0].Binary.Hash)
	for _, file := range []string{"timestamp.json", "snapshot.json", "targets.json", "2.root.json", bin} {
		t.Run(file, func(t *testing.T) {
			w.node = t.TempDir()
			s := w.hostile(func(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, file) }, func(rw http.ResponseWriter, r *http.Request) {
				io.Copy(rw, io.LimitReader(endless{}, 64<<20))
			})
			c, err := Open(w.options(s.URL))
			if file == bin {
				if err != nil {
					t.Fatal(err)
				}
				_, err = w.install(c, ResolveOptions{}, "base")
				mustContain(t, err, "length bound")
				return
			}
			refreshCheck(t, err, "length bound")
		})
	}
}

func TestSlowServerTimesOut(t *testing.T) {
	w := newWorld(t)
	w.publish("base", "1.0.0", nil)
	s := w.hostile(func(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, "timestamp.json") }, func(rw http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
	})
	opt := w.options(s.URL)
	opt.Timeout = 300 * time.Millisecond
	start := time.Now()
	_, err := Open(opt)
	refreshCheck(t, err, "timeout")
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("took %s", d)
	}
}

func TestMirrorServingModifiedBlobsRefused(t *testing.T) {
	w := newWorld(t)
	w.publish("base", "1.0.0", nil)
	e, _ := w.repo.Entries()
	for _, which := range []string{"binary", "manifest"} {
		t.Run(which, func(t *testing.T) {
			w.node = t.TempDir()
			d := e[0].Binary
			if which == "manifest" {
				d = e[0].Manifest
			}
			h, _ := layout.HexOf(d.Hash)
			s := w.hostile(func(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, h) }, func(rw http.ResponseWriter, r *http.Request) {
				data, _ := os.ReadFile(filepath.Join(repo.ServeDir(w.dir), layout.BlobsDir, h))
				data[len(data)-2] ^= 1
				rw.Write(data)
			})
			c, err := Open(w.options(s.URL))
			if err != nil {
				t.Fatal(err)
			}
			_, err = w.install(c, ResolveOptions{}, "base")
			mustContain(t, err, which, "hash: got sha256:", "the signed index pins sha256:"+h)
			if w.installed("base") != "" {
				t.Fatal("installed")
			}
		})
	}
}

func TestDependencyOnlyInOlderSnapshotRefused(t *testing.T) {
	w := newWorld(t)
	w.publish("lib", "1.0.0", nil)
	w.publish("app", "1.0.0", map[string]string{"lib": "^1.0.0"})
	if _, err := w.open(); err != nil { // the client saw lib 1.0.0 once
		t.Fatal(err)
	}
	if err := w.repo.Remove("lib", "1.0.0"); err != nil {
		t.Fatal(err)
	}
	c, err := w.open()
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.install(c, ResolveOptions{}, "app")
	mustContain(t, err, "dependency of app 1.0.0", fmt.Sprintf("no version of lib in snapshot %d", c.Snapshot))
}

func TestPathTraversalRefused(t *testing.T) {
	w := newWorld(t)
	w.publish("base", "1.0.0", nil)
	for _, r := range []string{"../keys", "base/../../x", "a\x00b"} {
		if _, err := ParseRequest(r); err == nil {
			t.Errorf("request %q accepted", r)
		}
	}
	if _, err := ParseRequest("base@1.0.0/../../x"); err == nil {
		t.Error("traversal in a version constraint accepted")
	}
	c, err := w.open()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Blob("../../keys/root", 10, nil); err == nil || !strings.Contains(err.Error(), "not a sha256 hex digest") {
		t.Errorf("blob traversal: %v", err)
	}
	for _, p := range []string{"/blobs/sha256/..%2f..%2fkeys", "/metadata/..%2f..%2fpins.json", "/v1/modules/..%2fkeys", "/v1/modules/base/..%2f..%2f", "/metadata/../root.json"} {
		resp, err := http.Get(w.srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK || strings.Contains(string(body), "threshold") {
			t.Errorf("GET %s: %d %q", p, resp.StatusCode, body)
		}
	}
}

func TestYankedVersionNeedsAllowYanked(t *testing.T) {
	w := newWorld(t)
	w.publish("base", "1.0.0", nil)
	w.publish("base", "1.1.0", nil)
	if err := w.repo.Yank("base", "1.1.0"); err != nil {
		t.Fatal(err)
	}
	c, err := w.open()
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.install(c, ResolveOptions{}, "base@1.1.0")
	mustContain(t, err, "yanked: base 1.1.0 is yanked", "--allow-yanked")
	st, err := w.install(c, ResolveOptions{}, "base")
	if err != nil || st[0].Entry.Version != "1.0.0" {
		t.Fatalf("unpinned install chose %v, %v", st, err)
	}
	if _, err := w.install(c, ResolveOptions{AllowYanked: true}, "base@1.1.0"); err != nil {
		t.Fatal(err)
	}
	if w.installed("base") != "1.1.0" {
		t.Fatal("yanked version not installed with AllowYanked")
	}
}
