package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/blvm/blvm-sandbox/devchain"
	"github.com/blvm/blvm-sandbox/internal/termesc"
	"github.com/blvm/blvm-sandbox/ipc/hub"
	"github.com/blvm/blvm-sandbox/loader"
	"github.com/blvm/blvm-sandbox/manager"
	"github.com/blvm/blvm-sandbox/nodeconfig"
	"github.com/blvm/blvm-sandbox/policy"
	"github.com/blvm/blvm-sandbox/runtime"
	"github.com/blvm/blvm-sandbox/verify"
)

type runFlags struct {
	nodeConfig     string
	root           string
	shim           string
	timeout        time.Duration
	allowDowngrade bool
	timings        bool
}

func newRunCommand(stdout, stderr io.Writer) *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run --node-config FILE [--timeout DURATION] MODULE_DIR",
		Short: "Verify a module and run it in its sandbox, in the foreground",
		Long: `run verifies the module, compiles its policy and runs the verified binary
in its container with stdout and stderr on this terminal. Every line the
module writes is prefixed "NAME| " and its control characters are escaped
(\x1b, \r, \u009b ...), so no line without that prefix comes from the
module: those are the runtime's own. A line the module has not ended yet is
printed when it ends, passes 4096 bytes, or the module exits. It exits with the
module's exit code (128+signal if it was killed, 125 if it never started).
The module talks to the API hub on the embedded dev chain (kept under the
runtime root). Ctrl-C or --timeout stops the module and cleans up.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runModule(stdout, stderr, &f, args[0], nil)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.nodeConfig, "node-config", "", "operator node config (required)")
	fl.StringVar(&f.root, "root", "", "runtime root (default: [paths] root)")
	fl.StringVar(&f.shim, "shim", "", "the static Landlock shim (default: beside this binary, else in "+runtime.ShimLibexec+" from it)")
	fl.DurationVar(&f.timeout, "timeout", 0, "stop the module after this long (0: no limit)")
	fl.BoolVar(&f.allowDowngrade, "allow-downgrade", false, "accept a version below the recorded high-water mark")
	fl.BoolVar(&f.timings, "timings", false, "print where the run spent its time, stage by stage, on stderr at the end")
	return cmd
}

// moduleExit carries the module's own exit code out of the command.
type moduleExit struct{ code int }

func (e moduleExit) Error() string { return fmt.Sprintf("module exited with %d", e.code) }

// runWatch lets record watch a run on the path run takes; run passes nil.
type runWatch struct {
	// policy replaces the verified module's policy before anything starts.
	policy func(p *policy.Policy, cfg *nodeconfig.Config, root string) (*policy.Policy, error)
	hub    hub.Observer
	// started is called once the container is created, just before the
	// module runs; ended with how it ended, before its container is
	// removed.
	started func(sup *runtime.Supervisor, name string)
	ended   func(exit runtime.ExitReason)
}

func runModule(stdout, stderr io.Writer, f *runFlags, dir string, watch *runWatch) error {
	var clock *stageClock
	if f.timings {
		clock = newStageClock(stderr)
		// Deferred first, so it runs last: teardown is everything the
		// deferred closes below do.
		defer func() { clock.mark("teardown"); clock.print() }()
	}
	cfg, root, err := operatorConfig("run", f.nodeConfig, f.root)
	if err != nil {
		return err
	}
	shim, err := shimPath(f.shim)
	if err != nil {
		return badInput(err)
	}
	host, err := runtime.DetectHost("/sys/fs/cgroup", root)
	if err != nil {
		return fmt.Errorf("run: host: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	clock.mark("config")
	// The root first: a root a daemon owns is refused before anything is
	// verified, and never recovered under the daemon's feet.
	sup, err := runtime.NewSupervisor(runtime.Options{
		Root: root, Shim: shim, Host: host, Restart: runtime.RestartPolicy{Never: true}, Logger: log,
		UIDBase: uint32(cfg.Sandbox.UIDBase),
	})
	if errors.Is(err, runtime.ErrRootBusy) {
		return refused(fmt.Errorf("run: %w\nrun never shares a root: talk to the daemon that owns it (blvm-sandbox install, load, ps, logs), or give run a root of its own with --root DIR", err))
	}
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	defer sup.Close(context.Background())
	clock.mark("supervisor")
	prep, err := loader.Prepare(dir, cfg, loader.Options{Root: root, Host: host, AllowDowngrade: f.allowDowngrade})
	if err != nil {
		return refused(fmt.Errorf("run: %w", err))
	}
	for _, w := range prep.Warnings {
		fmt.Fprintln(stderr, "warning:", termesc.String(w))
	}
	if watch != nil {
		if prep.Policy, err = watch.policy(prep.Policy, cfg, root); err != nil {
			return fmt.Errorf("run: %w", err)
		}
	}
	clock.mark("verify")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, unix.SIGTERM)
	defer stop()
	if f.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.timeout)
		defer cancel()
	}
	// The module talks to a real hub on the embedded dev chain.
	chain, err := devchain.Open(filepath.Join(root, "devchain.db"), devchain.Options{Logger: log})
	if err != nil {
		return fmt.Errorf("run: dev chain: %w", err)
	}
	defer chain.Close()
	backend, mine, stopBackend, err := nodeBackend(cfg, chain, log)
	if err != nil {
		return badInput(fmt.Errorf("run: %w", err))
	}
	defer stopBackend()
	if mine {
		go chain.Run(ctx)
	}
	clock.mark("backend")
	hcfg := hub.Config{NodeVersion: cfg.Node.Version, Logger: log}
	if watch != nil {
		hcfg.Observer = watch.hub
	}
	h := hub.New(backend, hcfg)
	defer h.Close()
	name := prep.Manifest.Name
	// The module's lines are framed, its partial lines held back, so that
	// it can neither forge nor split a line of the runtime's log.
	modOut := termesc.NewLineWriter(stdout, name+"| ")
	modErr := termesc.NewLineWriter(stderr, name+"| ")
	defer modOut.Close()
	defer modErr.Close()
	spec := hub.ModuleSpec{
		ID: name + "@" + prep.Manifest.Version, Name: name, Version: prep.Manifest.Version,
		Capabilities: prep.Capabilities.Names(), ACL: prep.Policy.Hub,
	}
	err = sup.Prepare(ctx, runtime.Module{
		Policy: prep.Policy, Binary: prep.Verified.StorePath, Config: prep.Config, Expires: manager.Expiry(prep.Manifest),
		Serve: func(ln net.Listener, uid int, ready func()) error {
			spec.PeerUID, spec.OnReady = uid, ready
			return h.Attach(spec, ln)
		},
		Stdout: modOut, Stderr: modErr,
	})
	if err == nil {
		clock.mark("create")
		if watch != nil {
			watch.started(sup, name)
		}
		err = sup.Run(ctx, name)
	}
	if err != nil {
		// The module never ran: 125, as the help says, not bad input.
		return &exitError{code: 125, err: fmt.Errorf("run: %w", err)}
	}
	if err := verify.RecordLoaded(root, name, prep.Manifest.Version); err != nil {
		fmt.Fprintln(stderr, "warning: rollback mark not recorded:", err)
	}
	clock.mark("start")
	exit, err := sup.Wait(ctx, name)
	clock.mark("module")
	// What the module wrote comes before how it ended.
	modOut.Close()
	modErr.Close()
	if err != nil {
		// Interrupted or timed out: stop it, clean up, report how it ended.
		stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		exit, err = sup.Stop(stopCtx, name)
		if err != nil {
			return fmt.Errorf("run: stop %s: %w", name, err)
		}
		fmt.Fprintf(stderr, "%s stopped (%v): %s\n", name, context.Cause(ctx), exit)
		if watch != nil {
			watch.ended(exit)
		}
		return moduleExit{code: exit.ShellCode()}
	}
	if st, ok := sup.Status(name); ok && st.State == runtime.Expired {
		fmt.Fprintf(stderr, "%s stopped: its signatures expired at %s (%s)\n", name, prep.Manifest.Expires.UTC().Format(time.RFC3339), exit)
	} else if !exit.Clean() {
		fmt.Fprintf(stderr, "%s %s\n", name, exit)
	}
	if watch != nil {
		watch.ended(exit)
	}
	sup.Stop(context.Background(), name)
	clock.mark("stop")
	return moduleExit{code: exit.ShellCode()}
}

// shimPath finds the static shim (runtime.FindShim decides where).
func shimPath(flag string) (string, error) { return runtime.FindShim(flag) }
