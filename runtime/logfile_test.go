package runtime

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/blvm/blvm-sandbox/internal/logstamp"
)

func TestLogFileStampsEveryLine(t *testing.T) {
	p := filepath.Join(t.TempDir(), "m.log")
	l, err := openLogFile(p, 1<<20, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, chunk := range []string{"one\ntw", "o\n", "three\nfour", ""} {
		l.Write([]byte(chunk))
	}
	l.Close()
	b, _ := os.ReadFile(p)
	lines := strings.SplitAfter(string(b), "\n")
	want := []string{"one\n", "two\n", "three\n", "four"}
	if len(lines) != len(want) {
		t.Fatalf("log = %q", b)
	}
	for i, line := range lines {
		ts, ok := logstamp.Parse([]byte(line))
		if !ok || line[logstamp.Len:] != want[i] || time.Since(ts) > time.Minute {
			t.Errorf("line %d = %q: want a stamp and %q", i, line, want[i])
		}
	}
}
