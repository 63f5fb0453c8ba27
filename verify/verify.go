// Package verify decides whether a module may run and seals the bytes that
// will: it checks the manifest's signatures against the operator's pinned
// keys and threshold, the signed expiry, the node version constraint and
// the version high-water mark, then hashes the binary from one fd while
// copying it into a root-owned, content-addressed store. The runtime execs
// the store entry, never the module's file. docs/verify.md explains each
// check and its order.
package verify

import (
	"errors"
	"fmt"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"time"

	"github.com/blvm/blvm-sandbox/manifest"
	"github.com/blvm/blvm-sandbox/nodeconfig"
)

// Options are the inputs to Verify that do not come from the manifest or
// the node config. The zero value works: DefaultRoot (or the config's
// sandbox root), the current time, no downgrade.
type Options struct {
	Root           string    // runtime root; "" means cfg.Paths.Root, then DefaultRoot
	Now            time.Time // for expiry; zero means time.Now()
	AllowDowngrade bool      // accept a version below the high-water mark (--allow-downgrade)
	// CheckSource hashes the module dir's entry point even when the store
	// already holds its entry, so the report says what is on disk. `verify
	// DIR` sets it; a load does not need it (it execs the sealed entry).
	CheckSource bool
}

// Check is one line of a verification report.
type Check struct {
	Name   string // "signature <name>", "threshold", "expiry", "node version", "rollback", "config", "hash"
	OK     bool
	Detail string
}

// Result is what Verify found, in the order it checked.
type Result struct {
	Checks     []Check
	Signatures SignatureReport
	// StorePath is the sealed store entry to exec; "" unless every check
	// passed.
	StorePath string
	// Reused is true when StorePath already existed, so the module's file
	// was not copied (and not read at all unless Options.CheckSource).
	Reused bool
	// Config is the shipped config.toml exactly as the config check read
	// and hashed it; nil when the module ships none. The loader merges
	// these bytes and never reads the file again.
	Config []byte
}

// OK reports whether every check passed and the binary is sealed. A
// "signature <name>" line that does not count is not a failure by itself:
// the threshold line decides.
func (r *Result) OK() bool {
	return r != nil && r.StorePath != "" && len(r.Checks) > 0 && r.firstFailure() == nil
}

func (r *Result) add(name string, err error, okDetail string) {
	if err != nil {
		r.Checks = append(r.Checks, Check{Name: name, Detail: err.Error()})
		return
	}
	r.Checks = append(r.Checks, Check{Name: name, OK: true, Detail: okDetail})
}

