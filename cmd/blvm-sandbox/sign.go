package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/blvm/blvm-sandbox/internal/safefile"
	"github.com/blvm/blvm-sandbox/internal/termesc"
	"github.com/blvm/blvm-sandbox/manifest"
	"github.com/blvm/blvm-sandbox/verify"
)

type signFlags struct {
	key       string
	name      string
	binary    string
	threshold string
}

func newSignCommand(stdout, stderr io.Writer) *cobra.Command {
	var f signFlags
	cmd := &cobra.Command{
		Use:   "sign --key FILE [--name NAME] [--binary PATH] MODULE_DIR",
		Short: "Sign a module's manifest, optionally pinning its binary first",
		Long: `sign fills [binary] hash and size from --binary when given, and [config]
hash and size from MODULE_DIR/config.toml when the module ships one, then
adds or replaces this key's entry in [signatures]. module.toml is rewritten
in place, keeping every comment outside [signatures]. Signatures that no
longer verify over the new manifest (because the binary or the config
changed) are dropped and named.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSign(stdout, stderr, &f, args[0])
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.key, "key", "", "private key file from `keys generate`")
	fl.StringVar(&f.name, "name", "", "signer name (default: the key file's base name)")
	fl.StringVar(&f.binary, "binary", "", "binary whose sha256 and size go into [binary] first (a regular file, not a symlink)")
	fl.StringVar(&f.threshold, "threshold", "", `threshold hint written to [signatures] (default: keep, or "1-of-1")`)
	return cmd
}

func runSign(stdout, stderr io.Writer, f *signFlags, dir string) error {
	if f.key == "" {
		return badInput(fmt.Errorf("sign: --key FILE is required"))
	}
	priv, err := verify.ReadKeyFile(f.key)
	if err != nil {
		return badInput(err)
	}
	name := f.name
	if name == "" {
		name = strings.ToLower(strings.TrimSuffix(filepath.Base(f.key), filepath.Ext(f.key)))
	}
	// Checked before anything is rewritten: a maintainer name follows the
	// module-name rule, so it cannot draw on a terminal.
	if !manifest.ValidModuleName(name) {
		return badInput(fmt.Errorf("sign: signer name %q: want lowercase letters, digits and '-' (pass --name)", termesc.String(name)))
	}
	path := filepath.Join(dir, manifest.FileName)
	src, err := safefile.ReadFile(dir, manifest.FileName, safefile.MaxTOML)
	if err != nil {
		return badInput(fmt.Errorf("sign: %w", err))
	}
	signed, err := verify.SignSource(path, src, priv, name, f.threshold, f.binary)
	var problems manifest.Problems
	if errors.As(err, &problems) || errors.Is(err, fs.ErrNotExist) {
		return badInput(err)
	}
	if err != nil {
		return fmt.Errorf("%w; %s left unchanged", err, path)
	}
	for _, d := range signed.Dropped {
		fmt.Fprintf(stderr, "dropped %s's signature: it does not verify over the manifest as it is now\n", termesc.String(d))
	}
	if err := writeFileAtomic(path, signed.Source); err != nil {
		return err
	}
	if c := signed.Manifest.Config; c != nil {
		fmt.Fprintf(stdout, "pinned %s %s, %d bytes, in [config]\n", manifest.ConfigFileName, c.Hash, c.Size)
	}
	fmt.Fprintf(stdout, "signed %s %s as %s (%s); %d signature(s), threshold hint %s\n", signed.Manifest.Name,
		signed.Manifest.Version, name, signed.PublicKey, len(signed.Manifest.Signatures.Maintainers), signed.Threshold)
	return nil
}

// writeFileAtomic replaces path with data, keeping its mode, so a crash
// leaves either the old manifest or the new one.
func writeFileAtomic(path string, data []byte) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".module.toml.*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, bytes.NewReader(data)); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(st.Mode().Perm()); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
