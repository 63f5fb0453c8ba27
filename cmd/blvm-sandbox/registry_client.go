package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/blvm/blvm-sandbox/admin"
	"github.com/blvm/blvm-sandbox/manifest"
	"github.com/blvm/blvm-sandbox/nodeconfig"
	"github.com/blvm/blvm-sandbox/registry/client"
	"github.com/blvm/blvm-sandbox/registry/layout"
	"github.com/blvm/blvm-sandbox/registry/market"
	"github.com/blvm/blvm-sandbox/runtime"
)

// registryFlags are the flags every client command shares.
type registryFlags struct {
	nodeConfig   string
	jsonOut      bool
	allowStale   bool
	allowYanked  bool
	withOptional bool
	yes, dryRun  bool
	downgrade    bool
	receipts     []string
	nodeID       string
	named        bool // update: the modules were named on the command line
	timings      bool
}

func (f *registryFlags) add(cmd *cobra.Command, install bool) {
	if cmd.Flags().Lookup("node-config") == nil {
		cmd.Flags().StringVar(&f.nodeConfig, "node-config", "", "operator node config (required)")
	}
	cmd.Flags().BoolVar(&f.jsonOut, "json", false, "print JSON")
	cmd.Flags().BoolVar(&f.allowStale, "allow-stale", false, "use cached registry metadata older than [registry] max_staleness")
	if install {
		cmd.Flags().BoolVar(&f.allowYanked, "allow-yanked", false, "install a yanked version named exactly")
		cmd.Flags().BoolVar(&f.withOptional, "with-optional", false, "install optional dependencies too")
		cmd.Flags().BoolVarP(&f.yes, "yes", "y", false, "install without asking")
		cmd.Flags().BoolVar(&f.dryRun, "dry-run", false, "resolve, download and verify, print the plan, install nothing")
		cmd.Flags().StringArrayVar(&f.receipts, "receipt", nil, "a marketplace receipt (JSON) for a paid module; repeatable")
		cmd.Flags().StringVar(&f.nodeID, "node-id", "", "this node's id in receipts (default: /etc/machine-id)")
		cmd.Flags().BoolVar(&f.timings, "timings", false, "print where the install spent its time, stage by stage, on stderr at the end")
	}
}

func openRegistry(command string, f *registryFlags, stderr io.Writer) (*nodeconfig.Config, *client.Client, error) {
	cfg, _, err := operatorConfig(command, f.nodeConfig, "")
	if err != nil {
		return nil, nil, err
	}
	if cfg.Registry.URL == "" {
		return nil, nil, badInput(fmt.Errorf("%s: %s has no [registry] url and root", command, f.nodeConfig))
	}
	c, err := client.Open(client.Options{
		URL: cfg.Registry.URL, RootFile: cfg.Registry.Root, CacheDir: cfg.RegistryCacheDir(),
		MaxStaleness: cfg.RegistryMaxStaleness(), AllowStale: f.allowStale,
		Warn: func(s string) { fmt.Fprintln(stderr, "warning:", s) },
	})
	if err != nil {
		return nil, nil, refused(fmt.Errorf("%s: %w", command, err))
	}
	return cfg, c, nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newSearchCommand(stdout, stderr io.Writer) *cobra.Command {
	var f registryFlags
	var capability string
	cmd := &cobra.Command{
		Use:   "search [QUERY] --node-config FILE",
		Short: "Search the registry's signed index",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, c, err := openRegistry("search", &f, stderr)
			if err != nil {
				return err
			}
			q := ""
			if len(args) == 1 {
				q = args[0]
			}
			res := c.Search(q, capability)
			if f.jsonOut {
				return printJSON(stdout, map[string]any{"snapshot": c.Snapshot, "results": orEmpty(res)})
			}
			for _, e := range res {
				y := ""
				if e.Yanked {
					y = " (yanked)"
				}
				fmt.Fprintf(stdout, "%-24s %-10s %s%s\n", e.Name, e.Version, e.Description, y)
			}
			return nil
		},
	}
	f.add(cmd, false)
	cmd.Flags().StringVar(&capability, "capability", "", "only modules that ask for this capability")
	return cmd
}

