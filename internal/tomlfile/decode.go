package tomlfile

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/blvm/blvm-sandbox/internal/lazyre"
	"github.com/blvm/blvm-sandbox/internal/suggest"
)

// Issue is one problem found while decoding, located by line and field. The
// callers turn it into their own public problem type.
type Issue struct {
	Line    int
	Field   string
	Message string
}

// SyntaxIssue turns a TOML decoding error into one Issue located at the line
// the decoder reports.
func SyntaxIssue(err error) Issue {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return Issue{Line: pe.Position.Line, Message: "invalid TOML: " + pe.Message}
	}
	return Issue{Message: "invalid TOML: " + err.Error()}
}

// Decoder decodes the values of a TOML document one key at a time, so that a
// wrong type in one key does not hide problems in the others.
type Decoder struct {
	Lines  map[string]int
	MD     *toml.MetaData
	Issues []Issue

	failed   []string // keys whose decoding failed; their leftovers are not "unknown"
	reported []string // keys already reported unknown; their children are not
	opaque   []string // keys decoded whole into an untyped value; their children are known
}

// Open decodes data into a map of primitives, one per top-level key. A
// syntax error is returned as the single Issue.
func Open(data []byte) (*Decoder, map[string]toml.Primitive, *Issue) {
	var raw map[string]toml.Primitive
	md, err := toml.Decode(string(data), &raw)
	if err != nil {
		is := SyntaxIssue(err)
		return nil, nil, &is
	}
	return &Decoder{Lines: Lines(data), MD: &md}, raw, nil
}

// Add records a problem on field, located with Find.
func (d *Decoder) Add(field, format string, args ...any) {
	d.Issues = append(d.Issues, Issue{
		Line: Find(d.Lines, field), Field: field, Message: fmt.Sprintf(format, args...),
	})
}

// SortedKeys returns the keys of raw in the order they appear in the file.
func (d *Decoder) SortedKeys(raw map[string]toml.Primitive) []string {
	keys := slices.Sorted(maps.Keys(raw))
	sort.SliceStable(keys, func(i, j int) bool {
		return Find(d.Lines, keys[i]) < Find(d.Lines, keys[j])
	})
	return keys
}

// Unknown reports key as unknown, suggesting the closest of known.
func (d *Decoder) Unknown(key string, known []string) {
	d.reported = append(d.reported, key)
	last := key
	if i := strings.LastIndexByte(key, '.'); i >= 0 {
		last = key[i+1:]
	}
	if s := suggest.Closest(last, known); s != "" {
		d.Add(key, "unknown key (did you mean %q?)", s)
		return
	}
	d.Add(key, "unknown key")
}

var (
	typeErrRE  = lazyre.New(`^incompatible types: TOML value has type (.+); destination has type (.+)$`)
	tableErrRE = lazyre.New(`^type mismatch for .+: expected table but found (.+)$`)
)

// tomlType names a Go type the way a TOML author thinks of it.
func tomlType(goType string) string {
	switch {
	case strings.HasPrefix(goType, "int") || strings.HasPrefix(goType, "uint"): // also "integer"
		return "an integer"
	case strings.HasPrefix(goType, "float"):
		return "a number"
	case goType == "string":
		return "a string"
	case goType == "bool" || goType == "boolean":
		return "a boolean"
	case strings.HasPrefix(goType, "map[") || goType == "map" || goType == "struct":
		return "a table"
	case strings.HasPrefix(goType, "[]") || goType == "slice" || goType == "array":
		return "an array"
	case goType == "time.Time":
		return "a datetime"
	}
	return goType
}

var lastKeyRE = lazyre.New(`^toml: (?:line \d+ )?\(last key "([^"]*)"\): `)

// Decode decodes the primitive p, found at key, into dst and records a
// problem on failure.
func (d *Decoder) Decode(key string, p toml.Primitive, dst any) bool {
	err := d.MD.PrimitiveDecode(p, dst)
	if err == nil {
		return true
	}
	d.failed = append(d.failed, key)
	field, msg := key, err.Error()
	if sm := lastKeyRE().FindStringSubmatch(msg); sm != nil {
		if sm[1] != "" {
			field = sm[1]
		}
		msg = msg[len(sm[0]):]
	}
	msg = strings.TrimPrefix(msg, "toml: ")
	if sm := typeErrRE().FindStringSubmatch(msg); sm != nil {
		msg = fmt.Sprintf("wrong type: want %s, not %s", tomlType(sm[2]), tomlType(sm[1]))
	} else if sm := tableErrRE().FindStringSubmatch(msg); sm != nil {
		msg = fmt.Sprintf("wrong type: want a table, not %s", tomlType(sm[1]))
	}
	d.Add(field, "%s", msg)
	return false
}

// Failed reports whether key, or a key above it, failed to decode. Values
// under such keys are partial, so callers skip validating them rather than
// report a second, misleading problem.
func (d *Decoder) Failed(key string) bool {
	for _, f := range d.failed {
		if key == f || strings.HasPrefix(key, f+".") || strings.HasPrefix(key, f+"[") {
			return true
		}
	}
	return false
}

// Opaque marks key as decoded whole (into an untyped value, such as a
// module's own configuration): nothing under it is unknown.
func (d *Decoder) Opaque(key string) { d.opaque = append(d.opaque, key) }

// Undecoded reports every key the decoder did not use. known returns the
// keys allowed under a parent key (given without array indices), for the
// "did you mean" suggestion. Only the outermost unknown key of a subtree is
// reported.
func (d *Decoder) Undecoded(known func(parent toml.Key) []string) {
	for _, k := range d.MD.Undecoded() {
		key := k.String()
		if underAny(key, d.reported) || underAny(key, d.failed) || underAny(key, d.opaque) {
			continue
		}
		d.Unknown(key, known(k[:len(k)-1]))
	}
}

// underAny reports whether key is one of prefixes or below one of them.
func underAny(key string, prefixes []string) bool {
	for _, p := range prefixes {
		if key == p || strings.HasPrefix(key, p+".") {
			return true
		}
	}
	return false
}
