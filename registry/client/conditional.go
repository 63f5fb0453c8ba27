package client

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/blvm/blvm-sandbox/internal/atomicfile"
)

// The timestamp is the one TUF file a client fetches by a fixed name every
// refresh, so it is the one worth asking for conditionally. A 304 stands
// for the exact bytes cached: the validator is kept with the SHA-256 of
// the body it came with, and is sent only while the cached timestamp.json
// still has that hash. go-tuf then verifies the cached bytes as if they had
// been downloaded (signatures, expiry), so a server that answers 304
// forever is a freeze, refused once the timestamp expires.

const timestampFile = "timestamp.json"

// validator is what the server said about the last timestamp it sent.
type validator struct {
	URL          string `json:"url"`
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"last_modified,omitempty"`
	BodySHA256   string `json:"body_sha256"`
}

func (f *fetcher) validatorPath() string {
	return filepath.Join(f.cacheDir, "timestamp-validator.json")
}

func isTimestampURL(u string) bool {
	return strings.HasSuffix(u, "/"+timestampFile)
}

// conditional adds If-None-Match / If-Modified-Since to a timestamp
// request when the cache holds the body they validate; it returns that
// body, the answer to a 304.
func (f *fetcher) conditional(req *http.Request) []byte {
	if f.cacheDir == "" || !isTimestampURL(req.URL.String()) {
		return nil
	}
	var v validator
	data, err := os.ReadFile(f.validatorPath())
	if err != nil || json.Unmarshal(data, &v) != nil || v.URL != req.URL.String() {
		return nil
	}
	cached, err := os.ReadFile(filepath.Join(f.cacheDir, "metadata", timestampFile))
	if err != nil || sha256hex(cached) != v.BodySHA256 {
		return nil
	}
	if v.ETag == "" && v.LastModified == "" {
		return nil
	}
	if v.ETag != "" {
		req.Header.Set("If-None-Match", v.ETag)
	}
	if v.LastModified != "" {
		req.Header.Set("If-Modified-Since", v.LastModified)
	}
	return cached
}

// remember records the validators of a timestamp response and its body.
func (f *fetcher) remember(u string, h http.Header, body []byte) {
	if f.cacheDir == "" || !isTimestampURL(u) {
		return
	}
	v := validator{URL: u, ETag: h.Get("ETag"), LastModified: h.Get("Last-Modified"), BodySHA256: sha256hex(body)}
	if v.ETag == "" && v.LastModified == "" {
		os.Remove(f.validatorPath())
		return
	}
	data, _ := json.Marshal(v)
	if old, err := os.ReadFile(f.validatorPath()); err == nil && bytes.Equal(old, data) {
		return
	}
	atomicfile.WriteFile(f.validatorPath(), data, 0o600)
}

func sha256hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
