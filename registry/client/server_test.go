package client

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/blvm/blvm-sandbox/registry/layout"
)

func TestServerETagConditionalAndRange(t *testing.T) {
	w := newWorld(t)
	w.publish("base", "1.0.0", nil)
	e, _ := w.repo.Entries()
	h, _ := layout.HexOf(e[0].Binary.Hash)
	for _, p := range []string{"/metadata/timestamp.json", "/blobs/sha256/" + h, "/v1/blobs/sha256/" + h} {
		resp, err := http.Get(w.srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		etag := resp.Header.Get("ETag")
		if resp.StatusCode != 200 || etag == "" {
			t.Fatalf("GET %s: %d etag %q", p, resp.StatusCode, etag)
		}
		req, _ := http.NewRequest("GET", w.srv.URL+p, nil)
		req.Header.Set("If-None-Match", etag)
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotModified {
			t.Fatalf("conditional GET %s: %d", p, resp.StatusCode)
		}
	}
	req, _ := http.NewRequest("GET", w.srv.URL+"/blobs/sha256/"+h, nil)
	req.Header.Set("Range", "bytes=3-")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	whole, _ := os.ReadFile(filepath.Join(w.dir, "repository", layout.BlobsDir, h))
	if resp.StatusCode != http.StatusPartialContent || string(body) != string(whole[3:]) {
		t.Fatalf("Range: %d %q", resp.StatusCode, body)
	}
	// A request body is refused; so is anything but GET.
	resp, _ = http.Post(w.srv.URL+"/metadata/timestamp.json", "text/plain", strings.NewReader("x"))
	if resp.StatusCode == 200 {
		t.Fatal("POST accepted")
	}
	resp.Body.Close()
	// The API lists versions and one version's manifest.
	resp, _ = http.Get(w.srv.URL + "/v1/modules/base/1.0.0")
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"binary"`) || !strings.Contains(string(body), "[signatures]") {
		t.Fatalf("module version: %d %s", resp.StatusCode, body)
	}
	resp, _ = http.Get(w.srv.URL + "/v1/search?q=base&compatible_with=0.0.1")
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"results": []`) {
		t.Fatalf("search compatible_with=0.0.1 (needs >=0.1.0): %s", body)
	}
}

func TestDownloadResumesWithRange(t *testing.T) {
	w := newWorld(t)
	w.publish("base", "1.0.0", nil)
	c, err := w.open()
	if err != nil {
		t.Fatal(err)
	}
	e := c.Entries[0]
	h, _ := layout.HexOf(e.Binary.Hash)
	whole, _ := os.ReadFile(filepath.Join(w.dir, "repository", layout.BlobsDir, h))
	part := filepath.Join(w.node, "registry", "blobs", "partial")
	os.MkdirAll(part, 0o700)
	os.WriteFile(filepath.Join(part, h), whole[:5], 0o600) // an interrupted download
	before := c.Bytes()
	p, err := c.Blob(h, e.Binary.Size, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(p)
	if string(got) != string(whole) {
		t.Fatal("resumed blob differs")
	}
	if n := c.Bytes() - before; n != int64(len(whole)-5) {
		t.Fatalf("fetched %d bytes, want only the missing %d", n, len(whole)-5)
	}
}

// A refresh with nothing changed: the root probe (404, which the TUF
// spec requires first) and one conditional GET of the timestamp answered
// 304 with no body; snapshot and targets come from the cache. A change is
// fetched; a 304 for a timestamp that has since expired is a freeze.
func TestRefreshWhenNothingChanged(t *testing.T) {
	w := newWorld(t)
	w.publish("base", "1.0.0", nil)
	first, err := w.open()
	if err != nil {
		t.Fatal(err)
	}
	c, err := w.open()
	if err != nil {
		t.Fatal(err)
	}
	ts := int64(len(w.read("timestamp.json")))
	if c.Requests() != 2 || c.NotModified() != 1 || c.Bytes() >= ts {
		t.Fatalf("%d requests, %d answered 304, %d bytes; want 2 (next root, timestamp), the timestamp 304, fewer than its %d bytes", c.Requests(), c.NotModified(), c.Bytes(), ts)
	}
	t.Logf("refresh with nothing changed: %d requests (%d of them 304), %d bytes; the first refresh: %d requests, %d bytes", c.Requests(), c.NotModified(), c.Bytes(), first.Requests(), first.Bytes())

	w.publish("mid", "1.0.0", nil)
	c, err = w.open()
	if err != nil || c.NotModified() != 0 || len(c.Entries) != 2 || c.Snapshot == first.Snapshot {
		t.Fatalf("after a publish: %v, %d 304s, %d entries, snapshot %d (was %d)", err, c.NotModified(), len(c.Entries), c.Snapshot, first.Snapshot)
	}

	// Nothing published for two days: the server still answers 304 for
	// the cached timestamp, which expired meanwhile.
	opt := w.options(w.srv.URL)
	opt.Now = func() time.Time { return time.Now().Add(48 * time.Hour) }
	_, err = Open(opt)
	refreshCheck(t, err, "freeze")
}

// A download whose space was reserved (a size the maintainers signed) and
// that was cut short keeps only the bytes received as its length, so the
// next attempt asks for the rest and no more.
func TestReservedDownloadResumesWhereItStopped(t *testing.T) {
	whole := make([]byte, 3<<20)
	for i := range whole {
		whole[i] = byte(i * 7)
	}
	sum := sha256.Sum256(whole)
	h := hex.EncodeToString(sum[:])
	const cut = 1 << 20
	var ranges []string
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		ranges = append(ranges, r.Header.Get("Range"))
		if len(ranges) == 1 {
			rw.Header().Set("Content-Length", strconv.Itoa(len(whole)))
			rw.Write(whole[:cut])
			return // the connection ends short of Content-Length
		}
		http.ServeContent(rw, r, h, time.Time{}, bytes.NewReader(whole))
	}))
	defer srv.Close()
	c := &Client{opt: Options{URL: srv.URL, CacheDir: t.TempDir()}, fetch: &fetcher{http: newHTTPClient(0)}}
	if _, err := c.blob(h, int64(len(whole)), nil, true); err == nil {
		t.Fatal("a download cut short succeeded")
	}
	st, err := os.Stat(filepath.Join(c.opt.CacheDir, "blobs", "partial", h))
	if err != nil || st.Size() != cut {
		t.Fatalf("partial download: %v, size %d; want %d bytes, the ones received", err, st.Size(), cut)
	}
	before := c.Bytes()
	p, err := c.blob(h, int64(len(whole)), nil, true)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, whole) {
		t.Fatal("resumed blob differs")
	}
	if n := c.Bytes() - before; n != int64(len(whole)-cut) || ranges[1] != fmt.Sprintf("bytes=%d-", cut) {
		t.Fatalf("resume fetched %d bytes with Range %q; want %d from byte %d", n, ranges[1], len(whole)-cut, cut)
	}
}
