package client

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/blvm/blvm-sandbox/capabilities"
	"github.com/blvm/blvm-sandbox/internal/atomicfile"
	"github.com/blvm/blvm-sandbox/loader"
	"github.com/blvm/blvm-sandbox/manifest"
	"github.com/blvm/blvm-sandbox/nodeconfig"
	"github.com/blvm/blvm-sandbox/policy"
	"github.com/blvm/blvm-sandbox/registry/layout"
	"github.com/blvm/blvm-sandbox/verify"
)

// Blob returns the cache path of the blob hex, downloading it when the
// cache lacks it: at most size bytes, resumed with Range from a partial
// download, and renamed into the cache only once its SHA-256 is hex.
// progress, when set, is called as bytes arrive.
func (c *Client) Blob(hexDigest string, size int64, progress func(done, total int64)) (string, error) {
	return c.blob(hexDigest, size, progress, false)
}

// blob is Blob; with vouched, size is one the maintainers signed, and the
// disk space is reserved for it at once. Only then: a size only the
// registry gives could reserve the disk without a byte being sent.
func (c *Client) blob(hexDigest string, size int64, progress func(done, total int64), vouched bool) (string, error) {
	if !layout.ValidHex(hexDigest) {
		return "", fmt.Errorf("blob %q: not a sha256 hex digest", hexDigest)
	}
	dir := filepath.Join(c.opt.CacheDir, "blobs", "sha256")
	final := filepath.Join(dir, hexDigest)
	if ok, _ := hashIs(final, hexDigest, size); ok {
		return final, nil
	}
	if err := os.MkdirAll(filepath.Join(c.opt.CacheDir, "blobs", "partial"), 0o700); err != nil {
		return "", err
	}
	os.MkdirAll(dir, 0o700)
	part := filepath.Join(c.opt.CacheDir, "blobs", "partial", hexDigest)
	f, err := os.OpenFile(part, os.O_CREATE|os.O_RDWR|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return "", err
	}
	defer f.Close()
	have, _ := f.Seek(0, io.SeekEnd)
	if have > size {
		f.Truncate(0)
		have = 0
	}
	u := joinURL(c.opt.URL, layout.BlobsDir, hexDigest)
	// Hash while writing: the prefix already on disk first, then the
	// bytes as they arrive, so the blob is read once.
	hasher := sha256.New()
	if have > 0 {
		f.Seek(0, io.SeekStart)
		if n, _ := io.Copy(hasher, io.LimitReader(f, have)); n != have {
			f.Truncate(0)
			hasher.Reset()
			have = 0
		}
	}
	if have < size || size == 0 {
		rc, partial, err := c.fetch.open(u, size-have, have)
		if err == nil && !partial && have > 0 {
			// The server ignored Range: start again, bounded by the whole size.
			rc.Close()
			f.Truncate(0)
			hasher.Reset()
			have = 0
			rc, _, err = c.fetch.open(u, size, 0)
		}
		if err != nil {
			return "", fmt.Errorf("download %s: %w", u, err)
		}
		defer rc.Close()
		f.Seek(have, io.SeekStart)
		if vouched && size > have {
			// Reserve the blocks at once (ext4 then skips allocating as
			// the bytes arrive: ~1.25× the throughput here). KEEP_SIZE:
			// the file's length stays what was received, so an
			// interrupted download resumes where it stopped. A file
			// system without fallocate just allocates as it goes.
			_ = unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_KEEP_SIZE, have, size-have)
		}
		var w io.Writer = f
		if progress != nil {
			w = &progressWriter{w: w, done: have, total: size, fn: progress}
		}
		n, err := io.CopyBuffer(io.MultiWriter(w, hasher), io.LimitReader(rc, size-have+1), make([]byte, 256<<10))
		if err != nil {
			return "", fmt.Errorf("download %s: after %d bytes: %w (run again to resume)", u, have+n, err)
		}
		if have+n > size {
			f.Truncate(0)
			return "", fmt.Errorf("download %s: length bound: more than the %d bytes the signed index gives", u, size)
		}
		have += n
	}
	if got := hex.EncodeToString(hasher.Sum(nil)); have != size || got != hexDigest {
		os.Remove(part)
		return "", fmt.Errorf("download %s: hash: got sha256:%s (%d bytes), the signed index pins sha256:%s (%d bytes)", u, got, have, hexDigest, size)
	}
	// No fsync: the cache is not trusted across a crash. Every use hashes
	// the blob again (hashIs above, then loader.Prepare seals and hashes
	// the binary), so a blob torn by a crash is downloaded again; the
	// files installed into the modules dir are fsynced by Commit.
	if err := os.Rename(part, final); err != nil {
		return "", err
	}
	return final, nil
}

