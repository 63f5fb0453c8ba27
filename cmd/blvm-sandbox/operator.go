package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/blvm/blvm-sandbox/admin"
	"github.com/blvm/blvm-sandbox/internal/termesc"
)

// operator holds what the commands that talk to a running daemon share.
type operator struct {
	socket string
	stdout io.Writer
	stderr io.Writer
	now    func() time.Time
}

// addOperatorCommands adds ps, start, stop, restart, load, unload, logs,
// cli and events, which talk to `blvm-sandbox up` over its admin socket,
// and the persistent --admin-socket flag they share.
func addOperatorCommands(root *cobra.Command, stdout, stderr io.Writer) {
	o := &operator{stdout: stdout, stderr: stderr, now: time.Now}
	root.PersistentFlags().StringVar(&o.socket, "admin-socket", defaultAdminSocket(),
		"the daemon's admin socket; BLVM_ADMIN_SOCKET sets the default")
	root.AddCommand(o.psCommand())
	for _, a := range []struct{ verb, short string }{
		{"start", "Start a stopped module"},
		{"stop", "Stop a module; it stays listed as stopped"},
		{"restart", "Stop and start a module"},
		{"load", "Verify and start a discovered module (its dependencies must be loaded)"},
		{"unload", "Stop a module and the modules that require it, and forget it"},
	} {
		root.AddCommand(o.actionCommand(a.verb, a.short))
	}
	root.AddCommand(o.logsCommand())
	root.AddCommand(o.cliCommand())
	root.AddCommand(o.eventsCommand())
}

func (o *operator) client() *admin.Client { return &admin.Client{Socket: o.socket} }

// context ends on Ctrl-C or SIGTERM, so that a hung request or a follow
// ends when the operator says so.
func (o *operator) context() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, unix.SIGTERM)
}

// daemonError turns a Client error into what the operator reads and the
// exit code: 1 when the daemon is not there or said no, 2 when the input
// (a module name, a command) was wrong.
func (o *operator) daemonError(what string, err error) error {
	switch {
	case errors.Is(err, admin.ErrUnreachable) && errors.Is(err, fs.ErrPermission):
		return refused(fmt.Errorf("cannot reach the daemon at %s: permission denied: the admin socket is root-only", o.socket))
	case errors.Is(err, admin.ErrUnreachable):
		return refused(fmt.Errorf("cannot reach the daemon at %s: is `blvm-sandbox up` running?", o.socket))
	}
	// The daemon's own answers already say what was being done.
	var api *admin.APIError
	if !errors.As(err, &api) {
		err = fmt.Errorf("%s: %w", what, err)
	}
	if errors.Is(err, admin.ErrUnknownModule) || errors.Is(err, admin.ErrInvalid) {
		return badInput(err)
	}
	return refused(err)
}

