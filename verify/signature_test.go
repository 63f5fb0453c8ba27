package verify

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	"github.com/decred/dcrd/dcrec/secp256k1/v4/ecdsa"
)

type vectors struct {
	DigestHex string `json:"digest_hex"`
	Keys      []struct {
		Seed       string `json:"seed"`
		PrivateKey string `json:"private_key_hex"`
		PublicKey  string `json:"public_key_hex"`
		Compact    string `json:"signature_compact_hex"`
		DER        string `json:"signature_der_hex"`
	} `json:"keys"`
}

func loadVectors(t testing.TB) (vectors, [32]byte) {
	t.Helper()
	data, err := os.ReadFile("../manifest/testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v vectors
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	var d [32]byte
	b, _ := hex.DecodeString(v.DigestHex)
	copy(d[:], b)
	return v, d
}

// The published vectors parse in both forms, verify, and SignDigest
// reproduces the compact one (RFC 6979).
func TestVectorsCompactAndDER(t *testing.T) {
	v, digest := loadVectors(t)
	for _, k := range v.Keys {
		priv, _ := hex.DecodeString(k.PrivateKey)
		key := secp256k1.PrivKeyFromBytes(priv)
		if got := pubHex(key); got != k.PublicKey {
			t.Fatalf("%s: public key %s, vector says %s", k.Seed, got, k.PublicKey)
		}
		if got := SignDigest(key, digest); got != k.Compact {
			t.Errorf("%s: SignDigest = %s, vector says %s", k.Seed, got, k.Compact)
		}
		for _, c := range []struct {
			hex  string
			form Form
		}{{k.Compact, Compact}, {k.DER, DER}, {strings.ToUpper(k.Compact), Compact}} {
			sig, form, err := ParseSignature(c.hex)
			if err != nil {
				t.Fatalf("%s %s: %v", k.Seed, c.form, err)
			}
			if form != c.form {
				t.Errorf("%s: form %s, want %s", k.Seed, form, c.form)
			}
			if !SignatureValid(k.PublicKey, c.hex, digest) || !sig.Verify(digest[:], key.PubKey()) {
				t.Errorf("%s %s: does not verify", k.Seed, c.form)
			}
		}
	}
}

// highSTwin returns the compact signature with s replaced by N-s: the
// malleated twin, which ECDSA verification alone accepts.
func highSTwin(t testing.TB, compactHex string) string {
	t.Helper()
	sig, _, err := ParseSignature(compactHex)
	if err != nil {
		t.Fatal(err)
	}
	r, s := sig.R(), sig.S()
	s.Negate()
	return hex.EncodeToString(compactBytes(ecdsa.NewSignature(&r, &s)))
}

func TestHighSTwinRejected(t *testing.T) {
	v, digest := loadVectors(t)
	k := v.Keys[0]
	twin := highSTwin(t, k.Compact)
	// Prove the twin is a valid ECDSA signature: refusing it is our rule.
	b, _ := hex.DecodeString(twin)
	var r, s secp256k1.ModNScalar
	r.SetByteSlice(b[:32])
	s.SetByteSlice(b[32:])
	pub, _ := ParsePublicKeyHex(k.PublicKey)
	if !ecdsa.NewSignature(&r, &s).Verify(digest[:], pub) {
		t.Fatal("the high-S twin should verify under plain ECDSA")
	}
	twinDER := derHex(b[:32], b[32:]) // by hand: dcrd's Serialize would normalize to low-S
	rawDER, _ := hex.DecodeString(twinDER)
	if d, err := ecdsa.ParseDERSignature(rawDER); err != nil {
		t.Fatalf("hand-made DER twin does not parse: %v", err)
	} else if ds := d.S(); !ds.IsOverHalfOrder() {
		t.Fatal("hand-made DER twin is not high-S")
	}
	for _, h := range []string{twin, twinDER} {
		_, _, err := ParseSignature(h)
		if !errors.Is(err, ErrHighS) || !strings.Contains(err.Error(), "high-S") {
			t.Errorf("ParseSignature(high-S twin %s...) = %v, want an error naming high-S", h[:8], err)
		}
		if SignatureValid(k.PublicKey, h, digest) {
			t.Error("SignatureValid accepted a high-S twin")
		}
	}

	// And through the threshold: the twin never counts.
	f := newFixture(t, "1-of-3")
	f.addSig(t, "alice", testKey("alice"))
	f.m.Signatures.Maintainers[0].Signature = highSTwin(t, f.m.Signatures.Maintainers[0].Signature)
	rep, err := CheckSignatures(f.m, f.cfg)
	if err == nil || rep.Entries[0].Reason != "does not count: high-S signature" {
		t.Fatalf("got %v / %+v, want high-S refused", err, rep.Entries)
	}
}

// derHex encodes r and s (32-byte big-endian) as minimal DER, without
// normalizing s.
func derHex(r, s []byte) string {
	integer := func(v []byte) []byte {
		for len(v) > 1 && v[0] == 0 && v[1]&0x80 == 0 {
			v = v[1:]
		}
		if v[0]&0x80 != 0 {
			v = append([]byte{0}, v...)
		}
		return append([]byte{0x02, byte(len(v))}, v...)
	}
	body := append(integer(r), integer(s)...)
	return hex.EncodeToString(append([]byte{0x30, byte(len(body))}, body...))
}

func TestParseSignatureRefuses(t *testing.T) {
	v, _ := loadVectors(t)
	der := v.Keys[1].DER // 0x21-byte r with a leading zero
	n := "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141"
	one := strings.Repeat("0", 63) + "1"
	zero := strings.Repeat("0", 64)
	cases := []struct{ name, hex, want string }{
		{"empty", "", "0 bytes"},
		{"not hex", "zz", "not hex"},
		{"odd length", v.Keys[0].Compact[:127], "not hex"},
		{"63 bytes", v.Keys[0].Compact[:126], "63 bytes"},
		{"65 bytes", v.Keys[0].Compact + "00", "65 bytes"},
		{"compact r zero", zero + one, "non-zero"},
		{"compact s zero", one + zero, "non-zero"},
		{"compact r = N", n + one, "r is not below"},
		{"compact s = N", one + n, "s is not below"},
		{"DER trailing garbage", der + "00", "DER"},
		{"DER trailing garbage, length fixed", "30" + hex.EncodeToString([]byte{byte(len(der)/2 - 2 + 1)}) + der[4:] + "00", "DER"},
		{"DER truncated", der[:len(der)-2], "DER"},
		{"DER non-minimal r", "3046022200" + der[8:], "DER"},
		{"DER wrong tag", "31" + der[2:], "want 64-byte compact"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := ParseSignature(c.hex)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("ParseSignature(%q) = %v, want error containing %q", c.hex, err, c.want)
			}
		})
	}
}

func TestKeyFileRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "alice.key")
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteKeyFile(path, k); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	data, _ := os.ReadFile(path)
	if want := hex.EncodeToString(k.Serialize()) + "\n# public_key = " + pubHex(k) + "\n"; string(data) != want {
		t.Errorf("key file:\n%s\nwant:\n%s", data, want)
	}
	got, err := ReadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Key.Equals(&k.Key) {
		t.Error("read a different key")
	}
	if err := WriteKeyFile(path, k); err == nil {
		t.Error("WriteKeyFile overwrote an existing file")
	}
}

func TestReadKeyFileRefuses(t *testing.T) {
	dir := t.TempDir()
	k := testKey("alice")
	good := hex.EncodeToString(k.Serialize()) + "\n# public_key = " + pubHex(k) + "\n"
	cases := []struct {
		name, content string
		mode          os.FileMode
		want          string
	}{
		{"group readable", good, 0o640, "mode 0640 gives group/others access"},
		{"world readable", good, 0o604, "chmod 600"},
		{"two keys", good + hex.EncodeToString(k.Serialize()) + "\n", 0o600, "second key line"},
		{"short", "abcd\n", 0o600, "64 hex digits"},
		{"zero", strings.Repeat("0", 64) + "\n", 0o600, "not in [1, N-1]"},
		{"wrong public key", hex.EncodeToString(k.Serialize()) + "\n# public_key = " + pubHex(testKey("bob")) + "\n", 0o600, "does not match"},
		{"empty", "# nothing\n", 0o600, "no private key line"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_"))
			if err := os.WriteFile(p, []byte(c.content), 0o600); err != nil {
				t.Fatal(err)
			}
			os.Chmod(p, c.mode)
			_, err := ReadKeyFile(p)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("ReadKeyFile = %v, want error containing %q", err, c.want)
			}
		})
	}
	t.Run("symlink", func(t *testing.T) {
		p := filepath.Join(dir, "real")
		os.WriteFile(p, []byte(good), 0o600)
		l := filepath.Join(dir, "link")
		os.Symlink(p, l)
		if _, err := ReadKeyFile(l); err == nil {
			t.Fatal("ReadKeyFile followed a symlink")
		}
	})
}

func FuzzParseSignature(f *testing.F) {
	v, _ := loadVectors(f)
	for _, k := range v.Keys {
		f.Add(k.Compact)
		f.Add(k.DER)
	}
	f.Add(highSTwin(f, v.Keys[0].Compact))
	f.Add(v.Keys[0].DER + "00")
	f.Add("3006020101020101")
	f.Fuzz(func(t *testing.T, s string) {
		sig, form, err := ParseSignature(s)
		if err != nil {
			return
		}
		if sv := sig.S(); sv.IsOverHalfOrder() {
			t.Fatalf("accepted high-S %q", s)
		}
		raw, _ := hex.DecodeString(s)
		var again []byte
		switch form {
		case Compact:
			again = compactBytes(sig)
		case DER:
			again = sig.Serialize()
		default:
			t.Fatalf("form %v", form)
		}
		if string(again) != string(raw) {
			t.Fatalf("%q accepted as %s but re-encodes as %x", s, form, again)
		}
	})
}

func FuzzParsePublicKey(f *testing.F) {
	v, _ := loadVectors(f)
	for _, k := range v.Keys {
		f.Add(k.PublicKey)
		f.Add(strings.ToUpper(k.PublicKey))
	}
	f.Add("04" + strings.Repeat("00", 64))
	f.Fuzz(func(t *testing.T, s string) {
		pub, err := ParsePublicKeyHex(s)
		if err != nil {
			return
		}
		raw, _ := hex.DecodeString(s)
		if got := pub.SerializeCompressed(); string(got) != string(raw) {
			t.Fatalf("%q accepted but re-encodes as %x", s, got)
		}
		if norm, ok := normalizeHint(s); !ok || norm != string(raw) {
			t.Fatalf("normalizeHint(%q) disagrees with ParsePublicKeyHex", s)
		}
	})
}