type progressWriter struct {
	w           io.Writer
	done, total int64
	fn          func(done, total int64)
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.done += int64(n)
	p.fn(p.done, p.total)
	return n, err
}

func hashIs(path, hexDigest string, size int64) (bool, string) {
	f, err := os.Open(path)
	if err != nil {
		return false, "missing"
	}
	defer f.Close()
	h := sha256.New()
	n, _ := io.Copy(h, io.LimitReader(f, size+1))
	got := "sha256:" + hex.EncodeToString(h.Sum(nil))
	return n == size && got == "sha256:"+hexDigest, fmt.Sprintf("%s (%d bytes)", got, n)
}

// Staged is a planned module, downloaded, checked against the signed
// index, and verified by loader.Prepare as a load would verify it.
type Staged struct {
	Step
	Dir      string
	Prepared *loader.Prepared // nil when AboveCeiling is not empty
	// AboveCeiling are the capabilities the operator's settings refuse
	// (above [capabilities] max_tier, or denied), each with what would
	// allow it: shown in the plan, and the install refused.
	AboveCeiling []capabilities.Refusal
	// Download is the time its blobs took to fetch (or to find in the
	// cache); Verify the rest of its staging (checks, copies, Prepare).
	Download, Verify time.Duration
}

// CeilingError refuses a plan in which some module asks for capabilities
// the operator's settings refuse. Staged is the whole plan, for showing.
type CeilingError struct {
	Staged []Staged
}

func (e *CeilingError) Error() string {
	var parts []string
	for _, s := range e.Staged {
		for _, r := range s.AboveCeiling {
			parts = append(parts, fmt.Sprintf("%s %s: %s: %s (allow with %s)", s.Entry.Name, s.Entry.Version, r.Capability.Name, r.Why, r.Allow))
		}
	}
	return "capabilities above the operator's ceiling: " + strings.Join(parts, "; ")
}

