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
	"strings"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
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
SIGHUP (or 'blvm-sandbox reload') re-reads the node config and restarts only
the modules whose settings changed. SIGTERM or Ctrl-C stops the modules in
reverse dependency order and exits. Under systemd (Type=notify) it reports
READY=1 once the admin API listens and the enabled modules were started or
refused, RELOADING=1 around a reload and STOPPING=1 at shutdown.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runUp(stderr, &f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "operator node config (required)")
	fl.StringVar(&f.adminSocket, "admin-socket", defaultAdminSocket(), "admin API socket (root only)")
	fl.StringVar(&f.shim, "shim", "", "the static Landlock shim (default: beside this binary, else in "+runtime.ShimLibexec+" from it)")
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
	// At once, not module by module: each would be refused for the same
	// reason.
	if uid := os.Geteuid(); uid != 0 {
		return refused(fmt.Errorf("up: the daemon must run as root, and runs as uid %d: it maps a host uid range into each module's user namespace, creates cgroups, mounts disk-quota images and serves %s; start it as root (sudo, or the systemd unit in contrib/systemd)", uid, f.adminSocket))
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
	// The root before anything under it (the dev chain): a second daemon
	// on it is refused with the owner's pid and touches nothing.
	owner, err := runtime.LockRoot(cfg.Paths.Root)
	if errors.Is(err, runtime.ErrRootBusy) {
		return refused(fmt.Errorf("up: %w\nanother daemon owns this root: stop it first, or give this one its own [paths] root", err))
	}
	if err != nil {
		return fmt.Errorf("up: %w", err)
	}
	defer owner.Release()
	chain, err := devchain.Open(filepath.Join(cfg.Paths.Root, "devchain.db"), devchain.Options{BlockInterval: f.blockInterval, Logger: log})
	if err != nil {
		return fmt.Errorf("up: dev chain: %w", err)
	}
	defer chain.Close()
	backend, mine, stopBackend, err := nodeBackend(cfg, chain, log)
	if err != nil {
		return badInput(fmt.Errorf("up: %w", err))
	}
	defer stopBackend()
	h := hub.New(backend, hub.Config{NodeVersion: cfg.Node.Version, Logger: log})
	defer h.Close()
	mgr, err := manager.New(manager.Options{Config: cfg, Shim: shim, Host: host, Hub: h, Logger: log, Owner: owner})
	if err != nil {
		return fmt.Errorf("up: %w", err)
	}
	notify := sdNotifier(log)
	d := &daemonManager{Manager: mgr, notify: notify}
	// The admin socket before any module: a daemon that cannot be driven
	// must not run modules, and exits non-zero so that its supervisor sees
	// it failed.
	srv := admin.NewServer(d, admin.ServerOptions{Socket: f.adminSocket, Logger: log})
	if err := srv.Listen(); err != nil {
		return refused(fmt.Errorf("up: %w", err))
	}
	defer srv.Close()

	// Signals first, so that a SIGHUP while the modules load waits for its
	// turn instead of killing the daemon.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, unix.SIGTERM, unix.SIGHUP)
	defer signal.Stop(sigs)
	// A closed log pipe must not kill the daemon before it stops its
	// modules; a failed log write is dropped instead.
	signal.Ignore(unix.SIGPIPE)
	// The modules' context ends at the first SIGTERM; the admin API's only
	// after the modules stopped, so that event streams carry the unloads.
	ctx, stopModules := context.WithCancel(context.Background())
	defer stopModules()
	serveCtx, stopServing := context.WithCancel(context.Background())
	defer stopServing()
	adminDone := make(chan error, 1)
	go func() { adminDone <- srv.Serve(serveCtx) }()
	if mine {
		go chain.Run(ctx)
	}

	tip, height, _ := backend.ChainTip(ctx)
	log.Info("node up", "backend", cfg.Backend.Kind, "network", backend.Network(), "height", height, "tip", tip.String(), "root", cfg.Paths.Root,
		"modules_dir", cfg.Paths.ModulesDir, "admin", f.adminSocket, "landlock_abi", host.LandlockABI, "cgroup", host.CgroupVersion)
	if err := mgr.Discover(ctx); err != nil {
		log.Error("discovery", "err", err)
	}
	// STATUS= follows the modules, so that systemctl status shows the
	// counts of now; the stream ends with the shutdown.
	go func() {
		for range mgr.Subscribe(serveCtx) {
			notify(statusLine(mgr.Modules()))
		}
	}()
	loadDone := make(chan error, 1)
	go func() { loadDone <- mgr.LoadAll(ctx) }()
	var adminErr error
	loading := true
wait:
	for {
		select {
		case err := <-loadDone:
			if err != nil {
				log.Warn("some modules did not load; the others run", "err", err)
			}
			loading = false
			notify("READY=1\n" + statusLine(mgr.Modules()))
		case sig := <-sigs:
			if sig != unix.SIGHUP {
				log.Info("signal", "signal", sig.String())
				break wait
			}
			if loading {
				// Applied once the boot's loads are done (Reload waits
				// for LoadAll), without holding up a SIGTERM meanwhile.
				go d.reloadAndLog(log)
				continue
			}
			d.reloadAndLog(log)
		case adminErr = <-adminDone:
			if adminErr != nil {
				log.Error("admin API stopped", "err", adminErr)
			}
			break wait
		}
	}
	notify("STOPPING=1")
	stopModules()
	log.Info("shutting down: stopping modules in reverse dependency order")
	sctx, cancel := context.WithTimeout(context.Background(), f.shutdown)
	defer cancel()
	if loading {
		<-loadDone // ends soon: its context is cancelled
	}
	shutErr := mgr.Shutdown(sctx)
	stopServing()
	if adminErr == nil {
		adminErr = <-adminDone
	}
	if shutErr != nil {
		return fmt.Errorf("up: shutdown: %w", shutErr)
	}
	if adminErr != nil {
		return fmt.Errorf("up: %w", adminErr)
	}
	log.Info("stopped cleanly")
	return nil
}

