// Package client is the node's side of the registry: a TUF updater over a
// length-bounded fetcher, a cache of trusted metadata and blobs under the
// runtime root, resolution, download and the install transaction.
//
// The registry is trusted for freshness only. Every module it offers is
// installed through loader.Prepare, which checks the maintainers'
// threshold against the operator's pinned keys exactly as a load does.
package client

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/blvm/blvm-sandbox/internal/atomicfile"
	"github.com/blvm/blvm-sandbox/registry/layout"
	"github.com/blvm/blvm-sandbox/registry/repo"
)

// Options configure a client; the command fills them from [registry].
type Options struct {
	URL          string // http(s):// or file:// base of the repository
	RootFile     string // the root.json the operator pins
	CacheDir     string
	MaxStaleness time.Duration // offline: refuse cached metadata older than this
	AllowStale   bool
	Timeout      time.Duration // per request; 0: DefaultTimeout
	Now          func() time.Time
	Warn         func(string) // nil: warnings are dropped
}

// Client is one refreshed view of a registry: every entry comes from one
// snapshot, so resolution never mixes index states.
type Client struct {
	opt      Options
	fetch    *fetcher
	targets  map[string]*metadata.TargetFiles
	Entries  []layout.Entry
	Snapshot int64     // the snapshot version the entries come from
	Fresh    time.Time // when the metadata was last refreshed online
	Offline  bool      // the registry was unreachable; the cache was used
	// failCommit, in tests, fails the commit after the named module.
	failCommit string
}

// RefreshError is a refused refresh, naming the TUF check that failed.
type RefreshError struct {
	Check string
	Err   error
}

func (e *RefreshError) Error() string {
	return fmt.Sprintf("registry metadata refused: %s check failed: %v", e.Check, e.Err)
}
func (e *RefreshError) Unwrap() error { return e.Err }

// classify names the check behind a go-tuf error.
func classify(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout(), isTimeout(err):
		return "timeout"
	case errors.Is(err, &metadata.ErrBadVersionNumber{}):
		return "rollback (version)"
	case errors.Is(err, &metadata.ErrExpiredMetadata{}):
		return "freeze (expired)"
	case errors.Is(err, &metadata.ErrUnsignedMetadata{}):
		return "role signatures"
	case errors.Is(err, &metadata.ErrLengthOrHashMismatch{}):
		return "length/hash (mix-and-match)"
	case errors.Is(err, &metadata.ErrDownloadLengthMismatch{}):
		return "length bound"
	case errors.Is(err, &metadata.ErrDownloadHTTP{}):
		return "download"
	}
	return "consistency"
}

func isTimeout(err error) bool {
	var de *metadata.ErrDownload
	if errors.As(err, &de) {
		return containsAny(de.Msg, "Timeout exceeded", "timeout", "deadline exceeded")
	}
	return false
}

// unreachable reports a registry that could not be reached at all (no
// route, refused, no such host): the case where the cache is used.
func unreachable(err error) bool {
	var de *metadata.ErrDownload
	if errors.As(err, &de) {
		return containsAny(de.Msg, "connection refused", "no such host", "network is unreachable", "no route to host")
	}
	return false
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		for i := 0; i+len(sub) <= len(s); i++ {
			if s[i:i+len(sub)] == sub {
				return true
			}
		}
	}
	return false
}

type state struct {
	PinnedRoot  string    `json:"pinned_root_sha256"`
	RefreshedAt time.Time `json:"refreshed_at"`
}

func (c *Client) now() time.Time {
	if c.opt.Now != nil {
		return c.opt.Now()
	}
	return time.Now()
}

func (c *Client) warn(format string, args ...any) {
	if c.opt.Warn != nil {
		c.opt.Warn(fmt.Sprintf(format, args...))
	}
}

func (c *Client) metaDir() string { return filepath.Join(c.opt.CacheDir, "metadata") }

