package tomlfile

import "testing"

const doc = `# comment
name = "x" # trailing
"quoted key" = 1
a.b = 'lit'
caps = [
    "one",   # c
    "two, ]", 
]
inline = { x = 1, "y" = [1, 2] }
text = """
multi [not a header]
line"""

[dependencies]
"blvm-node" = ">=1.0.0"

[signatures]
maintainers = [
    { name = "alice", public_key = "02ab" },
    { name = "bob", public_key = "03cd" },
]
[[arr.t]]
k = 1
[[arr.t]]
k = 2
[after]
z = true
`

func TestLines(t *testing.T) {
	lines := Lines([]byte(doc))
	want := map[string]int{
		"name":                                 2,
		`"quoted key"`:                         3,
		"a.b":                                  4,
		"caps":                                 5,
		"caps[0]":                              6,
		"caps[1]":                              7,
		"inline":                               9,
		"inline.x":                             9,
		"inline.y[1]":                          9,
		"text":                                 10,
		"dependencies":                         14,
		"dependencies.blvm-node":               15,
		"signatures":                           17,
		"signatures.maintainers":               18,
		"signatures.maintainers[0].name":       19,
		"signatures.maintainers[1]":            20,
		"signatures.maintainers[1].public_key": 20,
		"arr.t[0].k":                           23,
		"arr.t[1]":                             24,
		"arr.t[1].k":                           25,
		"after.z":                              27,
	}
	for k, l := range want {
		if lines[k] != l {
			t.Errorf("line of %q = %d, want %d", k, lines[k], l)
		}
	}
	if _, ok := lines["caps[2]"]; ok {
		t.Errorf("trailing comma recorded a third element")
	}
}

func TestFind(t *testing.T) {
	lines := Lines([]byte(doc))
	tests := []struct {
		key  string
		want int
	}{
		{"name", 2},
		{"signatures.maintainers[1].signature", 20}, // absent: falls back to the element
		{"signatures.maintainers.public_key", 19},   // decoder's unindexed form
		{"dependencies.other", 14},                  // falls back to the table header
		{"missing", 0},
		{"", 0},
	}
	for _, tt := range tests {
		if got := Find(lines, tt.key); got != tt.want {
			t.Errorf("Find(%q) = %d, want %d", tt.key, got, tt.want)
		}
	}
}

func FuzzLines(f *testing.F) {
	f.Add(doc)
	f.Add(`a = [ { b = "`)
	f.Fuzz(func(t *testing.T, s string) {
		for k, l := range Lines([]byte(s)) {
			if l < 1 {
				t.Fatalf("key %q has line %d", k, l)
			}
		}
	})
}
