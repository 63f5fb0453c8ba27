package admin

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"syscall"
	"time"
)

// openLog opens a module's log for reading. O_NOFOLLOW: the logs dir is
// the daemon's, and a symlink there is not a log.
func openLog(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
}

// openCurrent opens the log as it is now for copying: nil for a log not
// yet written, and the size to copy, so that a chatty module cannot keep
// the copy going.
func openCurrent(path string) (*os.File, int64, error) {
	f, err := openLog(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, st.Size(), nil
}

// followLog writes f (the log at path, opened by openCurrent; nil if it
// did not exist yet) from its offset and then whatever is appended,
// checking every poll, until ctx ends (it then returns nil). When the
// writer rotates the log (renames it to .1 and opens a new one) the rest
// of the old file is written before the new one; a truncated log is read
// again from its start.
func followLog(ctx context.Context, f *os.File, path string, w io.Writer, flush func() error, poll time.Duration) error {
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	buf := make([]byte, 32<<10)
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		if f == nil {
			nf, err := openLog(path)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			f = nf // nil until the log exists
		}
		if f != nil {
			if err := drain(ctx, f, w, flush, buf); err != nil {
				return err
			}
			reopen, err := rotated(f, path)
			if err != nil {
				return err
			}
			if reopen {
				// Writes that landed in the old file after the drain above
				// and before the rename.
				if err := drain(ctx, f, w, flush, buf); err != nil {
					return err
				}
				f.Close()
				f = nil
				continue
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// drain writes f from its offset to its end.
func drain(ctx context.Context, f *os.File, w io.Writer, flush func() error, buf []byte) error {
	wrote := false
	for ctx.Err() == nil {
		n, err := f.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			wrote = true
		}
		if err == io.EOF || (err == nil && n == 0) {
			break
		}
		if err != nil {
			return err
		}
	}
	if wrote {
		return flush()
	}
	return nil
}

// rotated reports whether path now names another file than f (f was
// rotated away; a missing path waits for the writer to create it). A file
// that shrank under f was truncated: f is rewound to its start.
func rotated(f *os.File, path string) (bool, error) {
	cur, err := f.Stat()
	if err != nil {
		return false, err
	}
	now, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !os.SameFile(cur, now) {
		return true, nil
	}
	off, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return false, err
	}
	if cur.Size() < off {
		_, err = f.Seek(0, io.SeekStart)
	}
	return false, err
}
