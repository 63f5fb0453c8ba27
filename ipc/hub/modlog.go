package hub

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// lineOverhead is what a log line costs beyond its message and attributes:
// time, level, keys, quoting and the module attribute. Charging it keeps a
// flood of short lines inside the byte budget too.
const lineOverhead = 128

// modLog is a module's share of the node's log. Every line the hub writes
// because of something the module did, and every Log frame it sends, is
// charged to one byte budget (Config.LogBytesPerSecond). Past it, lines are
// suppressed and counted, with one summary line per Config.LogSummaryEvery.
type modLog struct {
	log     *slog.Logger // carries the "module" attribute
	rate    *bucket
	every   time.Duration
	stats   *counters
	mu      sync.Mutex
	last    time.Time // of the last summary line
	dropped uint64    // lines suppressed since the last summary line
}

func newModLog(h *Hub, name string, stats *counters) *modLog {
	return &modLog{
		log:   h.log.With("module", name),
		rate:  newBucket(float64(h.cfg.LogBytesPerSecond)),
		every: h.cfg.LogSummaryEvery,
		stats: stats,
	}
}

// lineCost is what a line with msg and attrs is charged: at least what a
// text or JSON handler writes for it, given strings already logText'd.
func lineCost(msg string, attrs []slog.Attr) int {
	n := lineOverhead + textCost(msg)
	for _, a := range attrs {
		n += textCost(a.Key) + 1
		switch a.Value.Kind() {
		case slog.KindString:
			n += textCost(a.Value.String())
		case slog.KindGroup:
			// A text handler prefixes every member's key with the group's.
			g := a.Value.Group()
			n += lineCost("", g) - lineOverhead + len(g)*(len(a.Key)+1)
		default:
			n += 24
		}
	}
	return n
}

// textCost is the most bytes a handler writes for s: quotes, a backslash
// before quotes and backslashes, and JSON's \u00XX for <, > and &.
func textCost(s string) int {
	n := len(s) + 2
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"', '\\':
			n++
		case '<', '>', '&':
			n += 5
		}
	}
	return n
}

// line writes a hub line about the module within its budget. Attribute
// values that came from the module must already be logText'd.
func (l *modLog) line(level slog.Level, msg string, attrs ...slog.Attr) {
	if !l.log.Enabled(context.Background(), level) {
		return // costs the node nothing, so nothing is charged
	}
	if !l.rate.take(float64(lineCost(msg, attrs))) {
		l.stats.logSuppressed.Add(1)
		l.suppressed()
		return
	}
	l.log.LogAttrs(context.Background(), level, msg, attrs...)
}

// admit charges n bytes of the module's own Log frame; false means drop it.
func (l *modLog) admit(n int) bool {
	if l.rate.take(float64(n)) {
		return true
	}
	l.stats.logDropped.Add(1)
	l.suppressed()
	return false
}

// suppressed counts one suppressed line, and writes the summary line when
// none was written for an interval: the first suppression is reported at
// once, later ones at most once per interval.
func (l *modLog) suppressed() {
	now := time.Now()
	l.mu.Lock()
	l.dropped++
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		l.mu.Unlock()
		return
	}
	n := l.dropped
	l.dropped, l.last = 0, now
	l.mu.Unlock()
	l.log.Warn("hub: module's log budget exhausted; lines suppressed",
		"suppressed", n, "budget_bytes_per_second", int(l.rate.rate), "next_summary_in", l.every)
}

func (l *modLog) warn(msg string, attrs ...slog.Attr) { l.line(slog.LevelWarn, msg, attrs...) }
func (l *modLog) info(msg string, attrs ...slog.Attr) { l.line(slog.LevelInfo, msg, attrs...) }

// str is a module-supplied string attribute, truncated and escaped.
func str(key, v string) slog.Attr { return slog.String(key, logText(v, maxLoggedText)) }
