package termesc

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// attacks holds one input per class of control a terminal acts on.
var attacks = []struct {
	name, in, line, text string
}{
	{"plain", "stratum-v2 1.2.0 ok", "stratum-v2 1.2.0 ok", "stratum-v2 1.2.0 ok"},
	{"unicode kept", "café ✓ 区块", "café ✓ 区块", "café ✓ 区块"},
	{"backslash kept", `C:\path\x1b`, `C:\path\x1b`, `C:\path\x1b`},
	{"newline and tab", "a\nb\tc", `a\nb\tc`, "a\nb\tc"},
	{"CR overwrite", "FAIL\rok  ", `FAIL\rok  `, `FAIL\rok  `},
	{"erase line", "FAIL\x1b[2K\rok", `FAIL\x1b[2K\rok`, `FAIL\x1b[2K\rok`},
	{"SGR conceal", "\x1b[8mhidden\x1b[0m", `\x1b[8mhidden\x1b[0m`, `\x1b[8mhidden\x1b[0m`},
	{"OSC title", "\x1b]0;pwned\x07", `\x1b]0;pwned\x07`, `\x1b]0;pwned\x07`},
	{"OSC 52 clipboard", "\x1b]52;c;cm0gLXJm\x1b\\", `\x1b]52;c;cm0gLXJm\x1b\`, `\x1b]52;c;cm0gLXJm\x1b\`},
	{"backspace, bell, NUL, VT, FF", "a\b\a\x00\v\f", `a\x08\x07\x00\x0b\x0c`, `a\x08\x07\x00\x0b\x0c`},
	{"DEL", "x\x7fy", `x\x7fy`, `x\x7fy`},
	{"C1 CSI as UTF-8", "\u009b2J", `\u009b2J`, `\u009b2J`},
	{"C1 OSC and ST", "\u009d0;t\u009c", `\u009d0;t\u009c`, `\u009d0;t\u009c`},
	{"raw C1 byte", "\x9b2J", `\x9b2J`, `\x9b2J`},
	{"invalid UTF-8", "a\xff\xc3(b", `a\xff\xc3(b`, `a\xff\xc3(b`},
	{"truncated sequence at end", "ok\xe2\x82", `ok\xe2\x82`, `ok\xe2\x82`},
	{"bidi override", "abc\u202edcba\u202c", `abc\u202edcba\u202c`, `abc\u202edcba\u202c`},
	{"bidi isolates and marks", "\u2066x\u2069\u200f\u061c", `\u2066x\u2069\u200f\u061c`, `\u2066x\u2069\u200f\u061c`},
	{"line separators", "a\u2028b\u2029", `a\u2028b\u2029`, `a\u2028b\u2029`},
}

// hostile reports the first thing in b a terminal could act on; it is
// written apart from the package's own tables so that it checks them.
func hostile(b []byte, allowLayout bool) string {
	if !utf8.Valid(b) {
		return "invalid UTF-8"
	}
	for _, r := range string(b) {
		switch {
		case allowLayout && (r == '\n' || r == '\t'):
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f):
			return "control " + string(r)
		case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r == 0x200e, r == 0x200f, r == 0x061c:
			return "bidi control"
		}
	}
	return ""
}

func TestString(t *testing.T) {
	for _, tt := range attacks {
		got := String(tt.in)
		if got != tt.line {
			t.Errorf("%s: String(%q) = %q, want %q", tt.name, tt.in, got, tt.line)
		}
		if h := hostile([]byte(got), false); h != "" {
			t.Errorf("%s: String output holds %s: %q", tt.name, h, got)
		}
	}
}

func TestText(t *testing.T) {
	for _, tt := range attacks {
		got := string(Text([]byte(tt.in)))
		if got != tt.text {
			t.Errorf("%s: Text(%q) = %q, want %q", tt.name, tt.in, got, tt.text)
		}
		if h := hostile([]byte(got), true); h != "" {
			t.Errorf("%s: Text output holds %s: %q", tt.name, h, got)
		}
	}
}

func TestEveryByteAndControlRune(t *testing.T) {
	var in []byte
	for b := 0; b < 256; b++ {
		in = append(in, byte(b))
	}
	for r := rune(0x80); r <= 0x9f; r++ {
		in = utf8.AppendRune(in, r)
	}
	if h := hostile([]byte(String(string(in))), false); h != "" {
		t.Errorf("String of every byte holds %s", h)
	}
	if h := hostile(Text(in), true); h != "" {
		t.Errorf("Text of every byte holds %s", h)
	}
}

// TestWriterSplitsAnywhere writes each attack one byte at a time and in two
// halves at every cut: the output is the same as Text's.
func TestWriterSplitsAnywhere(t *testing.T) {
	for _, tt := range attacks {
		for cut := 0; cut <= len(tt.in); cut++ {
			var b bytes.Buffer
			w := NewWriter(&b)
			if n, err := w.Write([]byte(tt.in[:cut])); err != nil || n != cut {
				t.Fatalf("Write = %d, %v", n, err)
			}
			w.Write([]byte(tt.in[cut:]))
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			if b.String() != tt.text {
				t.Errorf("%s cut at %d: %q, want %q", tt.name, cut, b.String(), tt.text)
			}
		}
	}
	// A split character is held back until its end, not escaped.
	var b bytes.Buffer
	w := NewWriter(&b)
	w.Write([]byte("\xe2\x9c"))
	if b.Len() != 0 {
		t.Errorf("half a character was written: %q", b.String())
	}
	w.Write([]byte("\x93\n"))
	if b.String() != "✓\n" {
		t.Errorf("split ✓ = %q", b.String())
	}
}

func TestJSONWriterKeepsJSONValidAndMeaning(t *testing.T) {
	for _, tt := range attacks {
		var raw, esc bytes.Buffer
		v := map[string]string{"error": tt.in}
		json.NewEncoder(&raw).Encode(v)
		w := NewJSONWriter(&esc)
		if err := json.NewEncoder(w).Encode(v); err != nil {
			t.Fatal(err)
		}
		w.Flush()
		if h := hostile(bytes.TrimSuffix(esc.Bytes(), []byte("\n")), false); h != "" {
			t.Errorf("%s: JSON output holds %s: %q", tt.name, h, esc.String())
		}
		var back, want map[string]string
		if err := json.Unmarshal(esc.Bytes(), &back); err != nil {
			t.Fatalf("%s: escaped JSON is not JSON: %v: %s", tt.name, err, esc.String())
		}
		json.Unmarshal(raw.Bytes(), &want)
		if back["error"] != want["error"] {
			t.Errorf("%s: JSON meaning changed: %q, want %q", tt.name, back["error"], want["error"])
		}
	}
	// Bytes no encoder writes still come out as valid JSON.
	var b bytes.Buffer
	w := NewJSONWriter(&b)
	w.Write([]byte("\"a\xff\x7f\""))
	if !json.Valid(b.Bytes()) || b.String() != `"a\ufffd\u007f"` {
		t.Errorf("JSON of invalid bytes = %q", b.String())
	}
}

func TestLineWriterFramesEveryLine(t *testing.T) {
	var b bytes.Buffer
	var writes []string
	l := NewLineWriter(writerFunc(func(p []byte) (int, error) {
		writes = append(writes, string(p))
		return b.Write(p)
	}), "mod| ")
	for _, chunk := range []string{
		"first li", "ne\nsecond\nthi",
		"rd\r\x1b[2Ktime=now level=ERROR msg=forged\n\n",
		"\x1b]0;title\x07 no newline at the end",
	} {
		l.Write([]byte(chunk))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	want := "mod| first line\nmod| second\nmod| third\\r\\x1b[2Ktime=now level=ERROR msg=forged\nmod| \n" +
		"mod| \\x1b]0;title\\x07 no newline at the end\n"
	if b.String() != want {
		t.Errorf("framed =\n%q\nwant\n%q", b.String(), want)
	}
	// The underlying writer only ever sees whole, prefixed lines.
	for _, w := range writes {
		if !strings.HasSuffix(w, "\n") {
			t.Errorf("a write that is not whole lines: %q", w)
		}
		for _, line := range strings.SplitAfter(strings.TrimSuffix(w, "\n"), "\n") {
			if !strings.HasPrefix(line, "mod| ") {
				t.Errorf("a line without the prefix: %q", line)
			}
		}
	}
	if h := hostile(b.Bytes(), true); h != "" {
		t.Errorf("framed output holds %s", h)
	}
}

func TestLineWriterBoundsALine(t *testing.T) {
	var b bytes.Buffer
	l := NewLineWriter(&b, "m| ")
	long := strings.Repeat("é", MaxLine) // 2 bytes each: cuts fall mid-character half the time
	l.Write([]byte(long))
	if b.Len() == 0 {
		t.Fatal("a line longer than MaxLine was held back whole")
	}
	l.Close()
	got := b.String()
	if strings.Contains(got, `\x`) {
		t.Errorf("a cut split a character into escaped halves")
	}
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	if len(lines) < 2 {
		t.Fatalf("got %d lines, want the long line in pieces", len(lines))
	}
	var joined strings.Builder
	for _, line := range lines {
		if !strings.HasPrefix(line, "m| ") || len(line) > MaxLine+len("m| ") {
			t.Errorf("piece of %d bytes: %.20q", len(line), line)
		}
		joined.WriteString(strings.TrimPrefix(line, "m| "))
	}
	if joined.String() != long {
		t.Errorf("the pieces do not add up to the line")
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// FuzzEscape: whatever the input, String and Text leave nothing a terminal
// acts on, and the Writer agrees with Text however the input is split.
func FuzzEscape(f *testing.F) {
	for _, tt := range attacks {
		f.Add([]byte(tt.in), uint8(3))
	}
	f.Fuzz(func(t *testing.T, in []byte, cut uint8) {
		if h := hostile([]byte(String(string(in))), false); h != "" {
			t.Fatalf("String(%q) holds %s", in, h)
		}
		want := Text(in)
		if h := hostile(want, true); h != "" {
			t.Fatalf("Text(%q) holds %s", in, h)
		}
		var b bytes.Buffer
		w := NewWriter(&b)
		c := int(cut) % (len(in) + 1)
		w.Write(in[:c])
		w.Write(in[c:])
		w.Flush()
		if !bytes.Equal(b.Bytes(), want) {
			t.Fatalf("Writer split at %d = %q, Text = %q", c, b.Bytes(), want)
		}
	})
}