func (o *operator) psCommand() *cobra.Command {
	var asJSON, quiet bool
	cmd := &cobra.Command{
		Use:   "ps [-q | --json]",
		Short: "List the daemon's modules with their state and live resource figures",
		Long: `ps prints one row per module: NAME VERSION STATE UPTIME RESTARTS MEM CPU
PIDS DISK INODES LAST-EXIT. MEM and PIDS show the cgroup limit after a slash
when there is one; CPU is the CPU time used. Refused and failed modules are
followed by the reason.

-q prints only the names, one per line. --json prints a versioned object
({"schema_version": 1, "modules": [...]}) whose fields are present in every
state, with sizes in bytes and the last exit as fields; docs/cli.md is its
reference.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := o.context()
			defer stop()
			mods, err := o.client().Modules(ctx)
			if err != nil {
				return o.daemonError("ps", err)
			}
			switch {
			case quiet:
				for _, m := range mods {
					fmt.Fprintln(o.stdout, esc(m.Name))
				}
			case asJSON:
				enc := json.NewEncoder(termesc.NewJSONWriter(o.stdout))
				enc.SetIndent("", "  ")
				return enc.Encode(psJSON(mods))
			default:
				o.printTable(mods)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the versioned JSON object (docs/cli.md)")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only the module names")
	cmd.MarkFlagsMutuallyExclusive("json", "quiet")
	return cmd
}

func (o *operator) printTable(mods []admin.ModuleInfo) {
	tw := tabwriter.NewWriter(o.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tVERSION\tSTATE\tUPTIME\tRESTARTS\tMEM\tCPU\tPIDS\tDISK\tINODES\tLAST-EXIT")
	for _, m := range mods {
		uptime, mem, cpu, pids := "-", "-", "-", "-"
		disk, inodes := "-", "-"
		if m.DiskBytesLimit > 0 {
			disk = withLimit(humanBytes(m.DiskBytes), m.DiskBytesLimit, humanBytes)
			inodes = withLimit(strconv.FormatUint(m.DiskInodes, 10), m.DiskInodesLimit, func(n uint64) string { return strconv.FormatUint(n, 10) })
		}
		if live(m.State) {
			if !m.StartedAt.IsZero() {
				uptime = humanDuration(o.now().Sub(m.StartedAt))
			}
			mem = withLimit(humanBytes(m.MemoryBytes), m.MemoryLimit, humanBytes)
			cpu = cpuTime(m.CPUNanos)
			pids = withLimit(strconv.FormatUint(m.Pids, 10), m.PidsLimit, func(n uint64) string { return strconv.FormatUint(n, 10) })
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n",
			esc(m.Name), esc(orDash(m.Version)), esc(orDash(m.State)), uptime, m.Restarts, mem, cpu, pids, disk, inodes, esc(orDash(m.LastExit)))
	}
	tw.Flush()
	for _, m := range mods {
		if m.Error != "" {
			fmt.Fprintf(o.stdout, "%s %s: %s\n", esc(m.Name), esc(m.State), esc(m.Error))
		}
	}
}

// esc escapes a field the daemon reports about a module: names, versions
// and errors may carry text the module or its manifest wrote.
func esc(s string) string { return termesc.String(s) }

// live reports whether a module in this state has a cgroup to measure.
func live(state string) bool {
	switch state {
	case admin.StateStarting, admin.StateRunning, admin.StateRestarting, admin.StateStopping:
		return true
	}
	return false
}

func (o *operator) actionCommand(verb, short string) *cobra.Command {
	return &cobra.Command{
		Use:   verb + " NAME...",
		Short: short,
		Long: short + `.

With several names the daemon acts on each in the order given, one after
the other; a name that fails is reported and the others still run. The
exit code is the worst of them: 0 all done, 1 the daemon refused one or is
not running, 2 a name is unknown or invalid.`,
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: o.completeModules,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := o.context()
			defer stop()
			c := o.client()
			do := map[string]func(context.Context, string) (*admin.ModuleInfo, error){
				"start": c.Start, "stop": c.Stop, "restart": c.Restart, "load": c.Load, "unload": c.Unload,
			}[verb]
			var worst *exitError
			failed := 0
			for _, name := range args {
				if ctx.Err() != nil {
					break
				}
				mi, err := do(ctx, name)
				if err != nil {
					unreachable := errors.Is(err, admin.ErrUnreachable)
					err = o.daemonError(verb+" "+name, err)
					if unreachable || len(args) == 1 {
						return err // nothing else would get through either
					}
					ee := &exitError{code: exitRefused, err: err}
					errors.As(err, &ee)
					fmt.Fprintln(o.stderr, esc(err.Error()))
					failed++
					if worst == nil || ee.code > worst.code {
						worst = ee
					}
					continue
				}
				switch {
				case mi == nil:
					fmt.Fprintf(o.stdout, "%s: unloaded\n", esc(name))
				case mi.Pid != 0:
					fmt.Fprintf(o.stdout, "%s: %s (pid %d)\n", esc(mi.Name), esc(mi.State), mi.Pid)
				default:
					fmt.Fprintf(o.stdout, "%s: %s\n", esc(mi.Name), esc(mi.State))
				}
			}
			if ctx.Err() != nil {
				return refused(fmt.Errorf("%s: interrupted", verb))
			}
			if worst != nil {
				return &exitError{code: worst.code, err: fmt.Errorf("%s: %d of %d modules failed", verb, failed, len(args))}
			}
			return nil
		},
	}
}

func (o *operator) logsCommand() *cobra.Command {
	var follow, raw, timestamps bool
	var tail int
	var since string
	cmd := &cobra.Command{
		Use:   "logs [-f] [--tail N] [--since TIME] [--timestamps] [--raw] NAME",
		Short: "Print a module's captured stdout and stderr",
		Long: `logs prints the module's log as the daemon captured it. With -f it keeps
printing what the module writes, across log rotation, until Ctrl-C.

The runtime stamps every line with the time it arrived. --tail N prints only
the last N lines of the current log (the rotated .1 files are not read);
--since prints the lines from a time on: RFC 3339 (2026-12-01T10:00:00Z), a
date (2026-12-01, local midnight), or a duration before now (10m, 2h).
--timestamps prefixes each line with its stamp (RFC 3339, UTC, nanoseconds).

Control characters (escape sequences, carriage returns, C1 controls, bidi
overrides) and bytes that are not UTF-8 are printed as visible escapes such
as \x1b, whether or not stdout is a terminal: a log piped to a pager or a
file is still read on a terminal later. --raw prints the bytes unchanged.`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: o.completeModules,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := admin.LogOptions{Follow: follow, Timestamps: timestamps}
			if cmd.Flags().Changed("tail") {
				if tail < 0 {
					return badInput(fmt.Errorf("logs: --tail %d: want a number of lines >= 0", tail))
				}
				opts.Tail, opts.TailSet = tail, true
			}
			if since != "" {
				t, err := parseSince(since, o.now())
				if err != nil {
					return badInput(fmt.Errorf("logs: --since %q: %w", since, err))
				}
				opts.Since = t
			}
			ctx, stop := o.context()
			defer stop()
			out := io.Writer(o.stdout)
			if !raw {
				w := termesc.NewWriter(o.stdout)
				defer w.Flush()
				out = w
			}
			if err := o.client().LogsWith(ctx, args[0], opts, out); err != nil {
				return o.daemonError("logs "+args[0], err)
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing what is appended")
	cmd.Flags().IntVarP(&tail, "tail", "n", 0, "print only the last N lines (default: all)")
	cmd.Flags().StringVar(&since, "since", "", "print lines from this time on: RFC 3339, a date, or a duration before now (10m)")
	cmd.Flags().BoolVarP(&timestamps, "timestamps", "t", false, "prefix each line with the time it arrived")
	cmd.Flags().BoolVar(&raw, "raw", false, "print the module's bytes unchanged, control characters included")
	return cmd
}

// parseSince reads --since: RFC 3339, a date (local midnight), or a
// duration before now.
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("a duration before now must not be negative")
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation(time.DateTime, s, time.Local); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation(time.DateOnly, s, time.Local); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("want RFC 3339 (2026-12-01T10:00:00Z), a date (2026-12-01) or a duration (10m)")
}

// moduleOutput is where a module's own output goes: w itself with raw or
// when w is not a terminal (the output is data for a pipe), else an
// escaping writer, so that the module draws nothing on the operator's
// terminal.
func moduleOutput(w io.Writer, raw bool) io.Writer {
	if raw || !isTerminal(w) {
		return w
	}
	return termesc.NewWriter(w)
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func (o *operator) cliCommand() *cobra.Command {
	var raw bool
	cmd := &cobra.Command{
		Use:               "cli [--raw] NAME [COMMAND [ARGS...]]",
		ValidArgsFunction: o.completeCli,
		Short:             "Run one of a module's CLI commands (runmodulecli); with NAME alone, list them",
		Long: `cli asks the daemon to run COMMAND in the module, prints the module's stdout
and stderr as they came back, and exits with the module's exit code (1 for a
code outside 0-255). Flags after NAME belong to the module's command.

On a terminal, control characters in the module's output (escape sequences,
carriage returns, C1 controls, bidi overrides) and bytes that are not UTF-8
are printed as visible escapes such as \x1b; piped, the output is passed
unchanged. --raw (before NAME) passes it unchanged on a terminal too. The
listing of a module's commands is always escaped.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := o.context()
			defer stop()
			if len(args) == 1 {
				return o.listCli(ctx, args[0])
			}
			res, err := o.client().RunCli(ctx, args[0], args[1], args[2:])
			if err != nil {
				return o.daemonError("cli "+args[0]+" "+args[1], err)
			}
			for _, s := range []struct {
				w io.Writer
				b []byte
			}{{o.stdout, res.GetStdout()}, {o.stderr, res.GetStderr()}} {
				w := moduleOutput(s.w, raw)
				w.Write(s.b)
				if e, ok := w.(*termesc.Writer); ok {
					e.Flush()
				}
			}
			switch code := res.GetExitCode(); {
			case code == 0:
				return nil
			case code < 0 || code > 255:
				// The shell would see code%256, and 256 would read as success.
				return moduleExit{code: 1}
			default:
				return moduleExit{code: int(code)}
			}
		},
	}
	// Everything after NAME is the module's, --help included.
	cmd.Flags().SetInterspersed(false)
	cmd.Flags().BoolVar(&raw, "raw", false, "pass the module's output unchanged even on a terminal")
	return cmd
}

