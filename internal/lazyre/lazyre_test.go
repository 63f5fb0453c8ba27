package lazyre

import "testing"

func TestNewCompilesOnce(t *testing.T) {
	re := New(`^a+$`)
	if !re().MatchString("aaa") || re().MatchString("b") || re() != re() {
		t.Fatal("lazy regexp does not behave like the compiled one")
	}
}
