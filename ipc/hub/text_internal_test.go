package hub

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/blvm/blvm-sandbox/manifest"
)

func TestLogText(t *testing.T) {
	long := strings.Repeat("a", 300)
	tests := []struct{ in, want string }{
		{"plain text, fine", "plain text, fine"},
		{"", ""},
		{"esc\x1b[31mred", `esc\x1b[31mred`},
		{"new\nline\r\x00\x7f", `new\x0aline\x0d\x00\x7f`},
		{"c1 \u0085 and \u009b", `c1 \u0085 and \u009b`},
		{"bidi \u202e override", `bidi \u202e override`},
		{"line\u2028separator", `line\u2028separator`},
		{"bad \xff\xc3 utf8", `bad \xff\xc3 utf8`},
		{`back\slash`, `back\\slash`},
		{"ünïcödé ok", "ünïcödé ok"},
		{"tag \U000e0041", `tag \U000e0041`},
		{long, strings.Repeat("a", 256) + "...(+44 bytes)"},
		// A rune is never split by the cut.
		{strings.Repeat("a", 255) + "é" + "b", strings.Repeat("a", 255) + "...(+3 bytes)"},
	}
	for _, tt := range tests {
		got := logText(tt.in, maxLoggedText)
		if got != tt.want {
			t.Errorf("logText(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if !utf8.ValidString(got) {
			t.Errorf("logText(%q) is not valid UTF-8", tt.in)
		}
		for _, r := range got {
			if r != ' ' && !unicode.IsPrint(r) {
				t.Errorf("logText(%q) keeps unprintable %U", tt.in, r)
			}
		}
	}
	// Every byte value, alone: the output is printable and unambiguous.
	for b := 0; b < 256; b++ {
		got := logText(string([]byte{byte(b)}), maxLoggedText)
		for _, r := range got {
			if r > 0x7e || r < 0x20 {
				t.Errorf("byte %#x -> %q", b, got)
			}
		}
	}
}

func TestValidModuleName(t *testing.T) {
	for s, want := range map[string]bool{
		"stratum-v2": true, "a": true, "0x": true, strings.Repeat("a", 63): true,
		"": false, "-a": false, "A": false, "a_b": false, "a.b": false, "a b": false,
		strings.Repeat("a", 64): false, "a\x00": false, "é": false, strings.Repeat("x", 500000): false,
	} {
		if got := manifest.ValidModuleName(s); got != want {
			t.Errorf("manifest.ValidModuleName(%.20q) = %v, want %v", s, got, want)
		}
	}
}

func TestValidNameAndText(t *testing.T) {
	names := map[string]bool{
		"recent": true, "get-job": true, "Ünïcode": true, "a/b:c": true,
		"": false, "two words": false, "tab\there": false, "esc\x1b": false, "c1\u009b": false,
		"bidi\u202e": false, "nbsp\u00a0": false, "bad\xff": false, strings.Repeat("a", maxNameLen+1): false,
	}
	for s, want := range names {
		if got := validName(s); got != want {
			t.Errorf("validName(%q) = %v, want %v", s, got, want)
		}
	}
	texts := map[string]bool{
		"": true, "Lists blocks.\n\tUsage: recent [n]": true, "ünïcode": true,
		"esc\x1b[2J": false, "cr\r": false, "c1\u0085": false, "bidi\u202e": false, "bad\xc3": false,
		"nul\x00": false, strings.Repeat("a", maxTextLen+1): false,
	}
	for s, want := range texts {
		if got := validText(s, maxTextLen); got != want {
			t.Errorf("validText(%.40q) = %v, want %v", s, got, want)
		}
	}
}

// TestLineCostCoversWhatHandlersWrite: the budget charges at least the
// bytes the text and JSON handlers write for a line, for hostile strings.
func TestLineCostCoversWhatHandlersWrite(t *testing.T) {
	inputs := []string{"", "x", strings.Repeat(`"\<>&`, 60), "\x1b\x00\xff\u0085", strings.Repeat("é", 200), strings.Repeat("a b=c ", 50)}
	for _, in := range inputs {
		msg := logText(in, maxLogMessage)
		attrs := []slog.Attr{str("method", in), slog.Int("n", -1234567890), {Key: "fields", Value: slog.GroupValue(str(logText(in, maxLogFieldKey), in), str("k", in))}}
		cost := lineCost(msg, attrs)
		for _, mk := range []func(*bytes.Buffer) slog.Handler{
			func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
			func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
		} {
			var buf bytes.Buffer
			l := slog.New(mk(&buf)).With("module", "a-module-name-of-sixty-three-characters-xxxxxxxxxxxxxxxxxxxxxxxx")
			l.LogAttrs(t.Context(), slog.LevelError, msg, attrs...)
			if buf.Len() > cost {
				t.Errorf("%.30q: handler wrote %d bytes, charged %d: %s", in, buf.Len(), cost, buf.String())
			}
		}
	}
}