// listCli prints the commands a module registered.
func (o *operator) listCli(ctx context.Context, name string) error {
	specs, err := o.client().CliSpecs(ctx)
	if err != nil {
		return o.daemonError("cli "+name, err)
	}
	spec, ok := specs[name]
	if !ok {
		known := make([]string, 0, len(specs))
		for n := range specs {
			known = append(known, n)
		}
		sort.Strings(known)
		return badInput(fmt.Errorf("cli %s: the module registered no CLI (modules with one: %s)", esc(name), esc(orNone(known))))
	}
	// Every string of a spec is the module's.
	if spec.GetAbout() != "" {
		fmt.Fprintf(o.stdout, "%s: %s\n\n", esc(name), esc(spec.GetAbout()))
	}
	tw := tabwriter.NewWriter(o.stdout, 0, 0, 2, ' ', 0)
	for _, c := range spec.GetCommands() {
		usage := c.GetUsage()
		if usage == "" {
			usage = c.GetName()
		}
		fmt.Fprintf(tw, "  %s\t%s\n", esc(usage), esc(c.GetAbout()))
	}
	return tw.Flush()
}

// eventTimeLayout dates an event line: local time with its offset, to the
// millisecond, so that a line read the next day or on another host still
// says when.
const eventTimeLayout = "2006-01-02T15:04:05.000Z07:00"

