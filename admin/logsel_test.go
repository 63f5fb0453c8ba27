package admin

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/blvm/blvm-sandbox/internal/logstamp"
)

// stamped is a log of lines stamped one second apart from t0.
func stamped(t0 time.Time, lines ...string) string {
	var b []byte
	for i, l := range lines {
		b = logstamp.Append(b, t0.Add(time.Duration(i)*time.Second))
		b = append(b, l...)
	}
	return string(b)
}

func TestLogStart(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	log := stamped(t0, "a\n", "b\n", "c\n", "d")
	unstamped := "cut off by rotation\n" + log
	for _, c := range []struct {
		name string
		log  string
		opts LogOptions
		want string // what follows the start, stamps removed
	}{
		{"all", log, LogOptions{}, "a\nb\nc\nd"},
		{"tail 2", log, LogOptions{Tail: 2, TailSet: true}, "c\nd"},
		{"tail 0", log, LogOptions{Tail: 0, TailSet: true}, ""},
		{"tail more than there is", log, LogOptions{Tail: 10, TailSet: true}, "a\nb\nc\nd"},
		{"tail 1 after a newline", stamped(t0, "a\n", "b\n"), LogOptions{Tail: 1, TailSet: true}, "b\n"},
		{"since", log, LogOptions{Since: t0.Add(1500 * time.Millisecond)}, "c\nd"},
		{"since exactly a stamp", log, LogOptions{Since: t0.Add(time.Second)}, "b\nc\nd"},
		{"since after the end", log, LogOptions{Since: t0.Add(time.Hour)}, ""},
		{"since and tail", log, LogOptions{Since: t0, Tail: 1, TailSet: true}, "d"},
		{"tail wins over an earlier since", log, LogOptions{Since: t0.Add(2 * time.Second), Tail: 3, TailSet: true}, "c\nd"},
		{"an unstamped line is older than any since", unstamped, LogOptions{Since: t0.Add(-time.Hour)}, "a\nb\nc\nd"},
		{"unstamped lines print without since", unstamped, LogOptions{}, "cut off by rotation\na\nb\nc\nd"},
		{"a long line", stamped(t0, strings.Repeat("x", 200<<10)+"\n", "y\n"), LogOptions{Since: t0.Add(time.Second)}, "y\n"},
		{"since selects a long line", stamped(t0, "a\n", strings.Repeat("x", 200<<10)+"\n", "y\n"), LogOptions{Since: t0.Add(time.Second)}, strings.Repeat("x", 200<<10) + "\ny\n"},
	} {
		r := strings.NewReader(c.log)
		start, err := logStart(r, int64(len(c.log)), c.opts)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var out bytes.Buffer
		st := &stampStripper{w: &out}
		st.Write([]byte(c.log[start:]))
		st.Flush()
		if out.String() != c.want {
			t.Errorf("%s: got %.80q, want %.80q", c.name, out.String(), c.want)
		}
	}
}

// The stripper sees a stream in any chunks: a stamp split across writes is
// still removed, and module text that looks like a stamp mid-line stays.
func TestStampStripperChunks(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	fake := string(logstamp.Append(nil, t0))
	log := stamped(t0, "one\n", "two "+fake+"x\n", "\n", "s\n", "partial")
	want := "one\ntwo " + fake + "x\n\ns\npartial"
	for size := 1; size <= len(log); size++ {
		var out bytes.Buffer
		st := &stampStripper{w: &out}
		for i := 0; i < len(log); i += size {
			st.Write([]byte(log[i:min(i+size, len(log))]))
		}
		st.Flush()
		if out.String() != want {
			t.Fatalf("chunks of %d: %q, want %q", size, out.String(), want)
		}
	}
}
