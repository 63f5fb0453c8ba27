package termesc

import (
	"bytes"
	"io"
	"sync"
	"unicode/utf8"
)

// Writer escapes a stream as Text does (or, from NewJSONWriter, as JSON
// allows). A UTF-8 sequence split across two writes is held back until its
// end arrives, so it is neither escaped as invalid nor passed on broken;
// Flush writes what is held back.
type Writer struct {
	w       io.Writer
	mode    mode
	pending []byte // at most utf8.UTFMax-1 bytes of an incomplete sequence
}

// NewWriter returns a Writer that escapes everything written to w except
// newlines and tabs.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w, mode: modeText} }

// NewJSONWriter returns a Writer for JSON text, such as an encoder's output:
// it rewrites the characters JSON encoders let through (DEL, C1, bidi
// controls) as \uNNNN escapes, which leaves the JSON's meaning unchanged.
func NewJSONWriter(w io.Writer) *Writer { return &Writer{w: w, mode: modeJSON} }

// Write escapes p and writes it; it reports len(p) on success.
func (e *Writer) Write(p []byte) (int, error) {
	src := p
	if len(e.pending) > 0 {
		src = append(e.pending, p...)
	}
	out, n := appendEscaped(make([]byte, 0, len(src)+16), src, e.mode, true)
	e.pending = append(e.pending[:0:0], src[n:]...)
	if _, err := e.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush writes a held-back incomplete sequence, escaped as invalid bytes.
func (e *Writer) Flush() error {
	if len(e.pending) == 0 {
		return nil
	}
	out, _ := appendEscaped(nil, e.pending, e.mode, false)
	e.pending = nil
	_, err := e.w.Write(out)
	return err
}

// MaxLine is the longest line a LineWriter holds back; a longer one is
// written in pieces, each on a line of its own with the prefix.
const MaxLine = 4096

// LineWriter frames another party's output: every line gets the prefix and
// is escaped, and the underlying writer only ever receives whole lines, in
// one Write each. Others writing whole lines to the same writer (a
// runtime's log) therefore never have a line split, continued or forged:
// every line that does not start with the prefix is theirs. Safe for
// concurrent use.
type LineWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
	line   []byte // the current line so far, raw
}

// NewLineWriter returns a LineWriter that writes to w with prefix, which is
// written as given (the caller makes it printable).
func NewLineWriter(w io.Writer, prefix string) *LineWriter {
	return &LineWriter{w: w, prefix: prefix}
}

// Write frames every complete line in p; a partial line waits for its end,
// for more than MaxLine bytes, or for Close.
func (l *LineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.line = append(l.line, p...)
	var out []byte
	for {
		cut := bytes.IndexByte(l.line, '\n')
		skip := 1
		if cut < 0 {
			if len(l.line) <= MaxLine {
				break
			}
			// Cut at a rune boundary so a character is not escaped as two
			// invalid halves.
			cut, skip = MaxLine, 0
			for i := 0; i < utf8.UTFMax-1 && !utf8.RuneStart(l.line[cut]); i++ {
				cut--
			}
		}
		out = l.frame(out, l.line[:cut])
		l.line = l.line[cut+skip:]
	}
	l.line = append(l.line[:0:0], l.line...) // do not pin the caller's buffers
	if len(out) == 0 {
		return len(p), nil
	}
	if _, err := l.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close writes a final partial line, ended with a newline. The LineWriter
// stays usable.
func (l *LineWriter) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.line) == 0 {
		return nil
	}
	out := l.frame(nil, l.line)
	l.line = nil
	_, err := l.w.Write(out)
	return err
}

func (l *LineWriter) frame(dst, line []byte) []byte {
	dst = append(dst, l.prefix...)
	dst, _ = appendEscaped(dst, line, modeText, false)
	return append(dst, '\n')
}
