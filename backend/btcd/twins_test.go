package btcd

import "testing"

func TestTwinsOwed(t *testing.T) {
	var w twins
	pair := func() { w.plain.Add(1); w.filtered.Add(1) }
	if w.owed() {
		t.Fatal("owed with no notifications")
	}
	pair()
	pair()
	if w.owed() {
		t.Fatal("owed after two complete pairs")
	}
	w.plain.Add(1) // its twin never comes
	if !w.owed() {
		t.Fatal("a plain notification without its twin was not owed")
	}
	if w.owed() {
		t.Fatal("the same missing twin was owed twice")
	}
	pair()
	if w.owed() {
		t.Fatal("owed after a complete pair following a settled one")
	}
	// A plain one seen before its twin arrives, then the twin: settled by
	// the next call, not owed again.
	w.plain.Add(1)
	if !w.owed() {
		t.Fatal("a plain one whose twin is late was not owed")
	}
	w.filtered.Add(1)
	w.plain.Add(1)
	if w.owed() {
		t.Fatal("the late twin and a new pair's plain one were owed")
	}
	w.filtered.Add(1)
	if w.owed() {
		t.Fatal("owed after every twin arrived")
	}
}
