// Package tomlfile holds what the strict TOML parsers (manifest and
// nodeconfig) share: finding the line each key is written on, and decoding
// one key at a time so that every problem in a file is reported at once.
package tomlfile

import (
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/blvm/blvm-sandbox/internal/lazyre"
)

// Lines maps dotted keys to the 1-based line they are written on. Key parts
// are written as Key writes them (quoted only when not bare), array elements are indexed from 0: "name",
// "dependencies.blvm-node", "capabilities[2]",
// "signatures.maintainers[1].public_key". Array-of-tables headers
// ([[a.b]]) are indexed the same way.
//
// BurntSushi/toml does not expose key positions, so Lines scans the source a
// second time with a forgiving grammar. It never decides whether a document
// is valid (the decoder does that); on input it does not understand it
// records what it can and moves on to the next line.
func Lines(src []byte) map[string]int {
	s := &scanner{src: string(src), line: 1, out: map[string]int{}, arrays: map[string]int{}}
	s.document()
	return s.out
}

// Key joins key parts into a dotted key, quoting parts that are not bare
// keys: Key("modules", "Bad Name") is `modules."Bad Name"`. Problems name
// fields this way, and Lines records keys this way.
func Key(parts ...string) string { return toml.Key(parts).String() }

// Find returns the line of key in lines. When key itself is not recorded it
// tries the key with array indices removed (the decoder reports keys inside
// arrays without them), then each parent key in turn, and finally 0.
func Find(lines map[string]int, key string) int {
	for k := key; k != ""; k = parent(k) {
		if l, ok := lines[k]; ok {
			return l
		}
		if l := findUnindexed(lines, k); l > 0 {
			return l
		}
	}
	return 0
}

var indexRE = lazyre.New(`\[\d+\]`)

// findUnindexed returns the first line of a key that equals k once its array
// indices are dropped.
func findUnindexed(lines map[string]int, k string) int {
	best := 0
	for lk, l := range lines {
		if indexRE().ReplaceAllString(lk, "") == k && (best == 0 || l < best) {
			best = l
		}
	}
	return best
}

// parent drops the last component of a dotted key: "a.b[1].c" -> "a.b[1]"
// -> "a.b" -> "a" -> "".
func parent(k string) string {
	if strings.HasSuffix(k, "]") {
		if i := strings.LastIndexByte(k, '['); i > 0 {
			return k[:i]
		}
	}
	if i := strings.LastIndexByte(k, '.'); i >= 0 {
		return k[:i]
	}
	return ""
}

type scanner struct {
	src    string
	pos    int
	line   int
	out    map[string]int
	arrays map[string]int // next index of each [[array table]]
}

func (s *scanner) eof() bool { return s.pos >= len(s.src) }

func (s *scanner) peek() byte {
	if s.eof() {
		return 0
	}
	return s.src[s.pos]
}

func (s *scanner) advance() {
	if s.src[s.pos] == '\n' {
		s.line++
	}
	s.pos++
}

// record keeps the first line a key was seen on.
func (s *scanner) record(key string, line int) {
	if key == "" {
		return
	}
	if _, ok := s.out[key]; !ok {
		s.out[key] = line
	}
}

// skipSpace skips blanks, and newlines and comments when multiline is set.
func (s *scanner) skipSpace(multiline bool) {
	for !s.eof() {
		switch c := s.peek(); {
		case c == ' ' || c == '\t' || c == '\r':
			s.advance()
		case c == '#':
			for !s.eof() && s.peek() != '\n' {
				s.advance()
			}
		case c == '\n' && multiline:
			s.advance()
		default:
			return
		}
	}
}

// skipLine moves past the end of the current line.
func (s *scanner) skipLine() {
	for !s.eof() && s.peek() != '\n' {
		s.advance()
	}
}

func (s *scanner) document() {
	prefix := ""
	for {
		s.skipSpace(true)
		if s.eof() {
			return
		}
		start := s.pos
		if s.peek() == '[' {
			prefix = s.header(prefix)
		} else {
			line := s.line
			parts := s.key()
			s.skipSpace(false)
			if len(parts) == 0 || s.peek() != '=' {
				s.skipLine()
				continue
			}
			s.advance()
			key := join(prefix, parts)
			s.record(key, line)
			s.skipSpace(false)
			s.value(key)
		}
		s.skipSpace(false)
		if s.pos == start {
			s.advance() // never loop on input the grammar does not cover
		}
		if !s.eof() && s.peek() != '\n' {
			s.skipLine()
		}
	}
}

