package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"testing"

	"github.com/blvm/blvm-sandbox/devchain"
	"github.com/blvm/blvm-sandbox/ipc/hub"
	"github.com/blvm/blvm-sandbox/manager"
	"github.com/blvm/blvm-sandbox/nodeconfig"
	"github.com/blvm/blvm-sandbox/runtime"
	"github.com/blvm/blvm-sandbox/verify"
)

// P8: 100 signed modules, each requiring the one before it, discovered,
// verified and started by the manager in dependency order. P7 is taken on
// the same daemon: host memory per loaded module beyond the module's own
// (the daemon's RSS growth, and the kernel's less what the modules' cgroups
// are charged).

const chainLength = 100

// chainFixture writes the modules dir and the node config once.
func chainFixture(b *testing.B) (cfg *nodeconfig.Config) {
	b.Helper()
	dir, err := os.MkdirTemp("", "blvm-chain-")
	if err != nil {
		b.Fatal(err)
	}
	os.Chmod(dir, 0o711)
	b.Cleanup(func() { os.RemoveAll(dir) })
	key, err := verify.GenerateKey()
	if err != nil {
		b.Fatal(err)
	}
	bin, err := os.ReadFile(built.Hostile)
	if err != nil {
		b.Fatal(err)
	}
	modules := filepath.Join(dir, "modules")
	var pub string
	for i := 0; i < chainLength; i++ {
		name := fmt.Sprintf("c%03d", i)
		mdir := filepath.Join(modules, name)
		os.MkdirAll(mdir, 0o755)
		os.WriteFile(filepath.Join(mdir, "hostile"), bin, 0o755)
		os.WriteFile(filepath.Join(mdir, "config.toml"), []byte(sleepConfig), 0o644)
		src := fmt.Sprintf("name = %q\nversion = \"1.0.0\"\nentry_point = \"hostile\"\ncapabilities = [\"read_blockchain\"]\n\n[config_schema]\nattack = \"\"\narg = \"\"\n", name)
		if i > 0 {
			src += fmt.Sprintf("\n[dependencies]\n\"c%03d\" = \"^1.0.0\"\n", i-1)
		}
		path := filepath.Join(mdir, "module.toml")
		signed, err := verify.SignSource(path, []byte(src), key, "bench", "1-of-1", filepath.Join(mdir, "hostile"))
		if err != nil {
			b.Fatal(err)
		}
		os.WriteFile(path, signed.Source, 0o644)
		pub = signed.PublicKey
	}
	config := fmt.Sprintf("[paths]\nroot = %q\nmodules_dir = %q\n\n[trust]\nthreshold = \"1-of-1\"\nmaintainers = [{ name = \"bench\", public_key = %q }]\n",
		filepath.Join(dir, "root"), modules, pub)
	cfg, err = nodeconfig.ParseBytes("node.toml", []byte(config))
	if err != nil {
		b.Fatal(err)
	}
	return cfg
}

func BenchmarkLoadChain100(b *testing.B) {
	buildModule(b)
	cfg := chainFixture(b)
	host, err := runtime.DetectHost("/sys/fs/cgroup", cfg.Paths.Root)
	if err != nil {
		b.Fatal(err)
	}
	os.MkdirAll(cfg.Paths.Root, 0o711)
	chain, err := devchain.Open(filepath.Join(cfg.Paths.Root, "devchain.db"), devchain.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer chain.Close()
	quiet := slog.New(slog.DiscardHandler)
	var hostPerModule, runtimePerModule float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		h := hub.New(chain, hub.Config{NodeVersion: cfg.Node.Version, Logger: quiet})
		mgr, err := manager.New(manager.Options{Config: cfg, Shim: built.Shim, Host: host, Hub: h, Logger: quiet, PrepareAhead: prepareAhead()})
		if err != nil {
			b.Fatal(err)
		}
		// A failed run must not leave 100 containers behind; after a clean
		// run this finds nothing left to do.
		b.Cleanup(func() { mgr.Shutdown(context.Background()); h.Close() })
		debug.FreeOSMemory()
		rss0 := meminfo(b, "/proc/self/status", "VmRSS")
		k0 := meminfo(b, "/proc/meminfo", "Slab", "PageTables", "KernelStack")
		b.StartTimer()
		if err := mgr.Discover(context.Background()); err != nil {
			b.Fatal(err)
		}
		if err := mgr.LoadAll(context.Background()); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		running := 0
		var kmem uint64
		for _, m := range mgr.Modules() {
			if m.State == "running" {
				running++
			}
			kmem += m.KernelMemoryBytes
		}
		if running != chainLength {
			b.Fatalf("%d of %d modules running", running, chainLength)
		}
		debug.FreeOSMemory()
		runtimePerModule = float64(meminfo(b, "/proc/self/status", "VmRSS")-rss0) / chainLength
		// The kernel's growth, less what the modules' own cgroups are
		// charged for (their stacks, page tables, slab objects).
		kernel := meminfo(b, "/proc/meminfo", "Slab", "PageTables", "KernelStack") - k0 - int64(kmem)
		hostPerModule = runtimePerModule + float64(kernel)/chainLength
		if err := mgr.Shutdown(context.Background()); err != nil {
			b.Fatal(err)
		}
		h.Close()
		b.StartTimer()
	}
	b.ReportMetric(hostPerModule/1024, "host-KiB/module")
	b.ReportMetric(runtimePerModule/1024, "daemon-KiB/module")
}

// prepareAhead lets a run try other depths: BLVM_PREPARE_AHEAD=N.
func prepareAhead() int {
	n, _ := strconv.Atoi(os.Getenv("BLVM_PREPARE_AHEAD"))
	return n
}