func orEmpty(es []layout.Entry) []layout.Entry {
	if es == nil {
		return []layout.Entry{}
	}
	return es
}

func newInfoCommand(stdout, stderr io.Writer) *cobra.Command {
	var f registryFlags
	cmd := &cobra.Command{
		Use:   "info NAME --node-config FILE",
		Short: "Show a module's versions, compatibility and yanks from the signed index",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := layout.CheckName(args[0], ""); err != nil {
				return badInput(err)
			}
			cfg, c, err := openRegistry("info", &f, stderr)
			if err != nil {
				return err
			}
			var vs []layout.Entry
			for _, e := range c.Entries {
				if e.Name == args[0] {
					vs = append(vs, e)
				}
			}
			if len(vs) == 0 {
				return refused(fmt.Errorf("info: %s is not in the registry (snapshot %d)", args[0], c.Snapshot))
			}
			latest, lerr := c.Latest(cfg, args[0])
			if f.jsonOut {
				return printJSON(stdout, map[string]any{"name": args[0], "versions": vs, "latest_compatible": latest.Version})
			}
			for _, e := range vs {
				fmt.Fprintf(stdout, "%s %s  blvm-node %s  capabilities: %s  deps: %v", e.Name, e.Version, orAnyC(e.Node), orNone(e.Capabilities), e.Dependencies)
				if e.Yanked {
					fmt.Fprint(stdout, "  (yanked)")
				}
				if c.Verified(e, cfg) {
					fmt.Fprint(stdout, "  (verified here under the current keys)")
				}
				if e.PriceSats > 0 {
					fmt.Fprintf(stdout, "  price %d sats", e.PriceSats)
				}
				fmt.Fprintln(stdout)
			}
			if lerr == nil {
				fmt.Fprintf(stdout, "latest compatible with blvm-node %s: %s\n", cfg.Node.Version, latest.Version)
			} else {
				fmt.Fprintln(stdout, lerr)
			}
			return nil
		},
	}
	f.add(cmd, false)
	return cmd
}

func orAnyC(s string) string {
	if s == "" {
		return "any"
	}
	return s
}

// isRegistryName tells a module name (the registry) from a module dir.
func isRegistryName(arg string) bool {
	if strings.ContainsAny(arg, "/.") && !strings.Contains(arg, "@") {
		return false
	}
	if _, err := os.Stat(arg); err == nil {
		return false
	}
	name, _, _ := strings.Cut(arg, "@")
	return manifest.ValidModuleName(name)
}

// installFromRegistry is `install NAME[@C]...`: resolve from one snapshot,
// download and verify everything, print the plan, then commit.
func installFromRegistry(args []string, f *registryFlags, stdout, stderr io.Writer, socket string) error {
	return installOrUpdate(args, f, stdout, stderr, socket, false)
}