// header reads [a.b] or [[a.b]] and returns the new key prefix.
func (s *scanner) header(old string) string {
	line := s.line
	s.advance()
	array := s.peek() == '['
	if array {
		s.advance()
	}
	s.skipSpace(false)
	parts := s.key()
	s.skipSpace(false)
	if s.peek() != ']' || len(parts) == 0 {
		s.skipLine()
		return old
	}
	s.advance()
	if array {
		if s.peek() == ']' {
			s.advance()
		}
		base := Key(parts...)
		s.record(base, line)
		i := s.arrays[base]
		s.arrays[base] = i + 1
		key := base + "[" + strconv.Itoa(i) + "]"
		s.record(key, line)
		return key
	}
	key := Key(parts...)
	s.record(key, line)
	return key
}

// key reads a dotted key: bare, "basic" or 'literal' parts joined by dots.
func (s *scanner) key() []string {
	var parts []string
	for {
		s.skipSpace(false)
		var part string
		switch c := s.peek(); {
		case c == '"' || c == '\'':
			part = s.str()
		case isBare(c):
			st := s.pos
			for !s.eof() && isBare(s.peek()) {
				s.advance()
			}
			part = s.src[st:s.pos]
		default:
			return parts
		}
		parts = append(parts, part)
		s.skipSpace(false)
		if s.peek() != '.' {
			return parts
		}
		s.advance()
	}
}

func isBare(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// str reads a basic, literal or multi-line string and returns its raw
// contents (escapes are kept; keys with escapes are rare enough to ignore).
func (s *scanner) str() string {
	q := s.peek()
	triple := strings.Repeat(string(q), 3)
	if strings.HasPrefix(s.src[s.pos:], triple) {
		for range 3 {
			s.advance()
		}
		st := s.pos
		for !s.eof() && !strings.HasPrefix(s.src[s.pos:], triple) {
			if q == '"' && s.peek() == '\\' {
				s.advance()
				if s.eof() {
					break
				}
			}
			s.advance()
		}
		v := s.src[st:s.pos]
		for i := 0; i < 3 && !s.eof(); i++ {
			s.advance()
		}
		return v
	}
	s.advance()
	st := s.pos
	for !s.eof() && s.peek() != q && s.peek() != '\n' {
		if q == '"' && s.peek() == '\\' {
			s.advance()
			if s.eof() || s.peek() == '\n' {
				break
			}
		}
		s.advance()
	}
	v := s.src[st:s.pos]
	if s.peek() == q {
		s.advance()
	}
	return v
}

// value reads one value, recording the keys of arrays and inline tables
// under key.
func (s *scanner) value(key string) {
	switch s.peek() {
	case '"', '\'':
		s.str()
	case '[':
		s.advance()
		for i := 0; ; i++ {
			s.skipSpace(true)
			if s.eof() || s.peek() == ']' {
				break
			}
			elem := key + "[" + strconv.Itoa(i) + "]"
			s.record(elem, s.line)
			before := s.pos
			s.value(elem)
			s.skipSpace(true)
			if s.peek() == ',' {
				s.advance()
			} else if s.pos == before {
				return // not an array we understand
			}
		}
		if !s.eof() {
			s.advance()
		}
	case '{':
		s.advance()
		for {
			s.skipSpace(false)
			if s.eof() || s.peek() == '}' || s.peek() == '\n' {
				break
			}
			line := s.line
			parts := s.key()
			s.skipSpace(false)
			if len(parts) == 0 || s.peek() != '=' {
				return
			}
			s.advance()
			sub := join(key, parts)
			s.record(sub, line)
			s.skipSpace(false)
			s.value(sub)
			s.skipSpace(false)
			if s.peek() == ',' {
				s.advance()
			}
		}
		if s.peek() == '}' {
			s.advance()
		}
	default:
		// number, bool or datetime: ends at a delimiter
		for !s.eof() && !strings.ContainsRune(",]}#\n", rune(s.peek())) {
			s.advance()
		}
	}
}

// join appends key parts to prefix, quoting parts the way toml.Key.String
// does, so that recorded keys match the decoder's key names.
func join(prefix string, parts []string) string {
	k := Key(parts...)
	if prefix == "" {
		return k
	}
	return prefix + "." + k
}
