// Package server serves a registry repository over net/http: the TUF
// metadata and content-addressed blobs as static files (with ETag,
// conditional GET and Range), and an advisory JSON API for search and
// module pages. The client trusts none of the API: it re-verifies what
// it installs from the signed metadata.
package server

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/blvm/blvm-sandbox/manifest"
	"github.com/blvm/blvm-sandbox/registry/layout"
	"github.com/blvm/blvm-sandbox/registry/repo"
)

// New returns an http.Server for the repository in dir with the timeouts
// and header bound a public server needs; requests are logged to log.
func New(dir, addr string, log *slog.Logger) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           Handler(dir, log),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      5 * time.Minute, // a large blob on a slow link
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
}

// Handler serves dir (a repository made by repo.Init).
func Handler(dir string, log *slog.Logger) http.Handler {
	s := &srv{dir: dir}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metadata/{file}", s.metadata)
	mux.HandleFunc("GET /blobs/sha256/{hex}", s.blob)
	mux.HandleFunc("GET /v1/blobs/sha256/{hex}", s.blob)
	mux.HandleFunc("GET /v1/search", s.search)
	mux.HandleFunc("GET /v1/modules/{name}", s.module)
	mux.HandleFunc("GET /v1/modules/{name}/{version}", s.version)
	return logRequests(log, limitBody(mux))
}

type srv struct{ dir string }

// limitBody refuses request bodies: every route is a GET.
func limitBody(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > 0 {
			http.Error(w, "request bodies are not accepted", http.StatusRequestEntityTooLarge)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 0)
		h.ServeHTTP(w, r)
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (s *statusWriter) WriteHeader(c int) { s.status = c; s.ResponseWriter.WriteHeader(c) }
func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(b)
	s.bytes += int64(n)
	return n, err
}

func logRequests(log *slog.Logger, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		h.ServeHTTP(sw, r)
		if log != nil {
			log.Info("request", "method", r.Method, "path", r.URL.Path, "status", sw.status,
				"bytes", sw.bytes, "duration_ms", float64(time.Since(start).Microseconds())/1000,
				"remote", r.RemoteAddr, "range", r.Header.Get("Range"))
		}
	})
}

// serveFile serves one file by name under base with an ETag, so that
// conditional GET and Range work (http.ServeContent).
func serveFile(w http.ResponseWriter, r *http.Request, path, etag, ctype string) {
	f, err := os.Open(path)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	if etag != "" {
		w.Header().Set("ETag", `"`+etag+`"`)
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, "", st.ModTime(), f)
}

func (s *srv) metadata(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	if !validMetaName(name) {
		http.NotFound(w, r)
		return
	}
	path := filepath.Join(repo.ServeDir(s.dir), layout.MetadataDir, name)
	etag := ""
	if data, err := os.ReadFile(path); err == nil && len(data) < 8<<20 {
		sum := sha256.Sum256(data)
		etag = hex.EncodeToString(sum[:16])
	}
	serveFile(w, r, path, etag, "application/json")
}

// validMetaName admits only TUF file names: root.json, N.root.json, ...
func validMetaName(n string) bool {
	base, ok := strings.CutSuffix(n, ".json")
	if !ok {
		return false
	}
	if ver, role, ok := strings.Cut(base, "."); ok {
		if ver == "" || strings.Trim(ver, "0123456789") != "" {
			return false
		}
		base = role
	}
	return slices.Contains([]string{"root", "timestamp", "snapshot", "targets"}, base)
}

func (s *srv) blob(w http.ResponseWriter, r *http.Request) {
	h := r.PathValue("hex")
	if !layout.ValidHex(h) {
		http.Error(w, "blob names are sha256 hex digests", http.StatusBadRequest)
		return
	}
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	serveFile(w, r, filepath.Join(repo.ServeDir(s.dir), layout.BlobsDir, h), h, "application/octet-stream")
}

func (s *srv) entries(w http.ResponseWriter) ([]layout.Entry, bool) {
	rp, err := repo.Open(s.dir)
	if err == nil {
		var es []layout.Entry
		if es, err = rp.Entries(); err == nil {
			return es, true
		}
	}
	http.Error(w, "repository unreadable", http.StatusInternalServerError)
	return nil, false
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func (s *srv) search(w http.ResponseWriter, r *http.Request) {
	es, ok := s.entries(w)
	if !ok {
		return
	}
	q, capability, node := r.URL.Query().Get("q"), r.URL.Query().Get("capability"), r.URL.Query().Get("compatible_with")
	nv, _ := manifest.ParseVersion(node)
	out := []layout.Entry{}
	for _, e := range es {
		if q != "" && !strings.Contains(e.Name, q) && !strings.Contains(strings.ToLower(e.Description), strings.ToLower(q)) {
			continue
		}
		if capability != "" && !slices.Contains(e.Capabilities, capability) {
			continue
		}
		if nv != nil && e.Node != "" {
			if c, err := manifest.ParseConstraint(e.Node); err != nil || !c.Check(nv) {
				continue
			}
		}
		out = append(out, e)
	}
	writeJSON(w, map[string]any{"advisory": true, "results": out})
}

func (s *srv) module(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := layout.CheckName(name, ""); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	es, ok := s.entries(w)
	if !ok {
		return
	}
	out := []layout.Entry{}
	for _, e := range es {
		if e.Name == name {
			out = append(out, e)
		}
	}
	if len(out) == 0 {
		http.NotFound(w, r)
		return
	}
	writeJSON(w, map[string]any{"name": name, "versions": out})
}

func (s *srv) version(w http.ResponseWriter, r *http.Request) {
	name, version := r.PathValue("name"), r.PathValue("version")
	if err := layout.CheckName(name, version); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	es, ok := s.entries(w)
	if !ok {
		return
	}
	for _, e := range es {
		if e.Name == name && e.Version == version {
			h, _ := layout.HexOf(e.Manifest.Hash)
			src, err := os.ReadFile(filepath.Join(repo.ServeDir(s.dir), layout.BlobsDir, h))
			if err != nil {
				http.Error(w, "manifest blob missing", http.StatusInternalServerError)
				return
			}
			writeJSON(w, map[string]any{"entry": e, "manifest": string(src)})
			return
		}
	}
	http.NotFound(w, r)
}
