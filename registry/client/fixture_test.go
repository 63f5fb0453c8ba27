package client

import (
	"encoding/hex"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"

	"github.com/blvm/blvm-sandbox/internal/elftest"
	"github.com/blvm/blvm-sandbox/manifest"
	"github.com/blvm/blvm-sandbox/nodeconfig"
	"github.com/blvm/blvm-sandbox/policy"
	"github.com/blvm/blvm-sandbox/registry/repo"
	"github.com/blvm/blvm-sandbox/registry/server"
	"github.com/blvm/blvm-sandbox/verify"
)

var testHost = policy.Host{Arch: "amd64", LandlockABI: 6, CgroupVersion: 1}

// world is one registry on a real loopback server, the maintainers who
// sign for it, and a node that pins those maintainers.
type world struct {
	t    *testing.T
	dir  string // the repository
	repo *repo.Repo
	srv  *httptest.Server
	keys []*secp256k1.PrivateKey
	node string // node root
	cfg  *nodeconfig.Config
}

func newWorld(t *testing.T) *world {
	t.Helper()
	base := t.TempDir()
	w := &world{t: t, dir: filepath.Join(base, "registry"), node: filepath.Join(base, "node")}
	var err error
	if w.repo, err = repo.Init(w.dir, 2, 3); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		k, err := verify.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		w.keys = append(w.keys, k)
	}
	w.srv = httptest.NewServer(server.Handler(w.dir, nil))
	t.Cleanup(w.srv.Close)
	w.cfg = w.nodeConfig(w.keys)
	return w
}

func pub(k *secp256k1.PrivateKey) string { return hex.EncodeToString(k.PubKey().SerializeCompressed()) }

// nodeConfig pins keys with a threshold of all of them.
func (w *world) nodeConfig(keys []*secp256k1.PrivateKey) *nodeconfig.Config {
	var b strings.Builder
	fmt.Fprintf(&b, "[node]\nversion = \"0.2.0\"\n[paths]\nroot = %q\n[trust]\nthreshold = \"%d-of-%d\"\n", w.node, len(keys), len(keys))
	for i, k := range keys {
		fmt.Fprintf(&b, "[[trust.maintainers]]\nname = \"m%d\"\npublic_key = %q\n", i, pub(k))
	}
	cfg, err := nodeconfig.ParseBytes(filepath.Join(w.node, "node.toml"), []byte(b.String()))
	if err != nil {
		w.t.Fatal(err)
	}
	return cfg
}

// module writes a signed module dir and returns it.
func (w *world) module(name, version string, deps map[string]string, signers []*secp256k1.PrivateKey) string {
	w.t.Helper()
	dir := filepath.Join(w.t.TempDir(), name+"-"+version)
	os.MkdirAll(dir, 0o755)
	bin := filepath.Join(dir, name)
	if err := os.WriteFile(bin, elftest.Static(name+" "+version+"\n"), 0o755); err != nil {
		w.t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "name = %q\nversion = %q\nentry_point = %q\ndescription = \"test module %s\"\ncapabilities = [\"read_blockchain\"]\n", name, version, name, name)
	b.WriteString("[dependencies]\n\"blvm-node\" = \">=0.1.0\"\n")
	keys := make([]string, 0, len(deps))
	for d := range deps {
		keys = append(keys, d)
	}
	sort.Strings(keys)
	for _, d := range keys {
		fmt.Fprintf(&b, "%q = %q\n", d, deps[d])
	}
	b.WriteString("[binary]\nhash = \"sha256:0000000000000000000000000000000000000000000000000000000000000000\"\nsize = 1\n")
	src := []byte(b.String())
	path := filepath.Join(dir, manifest.FileName)
	threshold := fmt.Sprintf("%d-of-%d", len(signers), len(signers))
	for i, k := range signers {
		s, err := verify.SignSource(path, src, k, fmt.Sprintf("m%d", i), threshold, bin)
		if err != nil {
			w.t.Fatal(err)
		}
		src = s.Source
	}
	if err := os.WriteFile(path, src, 0o644); err != nil {
		w.t.Fatal(err)
	}
	return dir
}

func (w *world) publish(name, version string, deps map[string]string) {
	w.t.Helper()
	if _, err := w.repo.Publish(w.module(name, version, deps, w.keys)); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) options(url string) Options {
	return Options{URL: url, RootFile: filepath.Join(w.dir, "root.json"), CacheDir: filepath.Join(w.node, "registry"), Timeout: 2 * time.Second}
}

func (w *world) open() (*Client, error) { return Open(w.options(w.srv.URL)) }

// install runs the whole flow for reqs.
func (w *world) install(c *Client, opt ResolveOptions, reqs ...string) ([]Staged, error) {
	var rs []Request
	for _, r := range reqs {
		q, err := ParseRequest(r)
		if err != nil {
			return nil, err
		}
		rs = append(rs, q)
	}
	plan, err := c.Resolve(w.cfg, rs, opt)
	if err != nil {
		return nil, err
	}
	st, err := c.Stage(plan, w.cfg, testHost, false, nil)
	if err != nil {
		return nil, err
	}
	defer Cleanup(st)
	return st, c.Commit(st, w.cfg)
}

func (w *world) installed(name string) string { return installedVersion(w.cfg.Paths.ModulesDir, name) }

func mustContain(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", want)
	}
	for _, s := range want {
		if !strings.Contains(err.Error(), s) {
			t.Fatalf("error %q does not contain %q", err, s)
		}
	}
}
