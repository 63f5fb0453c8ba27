package suggest

import "testing"

func TestClosest(t *testing.T) {
	caps := []string{"read_blockchain", "subscribe_events", "read_lightning", "governance_vote"}
	tests := []struct {
		word string
		want string
	}{
		{"read_lightnin", "read_lightning"},
		{"read_blockchian", "read_blockchain"},
		{"subscribe_event", "subscribe_events"},
		{"read_lightning", "read_lightning"},
		{"send_transactions", ""},
		{"xyz", ""},
		{"", ""},
		{"nmae", ""}, // not within distance of any capability
	}
	for _, tt := range tests {
		if got := Closest(tt.word, caps); got != tt.want {
			t.Errorf("Closest(%q) = %q, want %q", tt.word, got, tt.want)
		}
	}
	if got := Closest("nmae", []string{"name", "version"}); got != "name" {
		t.Errorf("Closest(nmae) = %q, want name", got)
	}
	if got := Closest("anything", nil); got != "" {
		t.Errorf("Closest with no candidates = %q, want empty", got)
	}
}

func TestDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"a", "", 1},
		{"", "abc", 3},
		{"kitten", "sitting", 3},
		{"flaw", "lawn", 2},
		{"same", "same", 0},
	}
	for _, tt := range tests {
		if got := distance(tt.a, tt.b); got != tt.want {
			t.Errorf("distance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}
