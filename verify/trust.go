package verify

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"

	"github.com/blvm/blvm-sandbox/manifest"
	"github.com/blvm/blvm-sandbox/nodeconfig"
)

// Verdict says whether one [signatures].maintainers entry counts toward the
// threshold, and why.
type Verdict struct {
	Name      string // the name the manifest claims; never trusted
	PublicKey string // the key hex the manifest claims; a hint only
	Counts    bool
	// PinnedAs is the operator's name for the key that verified ("" when
	// none did). It is what the report prints, not Name.
	PinnedAs string
	Reason   string // "counts: pinned as alice", "does not count: ..."
}

// SignatureReport is the outcome of CheckSignatures.
type SignatureReport struct {
	Digest  [32]byte  // manifest.SigningDigest of the manifest
	M, N    int       // the operator's threshold
	Entries []Verdict // one per manifest entry, in manifest order
	Signed  []string  // pinned names of the distinct keys that counted
	OK      bool      // len(Signed) >= M
	Summary string    // "threshold 2-of-3: 2 distinct pinned keys signed (alice, bob)"
}

type pinnedKey struct {
	name string
	key  *secp256k1.PublicKey
}

// CheckSignatures decides whether the manifest carries enough signatures
// from keys the operator pinned. The rules (docs/verify.md):
//   - the threshold and keys are the operator's (cfg.ThresholdFor); the
//     manifest's own threshold and keys are hints only;
//   - a signature counts only if it verifies over this manifest's signing
//     digest under a pinned key;
//   - each distinct pinned key (compared as compressed bytes) counts once,
//     however many entries or names carry it;
//   - high-S and malformed signatures never count.
//
// It returns the report and, when the threshold is not met or the trust
// configuration is unusable, an error naming the threshold and the signers.
func CheckSignatures(m *manifest.Manifest, cfg *nodeconfig.Config) (SignatureReport, error) {
	var rep SignatureReport
	if m == nil || cfg == nil {
		return rep, errors.New("signatures: nil manifest or node config")
	}
	digest, err := manifest.SigningDigest(m)
	if err != nil {
		return rep, fmt.Errorf("signatures: %w", err)
	}
	rep.Digest = digest
	mm, n, keys, err := cfg.ThresholdFor(m.Name)
	if err != nil {
		return rep, fmt.Errorf("threshold: %w", err)
	}
	rep.M, rep.N = mm, n

	pinned := make([]pinnedKey, 0, len(keys))
	byKey := map[string]int{} // compressed bytes -> index in pinned
	for _, k := range keys {
		pub, err := manifest.ParsePublicKey(k.PublicKey)
		if err != nil {
			return rep, fmt.Errorf("threshold: pinned key %q: %w", k.Name, err)
		}
		norm := string(pub.SerializeCompressed())
		if _, dup := byKey[norm]; dup {
			continue // nodeconfig refuses this; never count one key twice anyway
		}
		byKey[norm] = len(pinned)
		pinned = append(pinned, pinnedKey{k.Name, pub})
	}

	counted := map[int]bool{}
	if m.Signatures != nil {
		for _, e := range m.Signatures.Maintainers {
			v := judge(e, digest, pinned, byKey, counted)
			rep.Entries = append(rep.Entries, v)
			if v.Counts {
				rep.Signed = append(rep.Signed, v.PinnedAs)
			}
		}
	}

	threshold := fmt.Sprintf("%d-of-%d", mm, n)
	signers := "none"
	if len(rep.Signed) > 0 {
		signers = strings.Join(rep.Signed, ", ")
	}
	noun := "keys"
	if len(rep.Signed) == 1 {
		noun = "key"
	}
	rep.OK = len(rep.Signed) >= mm
	if rep.OK {
		rep.Summary = fmt.Sprintf("threshold %s: %d distinct pinned %s signed (%s)", threshold, len(rep.Signed), noun, signers)
		return rep, nil
	}
	rep.Summary = fmt.Sprintf("threshold %s not met: %d distinct pinned %s signed (%s)", threshold, len(rep.Signed), noun, signers)
	if m.Signatures == nil {
		rep.Summary += "; the manifest has no [signatures]"
	}
	return rep, errors.New(rep.Summary)
}

// judge decides one manifest entry. counted is updated when it counts.
func judge(e manifest.Maintainer, digest [32]byte, pinned []pinnedKey, byKey map[string]int, counted map[int]bool) Verdict {
	v := Verdict{Name: e.Name, PublicKey: e.PublicKey}
	no := func(format string, args ...any) Verdict {
		v.Reason = "does not count: " + fmt.Sprintf(format, args...)
		return v
	}
	sig, _, err := ParseSignature(e.Signature)
	switch {
	case errors.Is(err, ErrHighS):
		return no("high-S signature")
	case err != nil:
		return no("malformed signature hex: %v", err)
	}

	idx := -1
	if claimed, ok := normalizeHint(e.PublicKey); ok {
		i, pinnedOK := byKey[claimed]
		if !pinnedOK {
			return no("key %s is not pinned", abbrev(e.PublicKey))
		}
		// Verify with the PINNED key: the manifest's key only picks which.
		if !sig.Verify(digest[:], pinned[i].key) {
			return no("bad signature over this manifest (key pinned as %s)", pinned[i].name)
		}
		idx = i
	} else {
		// The hint is unusable: the signature still counts if it verifies
		// under a pinned key. At most n verifications.
		for i, p := range pinned {
			if sig.Verify(digest[:], p.key) {
				idx = i
				break
			}
		}
		if idx < 0 {
			return no("public key %q is malformed and the signature verifies under no pinned key", abbrev(e.PublicKey))
		}
	}

	v.PinnedAs = pinned[idx].name
	if counted[idx] {
		return no("key already counted (pinned as %s)", v.PinnedAs)
	}
	counted[idx] = true
	v.Counts = true
	v.Reason = "counts: pinned as " + v.PinnedAs
	if e.Name != v.PinnedAs {
		v.Reason += fmt.Sprintf(" (the manifest calls it %q)", e.Name)
	}
	return v
}

// normalizeHint returns the compressed bytes of a manifest key hint in any
// hex case, compressed or uncompressed, so one key never looks like two.
func normalizeHint(s string) (string, bool) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) == 0 {
		return "", false
	}
	pub, err := secp256k1.ParsePubKey(b)
	if err != nil {
		return "", false
	}
	return string(pub.SerializeCompressed()), true
}

// abbrev shortens a key for a reason line: "02ab12cd…".
func abbrev(s string) string {
	if len(s) > 16 {
		return s[:16] + "…"
	}
	return s
}

// CheckExpiry refuses a manifest whose signed expires is before now. A
// manifest without expires never expires.
func CheckExpiry(m *manifest.Manifest, now time.Time) error {
	if m.Expires == nil {
		return nil
	}
	if now.After(*m.Expires) {
		return fmt.Errorf("expiry: signatures expired at %s (now %s)",
			m.Expires.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return nil
}
