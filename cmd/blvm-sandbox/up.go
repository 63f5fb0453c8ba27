package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/blvm/blvm-sandbox/admin"
	"github.com/blvm/blvm-sandbox/devchain"
	"github.com/blvm/blvm-sandbox/ipc/hub"
	"github.com/blvm/blvm-sandbox/manager"
	"github.com/blvm/blvm-sandbox/nodeconfig"
	"github.com/blvm/blvm-sandbox/runtime"
)

type upFlags struct {
	config        string
	adminSocket   string
	shim          string
	blockInterval time.Duration
	shutdown      time.Duration
}

func newUpCommand(stdout, stderr io.Writer) *cobra.Command {
	var f upFlags
	cmd := &cobra.Command{
		Use:   "up --config FILE",
		Short: "Run the node side: the dev chain, the API hub and every enabled module, supervised",
		Long: `up discovers the modules in [paths] modules_dir, verifies each against the
operator's pinned keys, and starts the enabled ones in dependency order, each
in its own sandbox, behind the API hub on the embedded regtest chain. The
admin API listens on --admin-socket for ps, stop, start, logs and cli.
SIGTERM or Ctrl-C stops the modules in reverse dependency order and exits.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runUp(stderr, &f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "operator node config (required)")
	fl.StringVar(&f.adminSocket, "admin-socket", defaultAdminSocket(), "admin API socket (root only)")
	fl.StringVar(&f.shim, "shim", "", "the static Landlock shim (default: blvm-landlock-shim beside this binary)")
	fl.DurationVar(&f.blockInterval, "block-interval", devchain.DefaultBlockInterval, "how often the dev chain mines a block")
	fl.DurationVar(&f.shutdown, "shutdown-timeout", time.Minute, "how long to wait for the modules to stop")
	return cmd
}

// defaultAdminSocket is BLVM_ADMIN_SOCKET, else admin.DefaultSocket.
func defaultAdminSocket() string {
	if s := os.Getenv("BLVM_ADMIN_SOCKET"); s != "" {
		return s
	}
	return admin.DefaultSocket
}

func runUp(stderr io.Writer, f *upFlags) error {
	if f.config == "" {
		return badInput(errors.New("up: --config FILE is required"))
	}
	cfg, err := nodeconfig.Parse(f.config)
	if err != nil {
		return badInput(err)
	}
	shim, err := shimPath(f.shim)
	if err != nil {
		return badInput(err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	host, err := runtime.DetectHost("/sys/fs/cgroup", cfg.Paths.Root)
	if err != nil {
		return fmt.Errorf("up: host: %w", err)
	}
	if host.LandlockABI < cfg.Sandbox.MinLandlockABI {
		return refused(fmt.Errorf("up: this kernel's Landlock ABI is %d; [sandbox] min_landlock_abi is %d", host.LandlockABI, cfg.Sandbox.MinLandlockABI))
	}
	if err := os.MkdirAll(cfg.Paths.Root, 0o711); err != nil {
		return fmt.Errorf("up: %w", err)
	}
	chain, err := devchain.Open(filepath.Join(cfg.Paths.Root, "devchain.db"), devchain.Options{BlockInterval: f.blockInterval, Logger: log})
	if err != nil {
		return fmt.Errorf("up: dev chain: %w", err)
	}
	defer chain.Close()
	h := hub.New(chain, hub.Config{NodeVersion: cfg.Node.Version, Logger: log})
	defer h.Close()
	mgr, err := manager.New(manager.Options{Config: cfg, Shim: shim, Host: host, Hub: h, Logger: log})
	if err != nil {
		return fmt.Errorf("up: %w", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, unix.SIGTERM)
	defer stop()
	// A closed log pipe must not kill the daemon before it stops its
	// modules; a failed log write is dropped instead.
	signal.Ignore(unix.SIGPIPE)
	srv := admin.NewServer(mgr, admin.ServerOptions{Socket: f.adminSocket, Logger: log})
	adminDone := make(chan error, 1)
	go func() { adminDone <- srv.Serve(ctx) }()
	go chain.Run(ctx)

	tip, height, _ := chain.ChainTip(ctx)
	log.Info("node up", "network", chain.Network(), "height", height, "tip", tip.String(), "root", cfg.Paths.Root,
		"modules_dir", cfg.Paths.ModulesDir, "admin", f.adminSocket, "landlock_abi", host.LandlockABI, "cgroup", host.CgroupVersion)
	if err := mgr.Discover(ctx); err != nil {
		log.Error("discovery", "err", err)
	}
	if err := mgr.LoadAll(ctx); err != nil {
		log.Warn("some modules did not load; the others run", "err", err)
	}

	select {
	case <-ctx.Done():
	case err := <-adminDone:
		if err != nil {
			log.Error("admin API stopped", "err", err)
		}
	}
	log.Info("shutting down: stopping modules in reverse dependency order")
	sctx, cancel := context.WithTimeout(context.Background(), f.shutdown)
	defer cancel()
	if err := mgr.Shutdown(sctx); err != nil {
		return fmt.Errorf("up: shutdown: %w", err)
	}
	log.Info("stopped cleanly")
	return nil
}
