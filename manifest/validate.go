package manifest

import (
	"encoding/hex"
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/Masterminds/semver/v3"
	"github.com/decred/dcrd/dcrec/secp256k1/v4"

	"github.com/blvm/blvm-sandbox/internal/lazyre"
	"github.com/blvm/blvm-sandbox/internal/tomlfile"
)

// NodeDependency is the pseudo-module a manifest depends on to constrain the
// node's version.
const NodeDependency = "blvm-node"

// maxExactInt is the largest integer that survives canonical JSON, where
// numbers are IEEE 754 doubles (RFC 8785); larger values could not be signed
// exactly.
const maxExactInt = 1<<53 - 1

// maxSats is 21 million bitcoin in satoshis: no price can exceed it.
const maxSats = 21_000_000 * 100_000_000

var (
	nameRE       = lazyre.New(`^[a-z0-9][a-z0-9-]{0,62}$`)
	capabilityRE = lazyre.New(`^[a-z][a-z0-9_]{1,63}$`)
	hashRE       = lazyre.New(`^sha256:[0-9a-f]{64}$`)
	thresholdRE  = lazyre.New(`^([0-9]{1,4})-of-([0-9]{1,4})$`)
)

// ValidModuleName reports whether s is a valid module name: lowercase
// letters, digits and dashes, starting with a letter or digit, at most 63
// characters. The same rule names dependencies and [modules.<name>] tables.
func ValidModuleName(s string) bool { return nameRE().MatchString(s) }

// ValidCapabilityName reports whether s has the shape of a capability name.
// Whether the capability exists is the capabilities package's question.
func ValidCapabilityName(s string) bool { return capabilityRE().MatchString(s) }

// ParseVersion parses a strict semantic version ("1.2.3", "1.2.3-rc.1"; no
// "v" prefix, no missing parts). It is the project's one version parser.
func ParseVersion(s string) (*semver.Version, error) {
	v, err := semver.StrictNewVersion(s)
	if err != nil {
		return nil, fmt.Errorf("version %q: %w", s, err)
	}
	return v, nil
}

// ParseConstraint parses a version constraint such as ">=1.0.0", "^1.2",
// "~1.2.3" or ">=1.0.0, <2.0.0". It is the project's one constraint
// evaluator, so that verification and explain agree on what matches.
func ParseConstraint(s string) (*semver.Constraints, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("constraint is empty")
	}
	c, err := semver.NewConstraint(s)
	if err != nil {
		return nil, fmt.Errorf("constraint %q: %w", s, err)
	}
	return c, nil
}

// ParseThreshold parses "m-of-n" and requires 1 <= m <= n.
func ParseThreshold(s string) (m, n int, err error) {
	sm := thresholdRE().FindStringSubmatch(s)
	if sm == nil {
		return 0, 0, fmt.Errorf("threshold %q: want \"m-of-n\", e.g. \"2-of-3\"", s)
	}
	m, _ = strconv.Atoi(sm[1]) // the pattern guarantees at most 4 digits
	n, _ = strconv.Atoi(sm[2])
	if m < 1 || m > n {
		return 0, 0, fmt.Errorf("threshold %q: need 1 <= m <= n", s)
	}
	return m, n, nil
}

// ParsePublicKey decodes a 33-byte compressed secp256k1 public key in hex
// and checks that it is a point on the curve.
func ParsePublicKey(s string) (*secp256k1.PublicKey, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("public key %q: not hex", s)
	}
	if len(b) != secp256k1.PubKeyBytesLenCompressed {
		return nil, fmt.Errorf("public key %q: want %d bytes compressed, got %d", s, secp256k1.PubKeyBytesLenCompressed, len(b))
	}
	k, err := secp256k1.ParsePubKey(b)
	if err != nil {
		return nil, fmt.Errorf("public key %q: %w", s, err)
	}
	return k, nil
}

// Validate checks every field and returns all problems found. Parse calls it;
// a Manifest built in code can call it directly. Problems carry lines when
// m.Lines is set.
func (m *Manifest) Validate() Problems {
	name := FileName
	if m.Path != "" {
		name = path.Base(strings.ReplaceAll(m.Path, "\\", "/"))
	}
	ps := m.validate(name)
	SortProblems(ps)
	return ps
}

