package client

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// fetcher reads registry files over http(s) or from a file:// mirror,
// never more than the length the caller allows: go-tuf passes each role's
// bound, blobs pass their signed size. It implements go-tuf's Fetcher.
type fetcher struct {
	http        *http.Client
	cacheDir    string // where the timestamp's validator and cached copy are; "" for none
	requests    atomic.Int64
	bytes       atomic.Int64
	notModified atomic.Int64 // 304s answered from the cache
}

// DefaultTimeout bounds one request from dial to the last byte.
const DefaultTimeout = 30 * time.Second

func newHTTPClient(timeout time.Duration) *http.Client {
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			ResponseHeaderTimeout: timeout,
			MaxIdleConnsPerHost:   4,
			IdleConnTimeout:       30 * time.Second,
		},
	}
}

func (f *fetcher) DownloadFile(u string, maxLength int64, _ time.Duration) ([]byte, error) {
	if pu, err := url.Parse(u); err == nil && pu.Scheme != "file" && isTimestampURL(u) {
		return f.downloadTimestamp(u, maxLength)
	}
	rc, _, err := f.open(u, maxLength, 0)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return readBounded(rc, u, maxLength)
}

// downloadTimestamp is a conditional GET: a 304 returns the cached bytes.
func (f *fetcher) downloadTimestamp(u string, maxLength int64) ([]byte, error) {
	f.requests.Add(1)
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	cached := f.conditional(req)
	resp, err := f.http.Do(req)
	if err != nil {
		return nil, &metadata.ErrDownload{Msg: err.Error()}
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotModified && cached != nil && int64(len(cached)) <= maxLength:
		f.notModified.Add(1)
		return cached, nil
	case resp.StatusCode != http.StatusOK:
		return nil, &metadata.ErrDownloadHTTP{StatusCode: resp.StatusCode, URL: u}
	case resp.ContentLength > maxLength:
		return nil, &metadata.ErrDownloadLengthMismatch{Msg: fmt.Sprintf("%s: Content-Length %d, more than the %d bytes allowed", u, resp.ContentLength, maxLength)}
	}
	data, err := readBounded(countingReader{resp.Body, &f.bytes}, u, maxLength)
	if err == nil {
		f.remember(u, resp.Header, data)
	}
	return data, err
}

func readBounded(r io.Reader, u string, maxLength int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxLength+1))
	if err != nil {
		return nil, &metadata.ErrDownload{Msg: fmt.Sprintf("%s: %v", u, err)}
	}
	if int64(len(data)) > maxLength {
		return nil, &metadata.ErrDownloadLengthMismatch{Msg: fmt.Sprintf("%s: more than the %d bytes allowed", u, maxLength)}
	}
	return data, nil
}

// open starts reading u from offset; partial reports whether the server
// honoured the offset (false: the body starts at byte 0).
func (f *fetcher) open(u string, maxLength, offset int64) (io.ReadCloser, bool, error) {
	f.requests.Add(1)
	pu, err := url.Parse(u)
	if err != nil {
		return nil, false, err
	}
	if pu.Scheme == "file" {
		fh, err := os.Open(pu.Path)
		if errors.Is(err, os.ErrNotExist) {
			return nil, false, &metadata.ErrDownloadHTTP{StatusCode: http.StatusNotFound, URL: u}
		}
		if err != nil {
			return nil, false, &metadata.ErrDownload{Msg: err.Error()}
		}
		st, err := fh.Stat()
		if err == nil && st.Size() > maxLength {
			fh.Close()
			return nil, false, &metadata.ErrDownloadLengthMismatch{Msg: fmt.Sprintf("%s: %d bytes, more than the %d allowed", u, st.Size(), maxLength)}
		}
		if offset > 0 {
			if _, err := fh.Seek(offset, io.SeekStart); err != nil {
				fh.Close()
				return nil, false, err
			}
		}
		return countingReader{fh, &f.bytes}, offset > 0, nil
	}
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return nil, false, err
	}
	if offset > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
	}
	resp, err := f.http.Do(req)
	if err != nil {
		return nil, false, &metadata.ErrDownload{Msg: err.Error()}
	}
	switch {
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode == http.StatusPartialContent && offset > 0:
	default:
		resp.Body.Close()
		return nil, false, &metadata.ErrDownloadHTTP{StatusCode: resp.StatusCode, URL: u}
	}
	partial := resp.StatusCode == http.StatusPartialContent
	if resp.ContentLength > maxLength {
		resp.Body.Close()
		return nil, false, &metadata.ErrDownloadLengthMismatch{Msg: fmt.Sprintf("%s: Content-Length %d, more than the %d bytes allowed", u, resp.ContentLength, maxLength)}
	}
	return countingReader{resp.Body, &f.bytes}, partial, nil
}

type countingReader struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func joinURL(base string, parts ...string) string {
	return strings.TrimRight(base, "/") + "/" + strings.Join(parts, "/")
}
