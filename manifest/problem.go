package manifest

import (
	"fmt"
	"strings"
)

// Problem is one thing wrong with an input file, located by line and field.
type Problem struct {
	File    string // file name as the operator knows it
	Line    int    // 1-based; 0 when the field is absent
	Field   string // dotted key, e.g. "binary.hash" or "capabilities[2]"
	Message string
}

// String formats the problem as "FILE:LINE: FIELD: message", leaving out
// the line when it is unknown and the field when there is none.
func (p Problem) String() string {
	loc := p.File
	if p.Line > 0 {
		loc = fmt.Sprintf("%s:%d", p.File, p.Line)
	}
	if p.Field == "" {
		return fmt.Sprintf("%s: %s", loc, p.Message)
	}
	return fmt.Sprintf("%s: %s: %s", loc, p.Field, p.Message)
}

// Problems is every problem found in one pass. It is an error so callers can
// return it directly; each problem prints on its own line.
type Problems []Problem

// Error prints every problem, one per line.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Split separates the problems in fields under any of prefixes (such as
// "signatures", which signing regenerates) from the rest.
func (ps Problems) Split(prefixes ...string) (matching, rest Problems) {
	for _, p := range ps {
		if hasAnyPrefix(p.Field, prefixes) {
			matching = append(matching, p)
		} else {
			rest = append(rest, p)
		}
	}
	return matching, rest
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