// daemonManager is the manager as the daemon serves it: a reload, from
// SIGHUP or the admin API, is announced to systemd.
type daemonManager struct {
	*manager.Manager
	notify func(string)
}

func (d *daemonManager) Reload(ctx context.Context) (*admin.ReloadReport, error) {
	// MONOTONIC_USEC: Type=notify-reload wants it with RELOADING=1.
	d.notify(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", monotonicUsec()))
	rep, err := d.Manager.Reload(ctx)
	status := statusLine(d.Modules())
	if err != nil {
		status = "STATUS=reload refused; " + strings.TrimPrefix(status, "STATUS=")
	}
	d.notify("READY=1\n" + status)
	return rep, err
}

func (d *daemonManager) reloadAndLog(log *slog.Logger) {
	log.Info("SIGHUP: reloading the node config")
	if _, err := d.Reload(context.Background()); err != nil {
		log.Error("reload refused; nothing changed", "err", err)
	}
}

// statusLine is systemd's STATUS=: the modules by state.
func statusLine(mods []admin.ModuleInfo) string {
	count := map[string]int{}
	for _, m := range mods {
		count[m.State]++
	}
	var parts []string
	for _, st := range admin.States() {
		if n := count[st]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, st))
		}
	}
	if len(parts) == 0 {
		return "STATUS=no modules"
	}
	return fmt.Sprintf("STATUS=%d modules: %s", len(mods), strings.Join(parts, ", "))
}

// sdNotifier sends to $NOTIFY_SOCKET when systemd (Type=notify) set it; a
// no-op otherwise.
func sdNotifier(log *slog.Logger) func(string) {
	return func(state string) {
		if _, err := sddaemon.SdNotify(false, state); err != nil {
			log.Warn("sd_notify", "err", err)
		}
	}
}

func monotonicUsec() int64 {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) != nil {
		return 0
	}
	return ts.Nano() / 1000
}
