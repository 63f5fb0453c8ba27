package main

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// stageClock times the stages of a command, for `run --timings` and
// `install NAME --timings`: where a one-shot command spends its wall time
// (docs/BENCHMARKS.md breaks both down with it). A nil clock times nothing.
type stageClock struct {
	out    io.Writer
	start  time.Time
	last   time.Time
	stages []string
}

func newStageClock(out io.Writer) *stageClock {
	now := time.Now()
	return &stageClock{out: out, start: now, last: now}
}

// mark ends the stage called name, which began at the previous mark.
func (c *stageClock) mark(name string) {
	if c == nil {
		return
	}
	now := time.Now()
	c.stages = append(c.stages, fmt.Sprintf("%s=%.2fms", name, ms(now.Sub(c.last))))
	c.last = now
}

// markSplit ends a stage made of two interleaved parts: first took
// firstTook of it, second the rest.
func (c *stageClock) markSplit(first string, firstTook time.Duration, second string) {
	if c == nil {
		return
	}
	now := time.Now()
	c.stages = append(c.stages, fmt.Sprintf("%s=%.2fms", first, ms(firstTook)), fmt.Sprintf("%s=%.2fms", second, ms(now.Sub(c.last)-firstTook)))
	c.last = now
}

// print writes every stage and the total on one line.
func (c *stageClock) print() {
	if c == nil {
		return
	}
	fmt.Fprintf(c.out, "timings: %s total=%.2fms\n", strings.Join(c.stages, " "), ms(time.Since(c.start)))
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