func (o *operator) eventsCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "events [--json]",
		Short: "Print lifecycle and state events as the daemon publishes them, until Ctrl-C",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := o.context()
			defer stop()
			enc := json.NewEncoder(termesc.NewJSONWriter(o.stdout))
			err := o.client().Events(ctx, func(ev admin.Event) error {
				if asJSON {
					return enc.Encode(ev)
				}
				_, err := fmt.Fprintf(o.stdout, "%s  %-8s  %s  %s  %s\n", ev.Time.Local().Format(eventTimeLayout),
					esc(ev.Kind), esc(ev.Module), esc(orDash(ev.State)), esc(ev.Detail))
				return err
			})
			if err != nil {
				return o.daemonError("events", err)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per line")
	return cmd
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func withLimit(v string, limit uint64, format func(uint64) string) string {
	if limit == 0 {
		return v
	}
	return v + "/" + format(limit)
}

// humanBytes prints n in IEC units: 512B, 3.4MiB, 256MiB.
func humanBytes(n uint64) string {
	if n < 1024 {
		return fmt.Sprintf("%dB", n)
	}
	v := float64(n)
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	i := -1
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if v < 10 {
		return strings.TrimSuffix(fmt.Sprintf("%.1f", v), ".0") + units[i]
	}
	return fmt.Sprintf("%.0f%s", v, units[i])
}

// humanDuration prints d to the two most significant units: 45s, 12m03s,
// 3h12m, 2d04h.
func humanDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	s := int64(d / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
	}
	return fmt.Sprintf("%dd%02dh", s/86400, s%86400/3600)
}

// cpuTime prints CPU time: 0.42s below a minute, then as a duration.
func cpuTime(nanos uint64) string {
	d := time.Duration(nanos)
	if d < time.Minute {
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
	return humanDuration(d)
}
