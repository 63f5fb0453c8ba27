package devchain

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
)

// BenchmarkMineBlock measures one block with two wallet transactions,
// including signing and the bbolt commit (fsync).
func BenchmarkMineBlock(b *testing.B) {
	c, err := Open(filepath.Join(b.TempDir(), "devchain.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.MineBlock(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpenNew measures creating a chain: genesis, InitialBlocks blocks,
// proposals and the first mempool, in one commit.
func BenchmarkOpenNew(b *testing.B) {
	dir := b.TempDir()
	i := 0
	for b.Loop() {
		i++
		c, err := Open(filepath.Join(dir, fmt.Sprintf("devchain-%d.db", i)), Options{})
		if err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}
