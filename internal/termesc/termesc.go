// Package termesc makes text that a module or a manifest controls safe to
// print on an operator's terminal or into a log: every byte a terminal could
// act on becomes a visible escape, so untrusted text can colour, move, erase,
// retitle or reorder nothing.
//
// Escaped are ESC and every other C0 control, DEL, the C1 controls
// U+0080–U+009F (a terminal may act on them even UTF-8 encoded), bytes that
// are not valid UTF-8, the bidirectional overrides, embeddings, isolates and
// marks (they reorder what is drawn, "Trojan Source"), and U+2028/U+2029
// (line breaks to some readers). A backslash is left alone: it moves nothing,
// and escaping it would mangle ordinary paths and regexps.
package termesc

import (
	"fmt"
	"unicode/utf8"
)

// needsEscape reports whether r, decoded from valid UTF-8, must be escaped.
// keepLayout keeps newline and tab, which move the cursor only forward.
func needsEscape(r rune, keepLayout bool) bool {
	switch {
	case r == '\n' || r == '\t':
		return !keepLayout
	case r < 0x20, r == 0x7f:
		return true
	case r >= 0x80 && r <= 0x9f: // C1
		return true
	case r == 0x061c, r == 0x200e, r == 0x200f: // Arabic letter mark, LRM, RLM
		return true
	case r >= 0x202a && r <= 0x202e: // LRE, RLE, PDF, LRO, RLO
		return true
	case r >= 0x2066 && r <= 0x2069: // LRI, RLI, FSI, PDI
		return true
	case r == 0x2028, r == 0x2029: // line and paragraph separators
		return true
	}
	return false
}

// appendEscape appends the visible form of r: \n \t \r, \xNN below 0x80,
// \uNNNN above.
func appendEscape(dst []byte, r rune) []byte {
	switch r {
	case '\n':
		return append(dst, `\n`...)
	case '\t':
		return append(dst, `\t`...)
	case '\r':
		return append(dst, `\r`...)
	}
	if r < 0x80 {
		return fmt.Appendf(dst, `\x%02x`, r)
	}
	return fmt.Appendf(dst, `\u%04x`, r)
}

// mode says what an escaper keeps.
type mode int

const (
	modeLine mode = iota // one line: newline and tab escaped too
	modeText             // multi-line text: newline and tab kept
	modeJSON             // JSON text: only \uNNNN escapes, so it stays valid JSON
)

// appendEscaped appends src to dst with everything a terminal acts on
// escaped. When partialOK, an incomplete UTF-8 sequence at the very end is
// not consumed: n is how much of src was used.
func appendEscaped(dst, src []byte, m mode, partialOK bool) (out []byte, n int) {
	for n < len(src) {
		b := src[n]
		if b < utf8.RuneSelf {
			switch {
			case m == modeJSON && b == 0x7f:
				// An encoder escapes the other controls in strings; outside
				// strings JSON holds only ASCII punctuation and whitespace.
				dst = append(dst, `\u007f`...)
			case m != modeJSON && needsEscape(rune(b), m == modeText):
				dst = appendEscape(dst, rune(b))
			default:
				dst = append(dst, b)
			}
			n++
			continue
		}
		if partialOK && !utf8.FullRune(src[n:]) {
			return dst, n // wait for the rest of the sequence
		}
		r, size := utf8.DecodeRune(src[n:])
		switch {
		case r == utf8.RuneError && size == 1 && m == modeJSON:
			dst = append(dst, `\ufffd`...)
		case r == utf8.RuneError && size == 1:
			dst = fmt.Appendf(dst, `\x%02x`, b)
		case needsEscape(r, false):
			dst = fmt.Appendf(dst, `\u%04x`, r)
		default:
			dst = append(dst, src[n:n+size]...)
		}
		n += size
	}
	return dst, n
}

// String returns s escaped to stay on one line: newline and tab are escaped
// too, so a field cannot start a line or shift a column of its own. Use it
// for names, versions, errors and anything else printed inside a line.
func String(s string) string {
	if safe(s, false) {
		return s
	}
	out, _ := appendEscaped(nil, []byte(s), modeLine, false)
	return string(out)
}

// Text returns b escaped, keeping newlines and tabs: for multi-line output
// such as a module's stdout or a log.
func Text(b []byte) []byte {
	out, _ := appendEscaped(make([]byte, 0, len(b)), b, modeText, false)
	return out
}

// safe reports whether s needs no escaping; the common case allocates nothing.
func safe(s string, keepLayout bool) bool {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size == 1 {
				return false
			}
		}
		if needsEscape(r, keepLayout) {
			return false
		}
	}
	return true
}
