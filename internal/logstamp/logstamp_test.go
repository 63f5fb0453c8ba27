package logstamp

import (
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	at := time.Date(2026, 12, 2, 0, 1, 2, 3000, time.FixedZone("X", 3600))
	b := Append(nil, at)
	if len(b) != Len || string(b) != "2026-12-01T23:01:02.000003000Z " {
		t.Fatalf("stamp = %q", b)
	}
	got, ok := Parse(append(b, "hello\n"...))
	if !ok || !got.Equal(at) {
		t.Errorf("Parse = %v %v, want %v", got, ok, at)
	}
	for _, bad := range []string{"", "hello world\n", "2026-12-01T23:01:02.000003000Zx", "2026-12-01T23:01:02.000003Z hello"} {
		if _, ok := Parse([]byte(bad)); ok {
			t.Errorf("Parse(%q) found a stamp", bad)
		}
	}
}
