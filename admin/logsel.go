package admin

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/blvm/blvm-sandbox/internal/logstamp"
)

// LogOptions choose what of a module's log `logs` prints. The zero value
// prints the whole current log without the runtime's timestamps.
type LogOptions struct {
	// Follow keeps printing what is appended.
	Follow bool
	// Tail prints only the last Tail lines of the current log; < 0 (or
	// Tail unset with TailSet false) prints every line.
	Tail    int
	TailSet bool
	// Since skips the lines stamped before it.
	Since time.Time
	// Timestamps keeps the time the runtime stamped on each line
	// (internal/logstamp, UTC).
	Timestamps bool
}

// query is the options as the logs route's query string.
func (o LogOptions) query() string {
	q := url.Values{}
	if o.Follow {
		q.Set("follow", "1")
	}
	if o.TailSet && o.Tail >= 0 {
		q.Set("tail", strconv.Itoa(o.Tail))
	}
	if !o.Since.IsZero() {
		q.Set("since", o.Since.UTC().Format(time.RFC3339Nano))
	}
	if o.Timestamps {
		q.Set("timestamps", "1")
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

func flag(q url.Values, key string) bool {
	v := q.Get(key)
	return v != "" && v != "0" && v != "false"
}

// parseLogOptions reads the logs route's query string.
func parseLogOptions(q url.Values) (LogOptions, error) {
	o := LogOptions{Follow: flag(q, "follow"), Timestamps: flag(q, "timestamps")}
	if v := q.Get("tail"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return o, fmt.Errorf("%w query: tail=%q: want a number of lines >= 0", ErrInvalid, v)
		}
		o.Tail, o.TailSet = n, true
	}
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return o, fmt.Errorf("%w query: since=%q: want an RFC 3339 time", ErrInvalid, v)
		}
		o.Since = t
	}
	return o, nil
}

// logStart is the offset in the first size bytes of f where what opts
// select begins. Lines are in the order they were stamped, so --since and
// --tail each select a suffix: the first line stamped at or after Since,
// and the last Tail lines. An unstamped line (the rest of a line cut by
// rotation) counts as older than any Since.
func logStart(f io.ReaderAt, size int64, opts LogOptions) (int64, error) {
	start := int64(0)
	if !opts.Since.IsZero() {
		start = size
		br := bufio.NewReaderSize(io.NewSectionReader(f, 0, size), 64<<10)
		var off int64
		for off < size {
			line, err := br.ReadSlice('\n')
			n := len(line)
			// Read before the rest of a long line reuses the buffer.
			t, stamped := logstamp.Parse(line)
			for err == bufio.ErrBufferFull {
				// A line longer than the buffer: skip the rest of it.
				var more []byte
				more, err = br.ReadSlice('\n')
				n += len(more)
			}
			if stamped && !t.Before(opts.Since) {
				start = off
				break
			}
			off += int64(n)
			if err == io.EOF {
				break
			}
			if err != nil {
				return 0, err
			}
		}
	}
	if opts.TailSet && opts.Tail >= 0 {
		t, err := tailStart(f, size, opts.Tail)
		if err != nil {
			return 0, err
		}
		start = max(start, t)
	}
	return start, nil
}

// tailStart is the offset of the n-th line from the end of the first size
// bytes of f; a last line without its newline counts as a line.
func tailStart(f io.ReaderAt, size int64, n int) (int64, error) {
	if n == 0 {
		return size, nil
	}
	buf := make([]byte, 32<<10)
	end := size
	seen := 0
	for pos := size; pos > 0; {
		chunk := min(int64(len(buf)), pos)
		pos -= chunk
		b := buf[:chunk]
		if _, err := f.ReadAt(b, pos); err != nil && err != io.EOF {
			return 0, err
		}
		for i := len(b) - 1; i >= 0; i-- {
			if b[i] != '\n' || pos+int64(i) == end-1 {
				continue // the newline that ends the last line starts nothing
			}
			seen++
			if seen == n {
				return pos + int64(i) + 1, nil
			}
		}
	}
	return 0, nil
}

