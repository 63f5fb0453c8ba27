package runtime

import (
	"bytes"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/blvm/blvm-sandbox/internal/logstamp"
)

// logFile is a module's captured stdout and stderr: appended to
// logs/<name>.log, rotated to .1 … .keep when it passes max bytes, so a
// chatty or hostile module cannot fill the disk. Every line starts with
// the time its first byte arrived (internal/logstamp); a line the module
// had not ended when the log rotated continues unstamped in the new file.
type logFile struct {
	mu   sync.Mutex
	path string
	max  int64
	keep int
	f    *os.File
	size int64
	// midLine: the last byte written was not a newline.
	midLine bool
	buf     []byte
}

func openLogFile(path string, max int64, keep int) (*logFile, error) {
	l := &logFile{path: path, max: max, keep: keep}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *logFile) open() error {
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("log %s: %w", l.path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("log %s: %w", l.path, err)
	}
	l.f, l.size = f, st.Size()
	return nil
}

// Write never fails the writer (the module's pipe): a log that cannot be
// written is dropped rather than blocking the module.
func (l *logFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return len(p), nil
	}
	out := l.stamp(p, time.Now())
	if l.size+int64(len(out)) > l.max {
		l.rotate()
		if l.f == nil {
			return len(p), nil
		}
	}
	n, _ := l.f.Write(out)
	l.size += int64(n)
	return len(p), nil
}

// stamp returns p with the time in front of every line that starts in it.
func (l *logFile) stamp(p []byte, now time.Time) []byte {
	if len(p) == 0 {
		return p
	}
	ts := logstamp.Append(make([]byte, 0, logstamp.Len), now)
	out := l.buf[:0]
	for len(p) > 0 {
		if !l.midLine {
			out = append(out, ts...)
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			out = append(out, p...)
			l.midLine = true
			break
		}
		out = append(out, p[:i+1]...)
		p = p[i+1:]
		l.midLine = false
	}
	if cap(out) <= 64<<10 {
		l.buf = out // reused by the next write; big chunks are not kept
	}
	return out
}

// rotate shifts name.log.(k-1) to name.log.k, … name.log to name.log.1.
func (l *logFile) rotate() {
	l.f.Close()
	l.f = nil
	for k := l.keep; k > 1; k-- {
		os.Rename(fmt.Sprintf("%s.%d", l.path, k-1), fmt.Sprintf("%s.%d", l.path, k))
	}
	if l.keep > 0 {
		os.Rename(l.path, l.path+".1")
	} else {
		os.Remove(l.path)
	}
	_ = l.open()
}

func (l *logFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
