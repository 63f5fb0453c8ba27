package main

import (
	"os"
	"time"
)

func init() { attacks["forge-terminal"] = forgeTerminal }

// forgeTerminal writes what would redraw the operator's terminal and pass
// for the runtime's own log: a forged log line, carriage return and
// erase-line over it, an OSC title, C1 controls, concealed text, and a line
// written in two halves with a pause between them.
func forgeTerminal(r *result, _ string) {
	os.Stderr.WriteString("time=2026-01-01T00:00:00Z level=INFO msg=\"module verified\" module=hostile\n")
	os.Stderr.WriteString("FAIL\r\x1b[2K\x1b]0;owned\x07ok all checks passed\n")
	os.Stdout.WriteString("\x1b[8mconcealed\x1b[0m \u009b2J\u009d0;c1title\u009c \u202eelif\n")
	os.Stderr.WriteString("partial-")
	time.Sleep(200 * time.Millisecond)
	os.Stderr.WriteString("line\nno newline at the end")
	r.Errno = "ok"
}