// Open refreshes the registry's metadata (root chain, timestamp, snapshot,
// targets) and returns the client over that one snapshot. When the
// registry is unreachable it uses the cached metadata, as of the last
// online refresh: refused past MaxStaleness unless AllowStale, with a
// warning past 24 hours.
func Open(opt Options) (*Client, error) {
	if opt.URL == "" || opt.RootFile == "" {
		return nil, errors.New("registry: no [registry] url and root in the node config")
	}
	if opt.MaxStaleness == 0 {
		opt.MaxStaleness = 7 * 24 * time.Hour
	}
	c := &Client{opt: opt, fetch: &fetcher{http: newHTTPClient(opt.Timeout), cacheDir: opt.CacheDir}}
	pinned, err := os.ReadFile(opt.RootFile)
	if err != nil {
		return nil, fmt.Errorf("registry root: %w", err)
	}
	sum := sha256.Sum256(pinned)
	st := c.readState()
	if st.PinnedRoot != hex.EncodeToString(sum[:]) {
		// Another pinned root: nothing cached under the old one is trusted.
		os.RemoveAll(c.metaDir())
		os.Remove(c.fetch.validatorPath())
		st = state{PinnedRoot: hex.EncodeToString(sum[:])}
	}
	if err := os.MkdirAll(c.metaDir(), 0o700); err != nil {
		return nil, err
	}
	start := pinned
	if cached, err := os.ReadFile(filepath.Join(c.metaDir(), "root.json")); err == nil {
		start = cached // a root we verified from the pinned one earlier
	}
	up, err := c.updater(start, false)
	if err == nil {
		up.UnsafeSetRefTime(c.now())
		err = up.Refresh()
	}
	if err != nil && start != nil && unreachable(err) {
		up, err = c.offline(start, st, err)
	} else if err != nil {
		return nil, &RefreshError{Check: classify(err), Err: err}
	} else {
		st.RefreshedAt = c.now().UTC()
		c.writeState(st)
	}
	if err != nil {
		return nil, err
	}
	c.Fresh = st.RefreshedAt
	tm := up.GetTrustedMetadataSet()
	c.Snapshot = tm.Snapshot.Signed.Version
	c.targets = tm.Targets[metadata.TARGETS].Signed.Targets
	if c.Entries, err = repo.EntriesOf(tm.Targets[metadata.TARGETS]); err != nil {
		return nil, &RefreshError{Check: "index entries", Err: err}
	}
	return c, nil
}

func (c *Client) offline(root []byte, st state, cause error) (*updater.Updater, error) {
	if st.RefreshedAt.IsZero() {
		return nil, fmt.Errorf("registry unreachable and nothing cached yet: %w", cause)
	}
	age := c.now().Sub(st.RefreshedAt)
	if age > c.opt.MaxStaleness && !c.opt.AllowStale {
		return nil, fmt.Errorf("registry unreachable (%v), and the cached metadata is %s old, over max_staleness %s: refused (pass --allow-stale to use it)", cause, age.Round(time.Minute), c.opt.MaxStaleness)
	}
	if age > 24*time.Hour {
		c.warn("registry unreachable; using cached metadata refreshed %s ago", age.Round(time.Minute))
	}
	up, err := c.updater(root, true)
	if err != nil {
		return nil, err
	}
	// Judged as of the last online refresh: staleness is bounded above.
	up.UnsafeSetRefTime(st.RefreshedAt)
	if err := up.Refresh(); err != nil {
		return nil, &RefreshError{Check: classify(err) + " (cache)", Err: err}
	}
	c.Offline = true
	return up, nil
}

func (c *Client) updater(root []byte, local bool) (*updater.Updater, error) {
	cfg, err := config.New(joinURL(c.opt.URL, layout.MetadataDir), root)
	if err != nil {
		return nil, err
	}
	cfg.LocalMetadataDir = c.metaDir()
	cfg.LocalTargetsDir = filepath.Join(c.opt.CacheDir, "targets")
	cfg.Fetcher = c.fetch
	cfg.UnsafeLocalMode = local
	return updater.New(cfg)
}

func (c *Client) readState() state {
	var st state
	data, err := os.ReadFile(filepath.Join(c.opt.CacheDir, "state.json"))
	if err == nil {
		json.Unmarshal(data, &st)
	}
	return st
}

func (c *Client) writeState(st state) {
	data, _ := json.Marshal(st)
	if err := atomicfile.WriteFile(filepath.Join(c.opt.CacheDir, "state.json"), data, 0o600); err != nil {
		c.warn("registry cache: %v", err)
	}
}

// Requests and Bytes count what this client fetched.
func (c *Client) Requests() int64 { return c.fetch.requests.Load() }
func (c *Client) Bytes() int64    { return c.fetch.bytes.Load() }

// NotModified counts the conditional requests answered 304.
func (c *Client) NotModified() int64 { return c.fetch.notModified.Load() }

var _ http.RoundTripper = (*http.Transport)(nil)
