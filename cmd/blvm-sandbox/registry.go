package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/blvm/blvm-sandbox/registry/client"
	"github.com/blvm/blvm-sandbox/registry/repo"
	"github.com/blvm/blvm-sandbox/registry/server"
)

// newRegistryCommand is the registry operator's side: a TUF repository on
// disk and the server for it.
func newRegistryCommand(stdout, stderr io.Writer) *cobra.Command {
	reg := &cobra.Command{
		Use:   "registry",
		Short: "Run a module registry: init, publish, yank, rotate, serve, mirror",
		Long: `A registry is a TUF repository (docs/registry.md). Its keys vouch for
freshness and consistency only: a node installs a module from it only when
the maintainers' signatures meet the node's own pinned-key threshold.`,
	}
	var threshold string
	initCmd := &cobra.Command{
		Use:   "init DIR",
		Short: "Create a repository with an m-of-n offline root; writes DIR/root.json for operators to pin",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, n, err := parseMofN(threshold)
			if err != nil {
				return badInput(fmt.Errorf("registry init: --root-threshold: %w", err))
			}
			if _, err := repo.Init(args[0], m, n); err != nil {
				return refused(err)
			}
			fmt.Fprintf(stdout, "created registry %s (root %d-of-%d); operators pin %s\nkeep %s offline: only the root keys' threshold can rotate the other roles\n",
				args[0], m, n, filepath.Join(args[0], "root.json"), filepath.Join(args[0], "keys", "root-*.key"))
			return nil
		},
	}
	initCmd.Flags().StringVar(&threshold, "root-threshold", "2-of-3", "root keys: m-of-n")
	reg.AddCommand(initCmd)

	reg.AddCommand(&cobra.Command{
		Use:   "publish DIR MODULE_DIR",
		Short: "Add a signed module version (refused unless its maintainer signatures meet the keys pinned for its name)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := repo.Open(args[0])
			if err != nil {
				return badInput(err)
			}
			e, err := r.Publish(args[1])
			if err != nil {
				return refused(err)
			}
			_, tv, sv, ts := r.Versions()
			fmt.Fprintf(stdout, "published %s %s (manifest %s, binary %s, %d bytes); targets %d, snapshot %d, timestamp %d\n",
				e.Name, e.Version, e.Manifest.Hash, e.Binary.Hash, e.Binary.Size, tv, sv, ts)
			return nil
		},
	})
	reg.AddCommand(&cobra.Command{
		Use:   "yank DIR NAME VERSION",
		Short: "Mark a version yanked: never chosen, installable only by name with --allow-yanked",
		Args:  cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := repo.Open(args[0])
			if err != nil {
				return badInput(err)
			}
			if err := r.Yank(args[1], args[2]); err != nil {
				return refused(err)
			}
			fmt.Fprintf(stdout, "yanked %s %s\n", args[1], args[2])
			return nil
		},
	})
	reg.AddCommand(&cobra.Command{
		Use:   "rotate DIR ROLE",
		Short: "Replace the keys of root, targets, snapshot or timestamp; writes the next root, signed by the old root threshold",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := repo.Open(args[0])
			if err != nil {
				return badInput(err)
			}
			if err := r.Rotate(args[1]); err != nil {
				return refused(err)
			}
			rv, _, _, _ := r.Versions()
			fmt.Fprintf(stdout, "rotated %s keys; root is now version %d\n", args[1], rv)
			return nil
		},
	})
	reg.AddCommand(&cobra.Command{
		Use:   "refresh DIR",
		Short: "Re-sign the timestamp (run it more often than its 24 h lifetime)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := repo.Open(args[0])
			if err != nil {
				return badInput(err)
			}
			return r.Refresh()
		},
	})
	var listen string
	serve := &cobra.Command{
		Use:   "serve DIR --listen ADDR",
		Short: "Serve the repository and its JSON API over HTTP",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := repo.Open(args[0]); err != nil {
				return badInput(err)
			}
			log := slog.New(slog.NewJSONHandler(stderr, nil))
			srv := server.New(args[0], listen, log)
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, unix.SIGTERM)
			defer stop()
			go func() {
				<-ctx.Done()
				sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				srv.Shutdown(sctx)
			}()
			log.Info("serving", "dir", args[0], "listen", listen)
			if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return refused(err)
			}
			return nil
		},
	}
	serve.Flags().StringVar(&listen, "listen", "127.0.0.1:8080", "address to listen on")
	reg.AddCommand(serve)

	var rootFile string
	mirror := &cobra.Command{
		Use:   "mirror URL DIR --root ROOT.json",
		Short: "Copy one verified, consistent snapshot into DIR; nodes then use url = \"file://DIR\"",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if rootFile == "" {
				return badInput(errors.New("registry mirror: --root ROOT.json is required: the mirror is verified before it is written"))
			}
			cache, err := os.MkdirTemp("", "blvm-mirror-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(cache)
			c, err := client.Mirror(client.Options{URL: args[0], RootFile: rootFile, CacheDir: cache}, args[1])
			if err != nil {
				return refused(err)
			}
			abs, _ := filepath.Abs(args[1])
			fmt.Fprintf(stdout, "mirrored snapshot %d (%d module versions) into %s; set [registry] url = \"file://%s\"\n", c.Snapshot, len(c.Entries), args[1], abs)
			return nil
		},
	}
	mirror.Flags().StringVar(&rootFile, "root", "", "the registry's root.json you pin (required)")
	reg.AddCommand(mirror)
	return reg
}

func parseMofN(s string) (int, int, error) {
	a, b, ok := strings.Cut(s, "-of-")
	m, err1 := strconv.Atoi(a)
	n, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("%q: want m-of-n", s)
	}
	return m, n, nil
}