// Verify runs every check on the module in moduleDir, in this order:
//
//  1. signatures and threshold, over the manifest's signing view;
//  2. expiry (signed, so checked only once the signatures are trusted);
//  3. node version: the manifest's "blvm-node" constraint vs cfg.Node.Version;
//  4. rollback: the version against the high-water mark;
//  5. config: the shipped config.toml against [config], read once;
//  6. hash: the entry point hashed from one fd while copied into the store
//     (and, with Options.CheckSource, re-hashed when the entry exists);
//  7. executable: the hashed bytes' ELF header (CheckExecutable): a binary
//     that cannot run in the container is never sealed.
//
// Checks 1-4 read only the manifest. Nothing in the module dir is opened
// unless they all pass, so an unsigned or refused manifest never gets
// attacker bytes copied into the root-owned store. The Result lists every
// check that ran. The error is the first failure's detail, which names its check
// ("rollback: ...", "hash: ..."); the caller adds the module's name.
// Verify does not raise the high-water mark: the runtime calls RecordLoaded
// when it loads.
func Verify(moduleDir string, m *manifest.Manifest, cfg *nodeconfig.Config, opt Options) (*Result, error) {
	res := &Result{}
	if m == nil || cfg == nil {
		return res, errors.New("verify: nil manifest or node config")
	}
	root := opt.Root
	if root == "" {
		root = cfg.Paths.Root
	}
	now := opt.Now
	if now.IsZero() {
		now = time.Now()
	}

	rep, sigErr := CheckSignatures(m, cfg)
	res.Signatures = rep
	for i, v := range rep.Entries {
		name := v.Name
		if name == "" {
			name = fmt.Sprintf("#%d", i+1)
		}
		res.Checks = append(res.Checks, Check{Name: "signature " + name, OK: v.Counts, Detail: v.Reason})
	}
	res.add("threshold", sigErr, rep.Summary)

	expiryOK := "no expiry set"
	if m.Expires != nil {
		expiryOK = "signatures valid until " + m.Expires.UTC().Format(time.RFC3339)
	}
	res.add("expiry", CheckExpiry(m, now), expiryOK)

	detail, err := checkNodeVersion(m, cfg.Node.Version)
	res.add("node version", err, detail)

	allow := opt.AllowDowngrade || cfg.ModuleSettings(m.Name).AllowDowngrade
	detail, err = checkRollback(root, m.Name, m.Version, allow)
	res.add("rollback", err, detail)

	if res.firstFailure() == nil {
		data, detail, err := checkConfig(moduleDir, m)
		res.add("config", err, detail)
		res.Config = data
	} else {
		res.Checks = append(res.Checks, Check{Name: "config", Detail: "not checked: the module dir is not read until the manifest checks pass"})
	}
	if first := res.firstFailure(); first != nil {
		res.Checks = append(res.Checks, Check{Name: "hash", Detail: "not checked: the binary is not read until the checks above pass"})
		res.Config = nil
		return res, errors.New(first.Detail) // the detail names the check; callers add the module
	}

	store := &Store{Root: root}
	path, reused, err := store.Seal(moduleDir, m)
	if err == nil && reused && opt.CheckSource {
		err = CheckSource(moduleDir, m)
	}
	hashOK := ""
	if err == nil {
		switch {
		case !reused:
			hashOK = fmt.Sprintf("%s, %d bytes, sealed at %s", m.Binary.Hash, m.Binary.Size, path)
		case opt.CheckSource:
			hashOK = fmt.Sprintf("%s, %d bytes, re-read from %s; already sealed at %s", m.Binary.Hash, m.Binary.Size, filepath.Join(moduleDir, m.EntryPoint), path)
		default:
			hashOK = fmt.Sprintf("%s, %d bytes, already sealed at %s", m.Binary.Hash, m.Binary.Size, path)
		}
	}
	// The ELF check runs on the bytes that hashed right, so a refusal there
	// is its own line after an "ok" hash.
	var notExec *NotExecutableError
	if errors.As(err, &notExec) {
		res.add("hash", nil, fmt.Sprintf("%s, %d bytes, matches the manifest", m.Binary.Hash, m.Binary.Size))
		res.add("executable", err, "")
	} else {
		res.add("hash", err, hashOK)
		if err == nil {
			res.add("executable", nil, fmt.Sprintf("%s: a static executable for %s", m.EntryPoint, goruntime.GOARCH))
		}
	}
	if err != nil {
		res.Config = nil
		return res, err
	}
	res.StorePath, res.Reused = path, reused
	return res, nil
}

func (r *Result) firstFailure() *Check {
	for i := range r.Checks {
		if !r.Checks[i].OK && !isSignatureLine(r.Checks[i].Name) {
			return &r.Checks[i]
		}
	}
	return nil
}

// isSignatureLine reports per-entry lines: one entry not counting is not a
// refusal; the threshold line decides.
func isSignatureLine(name string) bool {
	return strings.HasPrefix(name, "signature ")
}

// checkNodeVersion matches the manifest's "blvm-node" constraint against
// the node's version with manifest.ParseConstraint, the one evaluator.
func checkNodeVersion(m *manifest.Manifest, nodeVersion string) (string, error) {
	c, ok := m.Dependencies[manifest.NodeDependency]
	if !ok {
		return fmt.Sprintf("no %s constraint (node is %s)", manifest.NodeDependency, nodeVersion), nil
	}
	con, err := manifest.ParseConstraint(c)
	if err != nil {
		return "", fmt.Errorf("node version: %w", err)
	}
	v, err := manifest.ParseVersion(nodeVersion)
	if err != nil {
		return "", fmt.Errorf("node version: node config: %w", err)
	}
	if !con.Check(v) {
		return "", fmt.Errorf("node version: %s %s does not satisfy the manifest's constraint %q", manifest.NodeDependency, nodeVersion, c)
	}
	return fmt.Sprintf("%s %s satisfies %q", manifest.NodeDependency, nodeVersion, c), nil
}

func checkRollback(root, name, version string, allow bool) (string, error) {
	h, err := LoadHighWater(root)
	if err != nil {
		return "", err
	}
	if err := h.Check(name, version, allow); err != nil {
		return "", err
	}
	mark := h.Mark(name)
	switch {
	case mark == "":
		return fmt.Sprintf("%s: first load of %s", version, name), nil
	case mark == version:
		return fmt.Sprintf("%s: same as the high-water mark", version), nil
	}
	if v, _ := manifest.ParseVersion(version); v != nil {
		if hv, _ := manifest.ParseVersion(mark); hv != nil && v.LessThan(hv) {
			return fmt.Sprintf("%s: downgrade from %s accepted (allow-downgrade)", version, mark), nil
		}
	}
	return fmt.Sprintf("%s: above the high-water mark %s", version, mark), nil
}