// stampStripper removes the runtime's stamp from the start of each line
// written through it; other bytes pass unchanged. It holds back at most a
// stamp's length of a line's start until it can tell.
type stampStripper struct {
	w       io.Writer
	midLine bool
	held    []byte
}

func (s *stampStripper) Write(p []byte) (int, error) {
	out := make([]byte, 0, len(p))
	for rest := p; len(rest) > 0; {
		if s.midLine {
			i := bytes.IndexByte(rest, '\n')
			if i < 0 {
				out = append(out, rest...)
				break
			}
			out = append(out, rest[:i+1]...)
			rest = rest[i+1:]
			s.midLine = false
			continue
		}
		// At a line start: gather up to a stamp's length, or to a newline.
		need := logstamp.Len - len(s.held)
		take := min(need, len(rest))
		if i := bytes.IndexByte(rest[:take], '\n'); i >= 0 {
			take = i + 1
		}
		s.held = append(s.held, rest[:take]...)
		rest = rest[take:]
		if len(s.held) < logstamp.Len && s.held[len(s.held)-1] != '\n' {
			break // wait for more
		}
		if _, ok := logstamp.Parse(s.held); ok {
			s.held = s.held[logstamp.Len:]
		}
		out = append(out, s.held...)
		s.midLine = len(s.held) == 0 || s.held[len(s.held)-1] != '\n'
		s.held = s.held[:0]
	}
	if _, err := s.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush writes what is held back (a line shorter than a stamp that has
// not ended).
func (s *stampStripper) Flush() error {
	if len(s.held) == 0 {
		return nil
	}
	_, err := s.w.Write(s.held)
	s.held = s.held[:0]
	s.midLine = true
	return err
}

// serveLog answers GET /v1/modules/{name}/logs for the log at path.
func (s *Server) serveLog(w http.ResponseWriter, r *http.Request, name, path string) {
	opts, err := parseLogOptions(r.URL.Query())
	if err != nil {
		s.fail(w, r, fmt.Errorf("logs %s: %w", name, err))
		return
	}
	// Opened before the status is sent, so that a log that cannot be read
	// is an error, not an empty answer.
	f, size, err := openCurrent(path)
	if err == nil && f != nil {
		var start int64
		if start, err = logStart(f, size, opts); err == nil {
			_, err = f.Seek(start, io.SeekStart)
		}
		size -= start
	}
	if err != nil {
		if f != nil {
			f.Close()
		}
		s.fail(w, r, fmt.Errorf("logs %s: %w", name, err))
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	rc := http.NewResponseController(w)
	out := io.Writer(w)
	if !opts.Timestamps {
		st := &stampStripper{w: w}
		out = st
		defer st.Flush()
	}
	w.WriteHeader(http.StatusOK)
	if !opts.Follow {
		if f != nil {
			defer f.Close()
			// A write error means the client is gone.
			_, _ = io.Copy(out, io.LimitReader(f, size))
		}
		return
	}
	rc.Flush()
	if err := followLog(r.Context(), f, path, out, rc.Flush, s.poll); err != nil {
		// The status is sent; all that is left is to stop and say why.
		s.log.Warn("admin: logs follow ended", "module", name, "err", err)
	}
}

// LogsWith writes what opts select of the module's log to w. With Follow
// it keeps writing what is appended until ctx ends, and then returns nil.
func (c *Client) LogsWith(ctx context.Context, name string, opts LogOptions, w io.Writer) error {
	path, err := modulePath(name, "logs")
	if err != nil {
		return err
	}
	resp, err := c.do(ctx, http.MethodGet, path+opts.query(), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(w, resp.Body)
	if err != nil && opts.Follow && ctx.Err() != nil {
		return nil
	}
	if err != nil {
		return fmt.Errorf("admin %s: logs %s: %w", c.socket(), name, err)
	}
	return nil
}
