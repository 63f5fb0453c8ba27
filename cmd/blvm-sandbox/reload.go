package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/blvm/blvm-sandbox/admin"
	"github.com/blvm/blvm-sandbox/internal/termesc"
)

func newReloadCommand(stdout, stderr io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "reload",
		Short: "Re-read the daemon's node config and restart only the modules it changes",
		Long: `reload asks the daemon (as SIGHUP does) to re-read the node config it was
started with. All of it is checked first: a config that does not parse or
validate, or under which a module that would run no longer verifies,
changes nothing, and reload exits 2 saying why. Otherwise only the modules
whose effective settings changed (policy, limits, disk quota, merged config,
binary, enabled) are stopped, dependents first, and started again in
dependency order; newly enabled or installed modules start, disabled ones
stop. It prints what it did per module and exits 1 if a start failed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			socket, _ := cmd.Flags().GetString("admin-socket")
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, unix.SIGTERM)
			defer stop()
			rep, err := (&admin.Client{Socket: socket}).Reload(ctx)
			if err != nil {
				return reloadError(socket, err)
			}
			return printReload(stdout, stderr, rep)
		},
	}
}

func reloadError(socket string, err error) error {
	switch {
	case errors.Is(err, admin.ErrUnreachable):
		return refused(fmt.Errorf("reload: cannot reach the daemon at %s: %w", socket, err))
	case errors.Is(err, admin.ErrInvalid):
		return badInput(err)
	}
	return refused(err)
}

func printReload(stdout, stderr io.Writer, rep *admin.ReloadReport) error {
	for _, w := range rep.Warnings {
		fmt.Fprintln(stderr, "warning:", termesc.String(w))
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MODULE\tACTION\tREASON")
	failed := 0
	for _, r := range rep.Modules {
		why := r.Reason
		if r.Error != "" {
			why, failed = r.Error, failed+1
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Module, r.Action, termesc.String(why))
	}
	tw.Flush()
	fmt.Fprintf(stdout, "reloaded %s in %s\n", termesc.String(rep.Config), rep.Took.Round(time.Millisecond))
	if failed > 0 {
		return refused(fmt.Errorf("reload: %d module(s) did not start; see their reasons above", failed))
	}
	return nil
}