// Stage downloads every module of the plan into the cache, builds a module
// dir for each and verifies it: the manifest against the TUF target's
// length and hash, its values against the entry, then the maintainers'
// threshold, expiry, node version, rollback, config and hash through
// loader.Prepare under the operator's config. Nothing is installed.
func (c *Client) Stage(plan []Step, cfg *nodeconfig.Config, host policy.Host, allowDowngrade bool, progress func(name string, done, total int64)) (_ []Staged, err error) {
	stageRoot := filepath.Join(c.opt.CacheDir, "stage")
	if err := os.MkdirAll(stageRoot, 0o700); err != nil {
		return nil, err
	}
	cat, err := capabilities.Default()
	if err != nil {
		return nil, err
	}
	var out []Staged
	defer func() {
		var ce *CeilingError
		if err != nil && !errors.As(err, &ce) {
			Cleanup(out) // nothing staged outlives a refusal
		}
	}()
	ceiling := false
	for _, s := range plan {
		e := s.Entry
		label := e.Name + " " + e.Version
		began := time.Now()
		var download time.Duration
		fetch := func(hexDigest string, size int64, pf func(done, total int64), vouched bool) (string, error) {
			t := time.Now()
			defer func() { download += time.Since(t) }()
			return c.blob(hexDigest, size, pf, vouched)
		}
		tf, ok := c.targets[layout.TargetPath(e.Name, e.Version)]
		if !ok {
			return nil, fmt.Errorf("%s: not in snapshot %d", label, c.Snapshot)
		}
		mhex, err := layout.HexOf(e.Manifest.Hash)
		if err != nil {
			return nil, fmt.Errorf("%s: manifest %w", label, err)
		}
		mpath, err := fetch(mhex, tf.Length, nil, false)
		if err != nil {
			return nil, fmt.Errorf("%s: manifest: %w", label, err)
		}
		src, err := os.ReadFile(mpath)
		if err != nil {
			return nil, err
		}
		if err := tf.VerifyLengthHashes(src); err != nil {
			return nil, fmt.Errorf("%s: manifest: TUF target length/hash: %w", label, err)
		}
		m, err := manifest.ParseBytes(manifest.FileName, src)
		if err != nil {
			return nil, fmt.Errorf("%s: manifest: %w", label, err)
		}
		if diff := e.Agrees(m); diff != "" {
			return nil, fmt.Errorf("%s: index entry: %s", label, diff)
		}
		// The maintainers' threshold before the binary, as the seed's flow
		// has it: a registry that signs anything gets no byte of a module
		// the maintainers did not sign onto this disk, and the download's
		// bound is then a size they signed. loader.Prepare checks it all
		// again below, with the rest.
		if _, err := verify.CheckSignatures(m, cfg); err != nil {
			return nil, fmt.Errorf("%s: before downloading its binary: %w", label, err)
		}
		var pf func(done, total int64)
		if progress != nil {
			pf = func(d, t int64) { progress(e.Name, d, t) }
		}
		bhex, err := layout.HexOf(e.Binary.Hash)
		if err != nil {
			return nil, fmt.Errorf("%s: binary %w", label, err)
		}
		bpath, err := fetch(bhex, e.Binary.Size, pf, true)
		if err != nil {
			return nil, fmt.Errorf("%s: binary: %w", label, err)
		}
		dir, err := os.MkdirTemp(stageRoot, e.Name+"-")
		if err != nil {
			return nil, err
		}
		os.Chmod(dir, 0o755)
		err = writeFile(filepath.Join(dir, manifest.FileName), bytes.NewReader(src), 0o644)
		if err == nil && e.Config != nil {
			var chex, cpath string
			if chex, err = layout.HexOf(e.Config.Hash); err == nil {
				if cpath, err = fetch(chex, e.Config.Size, nil, false); err == nil {
					err = copyFile(cpath, filepath.Join(dir, manifest.ConfigFileName), 0o644)
				}
			}
		}
		if err == nil {
			bin := filepath.Join(dir, m.EntryPoint)
			if err = os.MkdirAll(filepath.Dir(bin), 0o755); err == nil {
				err = copyFile(bpath, bin, 0o755)
			}
		}
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("%s: stage: %w", label, err)
		}
		// The ceiling before the rest of the checks, for every module, so
		// that the plan shows all it refuses at once. A refused module is
		// not prepared, so nothing of it can be committed.
		if _, refusals, rerr := cat.ResolveAsRequested(m, cfg); rerr == nil && len(refusals) > 0 {
			ceiling = true
			out = append(out, Staged{Step: s, Dir: dir, AboveCeiling: refusals, Download: download, Verify: time.Since(began) - download})
			continue
		}
		prep, err := loader.Prepare(dir, cfg, loader.Options{Root: cfg.Paths.Root, Host: host, AllowDowngrade: allowDowngrade, Catalog: cat})
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("%s: %w", label, err)
		}
		c.rememberVerified(e, cfg)
		out = append(out, Staged{Step: s, Dir: dir, Prepared: prep, Download: download, Verify: time.Since(began) - download})
	}
	if ceiling {
		return out, &CeilingError{Staged: out}
	}
	return out, nil
}