// installOrUpdate is install NAME..., or with update, `update`: a module
// already at its newest compatible version is left alone.
func installOrUpdate(args []string, f *registryFlags, stdout, stderr io.Writer, socket string, update bool) error {
	var reqs []client.Request
	for _, a := range args {
		r, err := client.ParseRequest(a)
		if err != nil {
			return badInput(fmt.Errorf("install: %w", err))
		}
		reqs = append(reqs, r)
	}
	var clock *stageClock
	if f.timings {
		clock = newStageClock(stderr)
		// Deferred first, so it runs last: cleanup is the removal of the
		// staged dirs deferred below.
		defer func() { clock.mark("cleanup"); clock.print() }()
	}
	cfg, c, err := openRegistry("install", f, stderr)
	if err != nil {
		return err
	}
	clock.mark("refresh")
	if update {
		// Modules the registry does not carry (installed from a dir) are
		// not its to update, unless named.
		var kept []client.Request
		for _, r := range reqs {
			if _, err := c.Latest(cfg, r.Name); err == nil || f.named {
				kept = append(kept, r)
			}
		}
		reqs = kept
	}
	plan, err := c.Resolve(cfg, reqs, client.ResolveOptions{AllowYanked: f.allowYanked, WithOptional: f.withOptional, OnlyNewer: update})
	if err != nil {
		return refused(fmt.Errorf("install: %w", err))
	}
	clock.mark("resolve")
	if len(plan) == 0 {
		if f.jsonOut {
			return printJSON(stdout, map[string]any{"snapshot": c.Snapshot, "offline": c.Offline, "plan": []any{}})
		}
		fmt.Fprintf(stdout, "nothing to update: every module is at its newest compatible version (registry snapshot %d)\n", c.Snapshot)
		return nil
	}
	host, err := runtime.DetectHost("/sys/fs/cgroup", cfg.Paths.Root)
	if err != nil {
		return fmt.Errorf("install: host: %w", err)
	}
	var progress func(string, int64, int64)
	if isTerminal(stderr) && !f.jsonOut {
		progress = func(name string, done, total int64) { drawProgress(stderr, name, done, total) }
	}
	staged, err := c.Stage(plan, cfg, host, f.downgrade, progress)
	if progress != nil {
		fmt.Fprintln(stderr)
	}
	var ce *client.CeilingError
	if errors.As(err, &ce) {
		// The whole plan, the refused capabilities marked, then the refusal.
		printPlan(stdout, ce.Staged, c, f.jsonOut)
		client.Cleanup(ce.Staged)
		return refused(fmt.Errorf("install: %w", err))
	}
	if err != nil {
		return refused(fmt.Errorf("install: %w", err))
	}
	defer client.Cleanup(staged)
	var download time.Duration
	for _, s := range staged {
		download += s.Download
	}
	clock.markSplit("download", download, "verify")
	if err := checkReceipts(staged, f, cfg); err != nil {
		return refused(fmt.Errorf("install: %w", err))
	}
	printPlan(stdout, staged, c, f.jsonOut)
	if f.dryRun {
		return nil
	}
	if !f.yes {
		if !isTerminal(os.Stdin) || !isTerminal(stdout) {
			return refused(errors.New("install: not a terminal: pass --yes to install this plan, or --dry-run"))
		}
		fmt.Fprint(stdout, "Proceed? [y/N] ")
		line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
			return refused(errors.New("install: not confirmed"))
		}
	}
	clock.mark("plan")
	if err := c.Commit(staged, cfg); err != nil {
		return refused(fmt.Errorf("install: %w", err))
	}
	clock.mark("commit")
	for _, s := range staged {
		if !f.jsonOut {
			fmt.Fprintf(stdout, "installed %s %s\n", s.Entry.Name, s.Entry.Version)
		}
	}
	registerWithDaemon(staged, socket, stdout, stderr)
	clock.mark("register")
	return nil
}