func (m *Manifest) validate(file string) Problems {
	v := &validator{file: file, lines: m.Lines}

	switch {
	case m.Name == "":
		v.add("name", "required")
	case !ValidModuleName(m.Name):
		v.add("name", "%q is not a valid module name (lowercase letters, digits and '-', at most 63)", m.Name)
	}
	if m.Version == "" {
		v.add("version", "required")
	} else if _, err := ParseVersion(m.Version); err != nil {
		v.add("version", "not a strict semantic version: %v", err)
	}
	if m.EntryPoint == "" {
		v.add("entry_point", "required")
	} else if msg := checkEntryPoint(m.EntryPoint); msg != "" {
		v.add("entry_point", "%q %s", m.EntryPoint, msg)
	}

	seen := map[string]int{}
	for i, c := range m.Capabilities {
		f := fmt.Sprintf("capabilities[%d]", i)
		if !ValidCapabilityName(c) {
			v.add(f, "%q is not a valid capability name (lowercase letters, digits and '_')", c)
			continue
		}
		if j, dup := seen[c]; dup {
			v.add(f, "%q is already listed as capabilities[%d]", c, j)
			continue
		}
		seen[c] = i
	}

	v.deps("dependencies", m.Dependencies, m.Name)
	v.deps("optional_dependencies", m.OptionalDependencies, m.Name)
	for dep := range m.OptionalDependencies {
		if _, ok := m.Dependencies[dep]; ok {
			v.add(tomlfile.Key("optional_dependencies", dep), "%q is also a required dependency", dep)
		}
	}
	for k := range m.ConfigSchema {
		if k == "" {
			v.add("config_schema", "empty key")
		}
	}

	if b := m.Binary; b != nil {
		if !hashRE().MatchString(b.Hash) {
			v.add("binary.hash", "%q: want \"sha256:\" and 64 lowercase hex digits", b.Hash)
		}
		if b.Size <= 0 || b.Size > maxExactInt {
			v.add("binary.size", "%d: want a size in bytes between 1 and 2^53-1", b.Size)
		}
	}
	if c := m.Config; c != nil {
		v.config(c)
	}
	if s := m.Signatures; s != nil {
		v.signatures(s)
	}
	if p := m.Payment; p != nil {
		v.payment(p)
	}
	return v.ps
}

// checkEntryPoint returns why p is not a clean relative path inside the
// module directory, or "".
func checkEntryPoint(p string) string {
	switch {
	case strings.ContainsAny(p, "\x00\\"):
		return "must not contain NUL or backslash"
	case strings.HasPrefix(p, "/"):
		return "must be relative to the module directory"
	case strings.HasSuffix(p, "/"):
		return "must name a file, not a directory"
	case p == ".." || strings.HasPrefix(p, "../") || strings.Contains(p, "/../") || strings.HasSuffix(p, "/.."):
		return "must stay inside the module directory"
	case p == "." || path.Clean(p) != p:
		return fmt.Sprintf("is not a clean path (want %q)", path.Clean(p))
	}
	return ""
}

type validator struct {
	file  string
	lines map[string]int
	ps    Problems
}

func (v *validator) add(field, format string, args ...any) {
	v.ps = append(v.ps, Problem{
		File: v.file, Line: tomlfile.Find(v.lines, field), Field: field,
		Message: fmt.Sprintf(format, args...),
	})
}

func (v *validator) deps(table string, deps map[string]string, self string) {
	for dep, c := range deps {
		f := tomlfile.Key(table, dep)
		if !ValidModuleName(dep) {
			v.add(f, "%q is not a valid module name", dep)
		} else if dep == self {
			v.add(f, "a module cannot depend on itself")
		}
		if _, err := ParseConstraint(c); err != nil {
			v.add(f, "invalid version constraint: %v", err)
		}
	}
}

func (v *validator) signatures(s *Signatures) {
	if _, _, err := ParseThreshold(s.Threshold); err != nil {
		v.add("signatures.threshold", "%v", err)
	}
	if len(s.Maintainers) == 0 {
		v.add("signatures.maintainers", "at least one signature is required when [signatures] is present")
	}
	for i, mt := range s.Maintainers {
		f := fmt.Sprintf("signatures.maintainers[%d]", i)
		// The name sits outside the signed view and is printed by verify
		// and explain: the module-name rule keeps it from drawing on a
		// terminal.
		switch {
		case mt.Name == "":
			v.add(f+".name", "required")
		case !ValidModuleName(mt.Name):
			v.add(f+".name", "%q is not a valid maintainer name (lowercase letters, digits and '-', at most 63)", mt.Name)
		}
		if _, err := ParsePublicKey(mt.PublicKey); err != nil {
			v.add(f+".public_key", "%v", err)
		}
		if msg := checkSignatureHex(mt.Signature); msg != "" {
			v.add(f+".signature", "%s", msg)
		}
	}
}

// checkSignatureHex checks only the encoding; verify checks the signature.
func checkSignatureHex(s string) string {
	b, err := hex.DecodeString(s)
	switch {
	case s == "":
		return "required"
	case err != nil:
		return fmt.Sprintf("%q is not hex", s)
	case len(b) == 64:
		return "" // compact r || s
	case len(b) >= 8 && len(b) <= 72 && b[0] == 0x30:
		return "" // DER
	}
	return fmt.Sprintf("%d bytes: want 64-byte compact r||s or a DER signature", len(b))
}

func (v *validator) payment(p *Payment) {
	if p.PriceSats < 0 || p.PriceSats > maxSats {
		v.add("payment.price_sats", "%d: want 0 to %d", p.PriceSats, int64(maxSats))
	}
	if !p.Required {
		return
	}
	if p.PriceSats == 0 {
		v.add("payment.price_sats", "must be positive when payment is required")
	}
	for _, f := range []struct{ key, val string }{
		{"author_payment_code", p.AuthorPaymentCode},
		{"commons_payment_code", p.CommonsPaymentCode},
		{"payment_signature", p.PaymentSignature},
	} {
		if f.val == "" {
			v.add("payment."+f.key, "required when payment is required")
		}
	}
}
