package manifest

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/blvm/blvm-sandbox/internal/lazyre"
)

// The rewrite functions edit module.toml as text so that a maintainer's
// comments and layout survive `blvm-sandbox sign`. What is kept:
//
//   - every line outside the [signatures] table;
//   - in [binary] and [config], every line but the hash and size lines,
//     which are replaced whole (a comment on those two lines is lost);
//   - comment and blank lines just before the table after [signatures].
//
// Comments inside [signatures] are not kept: the table is regenerated. The
// signatures do not cover it, so nothing signed changes. Callers re-parse the
// result and compare signing views, so a rewrite can never silently change a
// signed value.

var tableHeader = lazyre.New(`^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$`)

// keyLine matches a line assigning key, bare or quoted.
func keyLine(key string) *regexp.Regexp {
	return regexp.MustCompile(`^\s*"?` + regexp.QuoteMeta(key) + `"?\s*=`)
}

// region is a table's lines [start, end): the header and its own content,
// without the comments and blank lines that lead into the next table.
type region struct{ start, end int }

func findTable(lines []string, name string) (region, bool) {
	start := -1
	for i, l := range lines {
		m := tableHeader().FindStringSubmatch(l)
		if m == nil {
			continue
		}
		if start >= 0 {
			return region{start, trimTrailing(lines, start, i)}, true
		}
		if strings.TrimSpace(m[1]) == name && !strings.HasPrefix(strings.TrimSpace(l), "[[") {
			start = i
		}
	}
	if start < 0 {
		return region{}, false
	}
	return region{start, trimTrailing(lines, start, len(lines))}, true
}

// trimTrailing moves end back over comment and blank lines, which belong to
// whatever follows.
func trimTrailing(lines []string, start, end int) int {
	for end > start+1 {
		t := strings.TrimSpace(lines[end-1])
		if t != "" && !strings.HasPrefix(t, "#") {
			break
		}
		end--
	}
	return end
}

func splitLines(src []byte) []string {
	s := strings.TrimSuffix(string(src), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func joinLines(lines []string) []byte {
	return []byte(strings.Join(lines, "\n") + "\n")
}

// RewriteBinary returns src with [binary] hash and size set, adding the
// table (before [signatures], or at the end) when it is missing.
func RewriteBinary(src []byte, hash string, size int64) ([]byte, error) {
	return rewritePin(src, "binary", hash, size)
}

// RewriteConfig returns src with [config] hash and size set, the same way.
func RewriteConfig(src []byte, hash string, size int64) ([]byte, error) {
	return rewritePin(src, "config", hash, size)
}

// rewritePin sets hash and size in table, adding the table before
// [signatures], or at the end, when it is missing.
func rewritePin(src []byte, table, hash string, size int64) ([]byte, error) {
	lines := splitLines(src)
	hashLine := "hash = " + strconv.Quote(hash)
	sizeLine := fmt.Sprintf("size = %d", size)
	r, ok := findTable(lines, table)
	if !ok {
		block := []string{"[" + table + "]", hashLine, sizeLine, ""}
		if sig, ok := findTable(lines, "signatures"); ok {
			return joinLines(insert(lines, sig.start, block)), nil
		}
		return joinLines(append(lines, append([]string{""}, block[:3]...)...)), nil
	}
	lines = setKey(lines, &r, "size", sizeLine)
	lines = setKey(lines, &r, "hash", hashLine)
	return joinLines(lines), nil
}

// setKey replaces the line assigning key in the table at r with line, or
// inserts line first in the table when the table has none.
func setKey(lines []string, r *region, key, line string) []string {
	re := keyLine(key)
	for i := r.start + 1; i < r.end; i++ {
		if re.MatchString(lines[i]) {
			lines[i] = line
			return lines
		}
	}
	r.end++
	return insert(lines, r.start+1, []string{line})
}

// RewritePaymentSignature returns src with [payment] payment_signature set
// to sig. The table must exist: the author states the terms, the tool
// only signs them.
func RewritePaymentSignature(src []byte, sig string) ([]byte, error) {
	lines := splitLines(src)
	r, ok := findTable(lines, "payment")
	if !ok {
		return nil, fmt.Errorf("no [payment] table to sign")
	}
	return joinLines(setKey(lines, &r, "payment_signature", "payment_signature = "+strconv.Quote(sig))), nil
}

// RewriteSignatures returns src with the [signatures] table replaced by
// sigs, or appended when there was none.
func RewriteSignatures(src []byte, sigs Signatures) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("[signatures]\n")
	fmt.Fprintf(&b, "threshold = %s\n", strconv.Quote(sigs.Threshold))
	b.WriteString("maintainers = [\n")
	for _, s := range sigs.Maintainers {
		fmt.Fprintf(&b, "    { name = %s, public_key = %s, signature = %s },\n",
			strconv.Quote(s.Name), strconv.Quote(s.PublicKey), strconv.Quote(s.Signature))
	}
	b.WriteString("]")
	block := strings.Split(b.String(), "\n")

	lines := splitLines(src)
	r, ok := findTable(lines, "signatures")
	if !ok {
		return joinLines(append(lines, append([]string{""}, block...)...)), nil
	}
	out := append([]string{}, lines[:r.start]...)
	out = append(out, block...)
	out = append(out, lines[r.end:]...)
	return joinLines(out), nil
}

func insert(lines []string, at int, block []string) []string {
	out := append([]string{}, lines[:at]...)
	out = append(out, block...)
	return append(out, lines[at:]...)
}