func printPlan(w io.Writer, staged []client.Staged, c *client.Client, asJSON bool) {
	type row struct {
		Action       string   `json:"action"`
		Name         string   `json:"name"`
		Version      string   `json:"version"`
		From         string   `json:"from,omitempty"`
		Reason       string   `json:"reason"`
		Capabilities []string `json:"capabilities"`
		PriceSats    int64    `json:"price_sats"`
		AboveCeiling []above  `json:"above_ceiling"`
	}
	var rows []row
	for _, s := range staged {
		r := row{Action: "install", Name: s.Entry.Name, Version: s.Entry.Version, Reason: s.Reason,
			PriceSats: s.Entry.PriceSats, AboveCeiling: []above{}}
		if s.Prepared != nil {
			r.Capabilities = s.Prepared.Capabilities.Names()
		}
		for _, ref := range s.AboveCeiling {
			r.AboveCeiling = append(r.AboveCeiling, above{ref.Capability.Name, ref.Why, ref.Allow})
		}
		if s.Prepared == nil {
			// Refused: what it would be granted is what the ceiling admits.
			for _, c := range s.Entry.Capabilities {
				if !slices.ContainsFunc(r.AboveCeiling, func(a above) bool { return a.Capability == c }) {
					r.Capabilities = append(r.Capabilities, c)
				}
			}
			slices.Sort(r.Capabilities)
		}
		if s.Installed != "" {
			r.Action, r.From = "upgrade", s.Installed
			if s.Installed == s.Entry.Version {
				r.Action = "reinstall"
			}
		}
		if r.Capabilities == nil {
			r.Capabilities = []string{}
		}
		rows = append(rows, r)
	}
	if asJSON {
		printJSON(w, map[string]any{"snapshot": c.Snapshot, "offline": c.Offline, "plan": rows})
		return
	}
	fmt.Fprintf(w, "plan (registry snapshot %d):\n", c.Snapshot)
	for _, r := range rows {
		from := ""
		if r.From != "" {
			from = " (from " + r.From + ")"
		}
		fmt.Fprintf(w, "  %-9s %s %s%s: %s; grants %s", r.Action, r.Name, r.Version, from, r.Reason, orNone(r.Capabilities))
		for _, a := range r.AboveCeiling {
			fmt.Fprintf(w, "; ABOVE THE CEILING: %s (%s; allow with %s)", a.Capability, a.Why, a.Allow)
		}
		if r.PriceSats > 0 {
			sp := manifest.SplitPayment(r.PriceSats)
			fmt.Fprintf(w, "; price %d sats (author %d, marketplace %d, node %d), receipt checked", r.PriceSats, sp.Author, sp.Marketplace, sp.Node)
		}
		fmt.Fprintln(w)
	}
}

// above is a capability the operator's settings refuse, as the plan shows it.
type above struct {
	Capability string `json:"capability"`
	Why        string `json:"why"`
	Allow      string `json:"allow"`
}

func drawProgress(w io.Writer, name string, done, total int64) {
	const width = 30
	n := 0
	if total > 0 {
		n = int(done * width / total)
	}
	fmt.Fprintf(w, "\r%-20s [%s%s] %3d%%", name, strings.Repeat("=", n), strings.Repeat(" ", width-n), n*100/width)
}

// registerWithDaemon asks a running daemon to load what was installed, in
// dependency order; without a daemon the modules load at its next start.
func registerWithDaemon(staged []client.Staged, socket string, stdout, stderr io.Writer) {
	if socket == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ac := &admin.Client{Socket: socket}
	for _, s := range staged {
		// A load of a module already loaded is a no-op: an upgrade (or a
		// reinstall) restarts it into the new files, and what requires it.
		var err error
		if s.Installed != "" {
			_, err = ac.Restart(ctx, s.Entry.Name)
		} else {
			_, err = ac.Load(ctx, s.Entry.Name)
		}
		if errors.Is(err, admin.ErrUnreachable) {
			fmt.Fprintf(stdout, "no daemon at %s: the modules load when it starts\n", socket)
			return
		}
		if err != nil {
			fmt.Fprintf(stderr, "warning: daemon: load %s: %v (run 'blvm-sandbox reload')\n", s.Entry.Name, err)
			continue
		}
		fmt.Fprintf(stdout, "loaded %s %s\n", s.Entry.Name, s.Entry.Version)
	}
}

func installedModules(cfg *nodeconfig.Config) map[string]string {
	out := map[string]string{}
	ents, _ := os.ReadDir(cfg.Paths.ModulesDir)
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if m, err := manifest.Parse(cfg.Paths.ModulesDir + "/" + e.Name() + "/" + manifest.FileName); err == nil {
			out[m.Name] = m.Version
		}
	}
	return out
}

