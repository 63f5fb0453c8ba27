package termesc

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// Module logs are mostly plain text: escaping must cost little there.
var logLine = []byte("time=2026-01-01T00:00:00Z level=INFO msg=\"block connected\" height=101 hash=0f9188f1\n")

func BenchmarkWriterPlainLog(b *testing.B) {
	in := bytes.Repeat(logLine, 1<<14)
	w := NewWriter(io.Discard)
	b.SetBytes(int64(len(in)))
	for i := 0; i < b.N; i++ {
		w.Write(in)
	}
}

func BenchmarkLineWriterPlainLog(b *testing.B) {
	in := bytes.Repeat(logLine, 1<<14)
	w := NewLineWriter(io.Discard, "block-logger| ")
	b.SetBytes(int64(len(in)))
	for i := 0; i < b.N; i++ {
		w.Write(in)
	}
}

func BenchmarkStringName(b *testing.B) {
	s := strings.Repeat("stratum-v2", 3)
	for i := 0; i < b.N; i++ {
		String(s)
	}
}
