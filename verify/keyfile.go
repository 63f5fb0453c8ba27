package verify

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
)

// maxKeyFile bounds what ReadKeyFile reads; a key file is two short lines.
const maxKeyFile = 4096

// GenerateKey returns a new maintainer key from the system's CSPRNG.
func GenerateKey() (*secp256k1.PrivateKey, error) {
	k, err := secp256k1.GeneratePrivateKey()
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	return k, nil
}

// WriteKeyFile writes k to a new file at path, mode 0600, refusing to
// overwrite anything (O_EXCL) or to follow a symlink there. The format is
// two lines:
//
//	<64 lowercase hex digits: the private scalar, big-endian>
//	# public_key = <66 hex digits: the compressed public key>
//
// The comment line lets an operator pin the key without the tool; ReadKeyFile
// checks it matches.
func WriteKeyFile(path string, k *secp256k1.PrivateKey) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("write key file: %w", err)
	}
	content := fmt.Sprintf("%s\n# public_key = %s\n",
		hex.EncodeToString(k.Serialize()), hex.EncodeToString(k.PubKey().SerializeCompressed()))
	// Chmod too: the umask can only narrow 0600, but be explicit.
	err = errors.Join(f.Chmod(0o600), writeAll(f, content), f.Sync())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("write key file %s: %w", path, err)
	}
	return nil
}

func writeAll(w io.Writer, s string) error {
	_, err := io.WriteString(w, s)
	return err
}

// ReadKeyFile reads a key written by WriteKeyFile. It refuses a file that
// is not a regular file, is a symlink, or is readable or writable by group
// or others: a private key that others could read must be treated as
// leaked, not used.
func ReadKeyFile(path string) (*secp256k1.PrivateKey, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("read key file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read key file %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("read key file %s: not a regular file (%s)", path, fi.Mode().Type())
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("read key file %s: mode %04o gives group/others access; run chmod 600 %s (and consider the key leaked if others could read it)", path, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("read key file %s: %w", path, err)
	}
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("read key file %s: larger than %d bytes, not a key file", path, maxKeyFile)
	}
	k, err := parseKeyFile(data)
	if err != nil {
		return nil, fmt.Errorf("read key file %s: %w", path, err)
	}
	return k, nil
}

func parseKeyFile(data []byte) (*secp256k1.PrivateKey, error) {
	var keyHex, pubHex string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		t := strings.TrimSpace(sc.Text())
		switch {
		case t == "":
		case strings.HasPrefix(t, "#"):
			if v, ok := strings.CutPrefix(strings.TrimSpace(t[1:]), "public_key"); ok {
				pubHex = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), "="))
			}
		case keyHex != "":
			return nil, fmt.Errorf("line %d: a second key line; want exactly one", line)
		default:
			keyHex = t
		}
	}
	if keyHex == "" {
		return nil, errors.New("no private key line")
	}
	b, err := hex.DecodeString(keyHex)
	if err != nil || len(b) != 32 {
		return nil, errors.New("private key: want 64 hex digits")
	}
	var sc32 secp256k1.ModNScalar
	if sc32.SetByteSlice(b) || sc32.IsZero() {
		return nil, errors.New("private key: not in [1, N-1]")
	}
	k := secp256k1.NewPrivateKey(&sc32)
	if pubHex != "" {
		got := hex.EncodeToString(k.PubKey().SerializeCompressed())
		if !strings.EqualFold(pubHex, got) {
			return nil, fmt.Errorf("public_key comment %s does not match the private key (its public key is %s)", pubHex, got)
		}
	}
	return k, nil
}
