package repo

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// A role key is an ed25519 seed, hex, in a 0600 file under DIR/keys. These
// are the registry's keys, never a maintainer's: they vouch for freshness
// and consistency, not for what may run.
type roleKey struct {
	file string
	priv ed25519.PrivateKey
}

func newKey(path string) (*roleKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	if _, err := fmt.Fprintln(f, hex.EncodeToString(priv.Seed())); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, err
	}
	return &roleKey{file: path, priv: priv}, f.Close()
}

func readKey(path string) (*roleKey, error) {
	st, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() || st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s: mode %s: a role key must be a regular file with mode 0600", path, st.Mode())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	seed, err := hex.DecodeString(strings.TrimSpace(string(data)))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("%s: not a hex ed25519 seed", path)
	}
	return &roleKey{file: path, priv: ed25519.NewKeyFromSeed(seed)}, nil
}

func (k *roleKey) tufKey() (*metadata.Key, error) {
	return metadata.KeyFromPublicKey(k.priv.Public())
}

func (k *roleKey) id() string {
	tk, err := k.tufKey()
	if err != nil {
		return ""
	}
	id, _ := tk.ID()
	return id
}

func (k *roleKey) signer() (signature.Signer, error) {
	return signature.LoadSigner(k.priv, crypto.Hash(0))
}