func newOutdatedCommand(stdout, stderr io.Writer) *cobra.Command {
	var f registryFlags
	cmd := &cobra.Command{
		Use:   "outdated --node-config FILE",
		Short: "List installed modules with a newer compatible version in the registry",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, c, err := openRegistry("outdated", &f, stderr)
			if err != nil {
				return err
			}
			type row struct {
				Name      string `json:"name"`
				Installed string `json:"installed"`
				Latest    string `json:"latest"`
			}
			rows := []row{}
			for name, v := range installedModules(cfg) {
				e, err := c.Latest(cfg, name)
				if err != nil {
					continue
				}
				lv, _ := manifest.ParseVersion(e.Version)
				iv, _ := manifest.ParseVersion(v)
				if lv != nil && iv != nil && lv.GreaterThan(iv) {
					rows = append(rows, row{name, v, e.Version})
				}
			}
			if f.jsonOut {
				return printJSON(stdout, map[string]any{"snapshot": c.Snapshot, "outdated": rows})
			}
			for _, r := range rows {
				fmt.Fprintf(stdout, "%-24s %s -> %s\n", r.Name, r.Installed, r.Latest)
			}
			return nil
		},
	}
	f.add(cmd, false)
	return cmd
}

func newUpdateCommand(stdout, stderr io.Writer) *cobra.Command {
	var f registryFlags
	cmd := &cobra.Command{
		Use:   "update [NAME...] --node-config FILE",
		Short: "Upgrade installed modules (all, or those named) to their newest compatible version",
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, _, err := operatorConfig("update", f.nodeConfig, "")
			if err != nil {
				return err
			}
			names := args
			f.named = len(args) > 0
			if len(names) == 0 {
				for n := range installedModules(cfg) {
					names = append(names, n)
				}
			}
			if len(names) == 0 {
				fmt.Fprintln(stdout, "nothing installed")
				return nil
			}
			socket, _ := cmd.Flags().GetString("admin-socket")
			return installOrUpdate(names, &f, stdout, stderr, socket, true)
		},
	}
	f.add(cmd, true)
	return cmd
}

func addRegistryCommands(root *cobra.Command, stdout, stderr io.Writer) {
	root.AddCommand(newRegistryCommand(stdout, stderr))
	root.AddCommand(newSearchCommand(stdout, stderr))
	root.AddCommand(newInfoCommand(stdout, stderr))
	root.AddCommand(newOutdatedCommand(stdout, stderr))
	root.AddCommand(newUpdateCommand(stdout, stderr))
}

// checkReceipts refuses a paid module without a receipt for it, signed by
// [registry] marketplace_key, binding this node, the price and its split.
func checkReceipts(staged []client.Staged, f *registryFlags, cfg *nodeconfig.Config) error {
	nodeID := f.nodeID
	if nodeID == "" {
		id, _ := os.ReadFile("/etc/machine-id")
		nodeID = strings.TrimSpace(string(id))
	}
	var rs []market.Receipt
	for _, p := range f.receipts {
		r, err := market.Read(p)
		if err != nil {
			return fmt.Errorf("--receipt: %w", err)
		}
		rs = append(rs, r)
	}
	for _, s := range staged {
		m := s.Prepared.Manifest
		if m.Payment == nil || !m.Payment.Required {
			continue
		}
		var last error = fmt.Errorf("%s %s is paid (%d sats): obtain a receipt from the marketplace for module %s, node id %q, and pass --receipt FILE", m.Name, m.Version, m.Payment.PriceSats, m.Name, nodeID)
		ok := false
		for _, r := range rs {
			if r.Module != m.Name {
				continue
			}
			if last = market.Check(r, m, nodeID, cfg.Registry.MarketplaceKey); last == nil {
				ok = true
				break
			}
		}
		if !ok {
			return last
		}
	}
	return nil
}
