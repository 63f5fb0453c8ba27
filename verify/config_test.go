package verify

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/blvm/blvm-sandbox/manifest"
)

const shippedConfig = "[votes]\n\"softfork-signal-demo\" = \"yes\"\n"

// pinConfig writes config.toml into the fixture's module dir, pins it in
// [config] and re-signs, as `sign` does.
func (f *fixture) pinConfig(t *testing.T, content string, signers ...string) {
	t.Helper()
	writeFile(t, filepath.Join(f.dir, manifest.ConfigFileName), []byte(content))
	sum := sha256.Sum256([]byte(content))
	f.m.Config = &manifest.Config{Hash: "sha256:" + hex.EncodeToString(sum[:]), Size: int64(len(content))}
	f.sign(t, signers...)
}

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

func TestConfigPinnedAndMatching(t *testing.T) {
	f := newFixture(t, "1-of-3", "alice")
	f.pinConfig(t, shippedConfig, "alice")
	res, err := f.verify(t)
	if err != nil || !res.OK() {
		t.Fatalf("Verify: %v", err)
	}
	if !bytes.Equal(res.Config, []byte(shippedConfig)) {
		t.Errorf("Result.Config = %q, want the bytes hashed", res.Config)
	}
	c := findCheck(t, res, "config")
	if !c.OK || !strings.Contains(c.Detail, sha(shippedConfig)) {
		t.Errorf("config line %+v", c)
	}
}

// The attack: [votes] yes -> no after signing. The refusal names the
// file and both hashes, and nothing reaches the store.
func TestConfigChangedAfterSigning(t *testing.T) {
	f := newFixture(t, "1-of-3", "alice")
	f.pinConfig(t, shippedConfig, "alice")
	evil := strings.Replace(shippedConfig, "yes", "no", 1)
	writeFile(t, filepath.Join(f.dir, "config.toml"), []byte(evil))
	res, err := f.verify(t)
	if err == nil || res.OK() || res.Config != nil {
		t.Fatalf("tampered config verified: %v", err)
	}
	path := filepath.Join(f.dir, "config.toml")
	want := "config: " + path + " is " + sha(evil) + " (38 bytes); [config] pins " + sha(shippedConfig) + " (39 bytes)"
	if err.Error() != want {
		t.Errorf("error\n  %q\nwant\n  %q", err, want)
	}
	if c := findCheck(t, res, "hash"); c.OK || !strings.HasPrefix(c.Detail, "not checked") {
		t.Errorf("hash line %+v", c)
	}
	assertNoEntries(t, f.root)
}

func TestConfigRefusals(t *testing.T) {
	for name, tt := range map[string]struct {
		setup func(t *testing.T, f *fixture)
		want  string
	}{
		"unpinned": {func(t *testing.T, f *fixture) {
			writeFile(t, filepath.Join(f.dir, "config.toml"), []byte(shippedConfig))
		}, "is not pinned by [config], so the signatures do not cover it; refused"},
		"pinned but missing": {func(t *testing.T, f *fixture) {
			f.pinConfig(t, shippedConfig, "alice")
			os.Remove(filepath.Join(f.dir, "config.toml"))
		}, "config.toml is missing; [config] pins " + sha(shippedConfig) + " (39 bytes)"},
		"symlink": {func(t *testing.T, f *fixture) {
			f.pinConfig(t, shippedConfig, "alice")
			os.Remove(filepath.Join(f.dir, "config.toml"))
			os.Symlink("/etc/shadow", filepath.Join(f.dir, "config.toml"))
		}, "config.toml: is a symlink"},
		"fifo": {func(t *testing.T, f *fixture) {
			f.pinConfig(t, shippedConfig, "alice")
			os.Remove(filepath.Join(f.dir, "config.toml"))
			syscall.Mkfifo(filepath.Join(f.dir, "config.toml"), 0o644)
		}, "config.toml: is a FIFO, not a regular file"},
		"oversize": {func(t *testing.T, f *fixture) {
			f.pinConfig(t, shippedConfig, "alice")
			writeFile(t, filepath.Join(f.dir, "config.toml"), make([]byte, 1<<20+1))
		}, "config.toml: is 1048577 bytes, over the limit of 1048576 bytes"},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, "1-of-3", "alice")
			tt.setup(t, f)
			res, err := f.verify(t)
			if err == nil || res.OK() || !strings.HasPrefix(err.Error(), "config: ") || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Verify = %v, want %q", err, tt.want)
			}
			if c := findCheck(t, res, "config"); c.OK {
				t.Errorf("config line %+v", c)
			}
			assertNoEntries(t, f.root)
		})
	}
}

// A load reuses the sealed entry without reading the module dir's binary;
// verify DIR (CheckSource) re-hashes it and names the hash when it changed.
func TestCheckSourceAfterReuse(t *testing.T) {
	f := newFixture(t, "1-of-3", "alice")
	if _, err := f.verify(t); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(f.dir, "example-module")
	bad := bytes.Clone(f.bin)
	bad[len(bad)-1] ^= 0xff // same size: only the hash tells
	writeFile(t, src, bad)

	res, err := f.verify(t)
	if err != nil || !res.Reused {
		t.Fatalf("a load after tampering: %v reused=%v; want the sealed entry reused", err, res.Reused)
	}
	res, err = Verify(f.dir, f.m, f.cfg, Options{Root: f.root, Now: testNow, CheckSource: true})
	sum := sha256.Sum256(bad)
	want := "hash: binary sha256:" + hex.EncodeToString(sum[:]) + " does not match manifest " + f.m.Binary.Hash
	if err == nil || res.OK() || err.Error() != want {
		t.Fatalf("CheckSource = %v, want %q", err, want)
	}
	writeFile(t, src, f.bin)
	res, err = Verify(f.dir, f.m, f.cfg, Options{Root: f.root, Now: testNow, CheckSource: true})
	if err != nil || !res.Reused || !strings.Contains(findCheck(t, res, "hash").Detail, "re-read from "+src) {
		t.Fatalf("restored binary: %v %+v", err, res.Checks)
	}
}

func findCheck(t *testing.T, res *Result, name string) Check {
	t.Helper()
	for _, c := range res.Checks {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no %q check in %+v", name, res.Checks)
	return Check{}
}
