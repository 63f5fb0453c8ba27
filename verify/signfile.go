package verify

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	goruntime "runtime"
	"strings"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"

	"github.com/blvm/blvm-sandbox/internal/safefile"
	"github.com/blvm/blvm-sandbox/manifest"
)

// Signed is a module.toml after a maintainer signed it.
type Signed struct {
	Source    []byte // the rewritten module.toml, ready to write
	Manifest  *manifest.Manifest
	PublicKey string   // the signer's compressed key, hex
	Dropped   []string // signers whose signatures no longer verify and were removed
	Threshold string
}

// SignSource signs the module.toml in src (read from path) as name. When
// binaryPath is set, [binary] hash and size are filled from that file first.
// The config.toml beside path, when there is one, is always pinned in
// [config] (read through safefile, as the loader will read it): every file
// the module ships is signed. A manifest that pins a config.toml which is
// not there is refused rather than silently unpinned. The signer's entry is added or replaced by key; other signatures that no
// longer verify over the new manifest are dropped and named. The rewrite is
// text surgery, so the result is re-parsed and its signed digest compared
// before it is returned. Problems in the input come back as
// manifest.Problems.
func SignSource(path string, src []byte, priv *secp256k1.PrivateKey, name, threshold, binaryPath string) (*Signed, error) {
	if binaryPath != "" {
		hash, size, err := HashFile(binaryPath)
		if err != nil {
			return nil, err
		}
		if src, err = manifest.RewriteBinary(src, hash, size); err != nil {
			return nil, err
		}
	}
	src, err := pinConfig(path, src)
	if err != nil {
		return nil, err
	}
	m, err := parseIgnoringSignatures(path, src)
	if err != nil {
		return nil, err
	}
	if err := checkSignedBinary(filepath.Dir(path), m.EntryPoint, binaryPath); err != nil {
		return nil, err
	}
	digest, err := manifest.SigningDigest(m)
	if err != nil {
		return nil, err
	}
	out := &Signed{PublicKey: hex.EncodeToString(priv.PubKey().SerializeCompressed())}
	sigs := manifest.Signatures{Threshold: "1-of-1"}
	if m.Signatures != nil {
		sigs.Threshold = m.Signatures.Threshold
		for _, s := range m.Signatures.Maintainers {
			if strings.EqualFold(s.PublicKey, out.PublicKey) {
				continue // this key's entry is replaced below
			}
			if !SignatureValid(s.PublicKey, s.Signature, digest) {
				out.Dropped = append(out.Dropped, s.Name)
				continue
			}
			sigs.Maintainers = append(sigs.Maintainers, s)
		}
	}
	if threshold != "" {
		sigs.Threshold = threshold
	}
	sigs.Maintainers = append(sigs.Maintainers, manifest.Maintainer{
		Name: name, PublicKey: out.PublicKey, Signature: SignDigest(priv, digest),
	})
	if out.Source, err = manifest.RewriteSignatures(src, sigs); err != nil {
		return nil, err
	}
	if out.Manifest, err = manifest.ParseBytes(path, out.Source); err != nil {
		return nil, fmt.Errorf("sign: the rewritten manifest is invalid:\n%w", err)
	}
	if again, err := manifest.SigningDigest(out.Manifest); err != nil || again != digest {
		return nil, fmt.Errorf("sign: rewriting %s would change a signed value", path)
	}
	out.Threshold = sigs.Threshold
	return out, nil
}

// checkSignedBinary refuses to sign a binary that could not run in the
// container: binaryPath when given, else the entry point in the module dir
// when it is there (a manifest may be signed before its binary is shipped).
func checkSignedBinary(dir, entryPoint, binaryPath string) error {
	if binaryPath == "" {
		_, err := CheckEntryPoint(dir, entryPoint, goruntime.GOARCH)
		return err
	}
	f, _, err := safefile.OpenPath(binaryPath)
	if err != nil {
		return fmt.Errorf("sign: binary: %w", err)
	}
	defer f.Close()
	return CheckExecutable(f, entryPoint, goruntime.GOARCH)
}

// parseIgnoringSignatures parses src, ignoring problems in [signatures],
// which is about to be regenerated.
func parseIgnoringSignatures(path string, src []byte) (*manifest.Manifest, error) {
	m, err := manifest.ParseBytes(path, src)
	if err == nil {
		return m, nil
	}
	problems, ok := err.(manifest.Problems)
	if !ok || m == nil {
		return nil, err
	}
	if _, rest := problems.Split("signatures"); len(rest) > 0 {
		return nil, rest
	}
	return m, nil
}

// pinConfig sets [config] in src to the config.toml beside path.
func pinConfig(path string, src []byte) ([]byte, error) {
	dir := filepath.Dir(path)
	data, err := safefile.ReadFile(dir, manifest.ConfigFileName, safefile.MaxTOML)
	if errors.Is(err, fs.ErrNotExist) {
		m, _ := manifest.ParseBytes(path, src)
		if m != nil && m.Config != nil {
			return nil, fmt.Errorf("sign: [config] pins %s, but %s is missing: restore it, or delete [config] if the module ships no config", m.Config.Hash, filepath.Join(dir, manifest.ConfigFileName))
		}
		return src, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	sum := sha256.Sum256(data)
	return manifest.RewriteConfig(src, "sha256:"+hex.EncodeToString(sum[:]), int64(len(data)))
}

// HashFile returns the "sha256:<hex>" digest and size of the file at path,
// as a maintainer pins them in [binary]. It opens path through safefile, as
// the store will open the entry point: a symlink, FIFO or device is
// refused. Loading never uses it: the store hashes from the one descriptor
// it copies.
func HashFile(path string) (string, int64, error) {
	f, _, err := safefile.OpenPath(path)
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
