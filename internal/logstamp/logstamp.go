// Package logstamp is the time the runtime writes at the start of every
// line of a module's log, and how readers find it again. It is fixed
// width and UTC, followed by one space, so a reader strips exactly it and
// a module cannot shift it.
package logstamp

import "time"

// Layout is the stamp's time layout.
const Layout = "2006-01-02T15:04:05.000000000Z"

// Len is the stamp with the space after it.
const Len = len(Layout) + 1

// Append appends t's stamp and a space to b.
func Append(b []byte, t time.Time) []byte {
	return append(t.UTC().AppendFormat(b, Layout), ' ')
}

// Parse reads the stamp at the start of line; false if it has none.
func Parse(line []byte) (time.Time, bool) {
	if len(line) < Len || line[Len-1] != ' ' {
		return time.Time{}, false
	}
	t, err := time.Parse(Layout, string(line[:Len-1]))
	return t, err == nil
}
