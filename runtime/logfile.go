package runtime

import (
	"fmt"
	"os"
	"sync"
)

// logFile is a module's captured stdout and stderr: appended to
// logs/<name>.log, rotated to .1 … .keep when it passes max bytes, so a
// chatty or hostile module cannot fill the disk.
type logFile struct {
	mu   sync.Mutex
	path string
	max  int64
	keep int
	f    *os.File
	size int64
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
	if l.size+int64(len(p)) > l.max {
		l.rotate()
		if l.f == nil {
			return len(p), nil
		}
	}
	n, _ := l.f.Write(p)
	l.size += int64(n)
	return len(p), nil
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