// Cleanup removes the staged dirs.
func Cleanup(staged []Staged) {
	for _, s := range staged {
		os.RemoveAll(s.Dir)
	}
}

// Commit installs the staged modules into the modules dir in dependency
// order, as one transaction: each is assembled beside its target and
// renamed in, the previous version kept aside until every module is in.
// Any failure puts every previous version back. Only then are the
// rollback high-water marks raised.
func (c *Client) Commit(staged []Staged, cfg *nodeconfig.Config) error {
	mods := cfg.Paths.ModulesDir
	if err := os.MkdirAll(mods, 0o755); err != nil {
		return err
	}
	tx := strconv.FormatInt(time.Now().UnixNano(), 36)
	type undo struct{ dst, old string }
	var done []undo
	rollback := func(cause error) error {
		for i := len(done) - 1; i >= 0; i-- {
			u := done[i]
			os.RemoveAll(u.dst)
			if u.old != "" {
				os.Rename(u.old, u.dst)
			}
		}
		atomicfile.SyncDir(mods)
		return fmt.Errorf("install rolled back, the modules dir is as it was: %w", cause)
	}
	for _, s := range staged {
		m := s.Prepared.Manifest
		dst := filepath.Join(mods, m.Name)
		tmp, err := os.MkdirTemp(mods, "."+m.Name+".install-")
		if err != nil {
			return rollback(err)
		}
		os.Chmod(tmp, 0o755)
		err = writeFile(filepath.Join(tmp, manifest.FileName), bytes.NewReader(s.Prepared.ManifestSource), 0o644)
		if err == nil && s.Prepared.Verified.Config != nil {
			err = writeFile(filepath.Join(tmp, manifest.ConfigFileName), bytes.NewReader(s.Prepared.Verified.Config), 0o644)
		}
		if err == nil {
			bin := filepath.Join(tmp, m.EntryPoint)
			if err = os.MkdirAll(filepath.Dir(bin), 0o755); err == nil {
				err = copyFile(s.Prepared.Verified.StorePath, bin, 0o755)
			}
		}
		if err == nil {
			err = atomicfile.SyncDir(tmp)
		}
		if err != nil {
			os.RemoveAll(tmp)
			return rollback(fmt.Errorf("%s: %w", m.Name, err))
		}
		u := undo{dst: dst}
		old := dst + ".old-" + tx
		if err := os.Rename(dst, old); err == nil {
			u.old = old
		} else if !errors.Is(err, fs.ErrNotExist) {
			os.RemoveAll(tmp)
			return rollback(fmt.Errorf("%s: %w", m.Name, err))
		}
		if err := os.Rename(tmp, dst); err != nil {
			os.RemoveAll(tmp)
			if u.old != "" {
				os.Rename(u.old, dst)
			}
			return rollback(fmt.Errorf("%s: %w", m.Name, err))
		}
		done = append(done, u)
		if c.failCommit == m.Name {
			return rollback(fmt.Errorf("%s: injected failure", m.Name))
		}
	}
	if err := atomicfile.SyncDir(mods); err != nil {
		return rollback(err)
	}
	for _, u := range done {
		if u.old != "" {
			os.RemoveAll(u.old)
		}
	}
	for _, s := range staged {
		m := s.Prepared.Manifest
		if err := verify.RecordLoaded(cfg.Paths.Root, m.Name, m.Version); err != nil {
			return fmt.Errorf("installed, but the high-water mark of %s: %w", m.Name, err)
		}
	}
	return nil
}

// writeFile creates path with exactly mode, whatever the umask.
func writeFile(path string, r io.Reader, mode os.FileMode) error {
	if err := atomicfile.WriteNew(path, r, mode); err != nil {
		return err
	}
	return os.Chmod(path, mode)
}

func copyFile(from, to string, mode os.FileMode) error {
	in, err := os.OpenFile(from, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer in.Close()
	return writeFile(to, in, mode)
}
