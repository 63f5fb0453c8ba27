package hub

import (
	"strconv"
	"unicode"
	"unicode/utf8"
)

// maxLoggedText is how many bytes of one module-supplied string reach a log
// line; the rest is summarised by its length.
const maxLoggedText = 256

// logText makes a module-supplied string safe to log or print: at most max
// bytes of it, with backslashes, control characters, C1 controls, other
// unprintable runes (bidi overrides, line separators) and invalid UTF-8
// escaped, so the line can neither be forged nor drive a terminal.
func logText(s string, max int) string {
	cut := len(s)
	if cut > max {
		cut = max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
	}
	clean := cut == len(s)
	for i := 0; i < len(s) && clean; i++ {
		b := s[i]
		clean = b >= 0x20 && b < 0x7f && b != '\\'
	}
	if clean {
		return s
	}
	out := make([]byte, 0, cut+16)
	for i := 0; i < cut; {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			out = append(out, `\x`...)
			out = appendHex(out, uint64(s[i]), 2)
		case r == '\\':
			out = append(out, `\\`...)
		case r < 0x20 || r == 0x7f:
			out = append(out, `\x`...)
			out = appendHex(out, uint64(r), 2)
		case r != ' ' && !unicode.IsPrint(r):
			if r > 0xffff {
				out = append(out, `\U`...)
				out = appendHex(out, uint64(r), 8)
			} else {
				out = append(out, `\u`...)
				out = appendHex(out, uint64(r), 4)
			}
		default:
			out = append(out, s[i:i+size]...)
		}
		i += size
	}
	if cut < len(s) {
		out = append(out, "...(+"...)
		out = strconv.AppendInt(out, int64(len(s)-cut), 10)
		out = append(out, " bytes)"...)
	}
	return string(out)
}

func appendHex(dst []byte, v uint64, digits int) []byte {
	const hex = "0123456789abcdef"
	for i := digits - 1; i >= 0; i-- {
		dst = append(dst, hex[(v>>(4*uint(i)))&0xf])
	}
	return dst
}

// validName is the rule for names a module registers (CLI commands, API
// methods): non-empty, at most maxNameLen bytes of valid UTF-8, every rune
// printable and none a space.
func validName(s string) bool {
	if s == "" || len(s) > maxNameLen || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r <= ' ' || !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// validText is the rule for help text a module registers (About, Usage): at
// most max bytes of valid UTF-8, every rune printable, a space, a newline or
// a tab. Other controls, C1 controls included, would reach the operator's
// terminal.
func validText(s string, max int) bool {
	if len(s) > max || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r != '\n' && r != '\t' && r != ' ' && !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}
