package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

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
		Long: `sign fills [binary] hash and size from --binary when given, then adds or
replaces this key's entry in [signatures]. module.toml is rewritten in place,
keeping every comment outside [signatures]. Signatures that no longer verify
over the new manifest (because --binary changed it) are dropped and named.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSign(stdout, stderr, &f, args[0])
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.key, "key", "", "private key file from `keys generate`")
	fl.StringVar(&f.name, "name", "", "signer name (default: the key file's base name)")
	fl.StringVar(&f.binary, "binary", "", "binary whose sha256 and size go into [binary] first")
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
		name = strings.TrimSuffix(filepath.Base(f.key), filepath.Ext(f.key))
	}
	path := filepath.Join(dir, manifest.FileName)
	src, err := os.ReadFile(path)
	if err != nil {
		return badInput(err)
	}
	if f.binary != "" {
		hash, size, err := hashFile(f.binary)
		if err != nil {
			return badInput(err)
		}
		if src, err = manifest.RewriteBinary(src, hash, size); err != nil {
			return err
		}
	}
	m, err := parseForSigning(path, src)
	if err != nil {
		return err
	}
	digest, err := manifest.SigningDigest(m)
	if err != nil {
		return err
	}
	pub := hex.EncodeToString(priv.PubKey().SerializeCompressed())
	sigs := manifest.Signatures{Threshold: "1-of-1"}
	if m.Signatures != nil {
		sigs.Threshold = m.Signatures.Threshold
		for _, s := range m.Signatures.Maintainers {
			if strings.EqualFold(s.PublicKey, pub) {
				continue // replaced below
			}
			if !verify.SignatureValid(s.PublicKey, s.Signature, digest) {
				fmt.Fprintf(stderr, "dropped %s's signature: it does not verify over the manifest as it is now\n", s.Name)
				continue
			}
			sigs.Maintainers = append(sigs.Maintainers, s)
		}
	}
	if f.threshold != "" {
		sigs.Threshold = f.threshold
	}
	sigs.Maintainers = append(sigs.Maintainers, manifest.Maintainer{
		Name: name, PublicKey: pub, Signature: verify.SignDigest(priv, digest),
	})
	out, err := manifest.RewriteSignatures(src, sigs)
	if err != nil {
		return err
	}
	// The rewrite is text surgery: prove it kept every signed value and
	// wrote a manifest that validates before replacing the file.
	check, err := manifest.ParseBytes(path, out)
	if err != nil {
		return fmt.Errorf("sign: the rewritten manifest is invalid, %s left unchanged:\n%w", path, err)
	}
	again, err := manifest.SigningDigest(check)
	if err != nil || again != digest {
		return fmt.Errorf("sign: rewriting %s would change a signed value; left unchanged", path)
	}
	if err := writeFileAtomic(path, out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "signed %s %s as %s (%s); %d signature(s), threshold hint %s\n",
		m.Name, m.Version, name, pub, len(sigs.Maintainers), sigs.Threshold)
	return nil
}

// parseForSigning parses src, ignoring problems in [signatures], which is
// about to be regenerated.
func parseForSigning(path string, src []byte) (*manifest.Manifest, error) {
	m, err := manifest.ParseBytes(path, src)
	if err == nil {
		return m, nil
	}
	problems, ok := err.(manifest.Problems)
	if !ok || m == nil {
		return nil, badInput(err)
	}
	var fatal manifest.Problems
	for _, p := range problems {
		if !strings.HasPrefix(p.Field, "signatures") {
			fatal = append(fatal, p)
		}
	}
	if len(fatal) > 0 {
		return nil, badInput(fatal)
	}
	return m, nil
}

func hashFile(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("hash %s: %w", path, err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), n, nil
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
