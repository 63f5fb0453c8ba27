// Package suggest finds the closest known word to a misspelled one, so that
// error messages can say "did you mean ...?".
package suggest

// Closest returns the candidate nearest to word by edit distance, or "" when
// none is near enough to be a plausible typo. "Near enough" is a distance of
// at most max(2, len(word)/3); ties go to the candidate listed first, so the
// answer is deterministic for a given candidate order.
func Closest(word string, candidates []string) string {
	limit := max(2, len([]rune(word))/3)
	best, bestDist := "", limit+1
	for _, c := range candidates {
		if c == word {
			return c
		}
		if d := distance(word, c); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

// distance is the Levenshtein distance between a and b, counted in runes.
func distance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
