package devchain

import (
	"crypto/sha256"
	"testing"

	"github.com/btcsuite/btcd/chaincfg/v2"
	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/wire/v2"
)

// refMerkle is an independent, recursive merkle root with crypto/sha256.
func refMerkle(level []chainhash.Hash) chainhash.Hash {
	if len(level) == 0 {
		return chainhash.Hash{}
	}
	if len(level) == 1 {
		return level[0]
	}
	if len(level)%2 == 1 {
		level = append(level[:len(level):len(level)], level[len(level)-1])
	}
	var next []chainhash.Hash
	for i := 0; i < len(level); i += 2 {
		first := sha256.Sum256(append(level[i][:], level[i+1][:]...))
		next = append(next, chainhash.Hash(sha256.Sum256(first[:])))
	}
	return refMerkle(next)
}

func hashes(t *testing.T, hexes ...string) []chainhash.Hash {
	t.Helper()
	out := make([]chainhash.Hash, len(hexes))
	for i, s := range hexes {
		h, err := chainhash.NewHashFromStr(s)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = *h
	}
	return out
}

func TestMerkleRootKnownBlocks(t *testing.T) {
	tests := []struct {
		name string
		txs  []string
		root string
	}{
		{"mainnet block 170", []string{
			"b1fea52486ce0c62bb442b530a3f0132b826c74e473d1f2c220bfa78111c5082",
			"f4184fc596403b9d638783cf57adfe4c75c605f6356fbc91338530e9831e9e16",
		}, "7dac2c5666815c17a3b36427de37bb9d2e2c5ccec3f8633eb91a4205cb4c10ff"},
		{"mainnet block 100000", []string{
			"8c14f0db3df150123e6f3dbbf30f8b955a8249b62ac1d1ff16284aefa3d06d87",
			"fff2525b8931402dd09222c50775608f75787bd2b87e56995a7bdd30f79702c4",
			"6359f0868171b1d194cbee1af2f16ea598ae8fad666d9b012c8ed2b79a236ec4",
			"e9a66845e05d5abc0ad04ec80f774a7e585c6e8db975962d069a522137b80c1d",
		}, "f3e94742aca4b5ef85488dc37c06c3282295ffec960994b2c0d5ac2a25a95766"},
	}
	for _, tt := range tests {
		want := hashes(t, tt.root)[0]
		if got := merkleRoot(hashes(t, tt.txs...)); got != want {
			t.Errorf("%s: merkle root %s, want %s", tt.name, got, want)
		}
	}
}

func TestMerkleRootGenesis(t *testing.T) {
	for _, p := range []*chaincfg.Params{&chaincfg.RegressionNetParams, &chaincfg.MainNetParams} {
		g := p.GenesisBlock
		if got := txMerkleRoot(g.Transactions); got != g.Header.MerkleRoot {
			t.Errorf("%s genesis: merkle root %s, header says %s", p.Name, got, g.Header.MerkleRoot)
		}
	}
	want := hashes(t, "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b")[0]
	if got := txMerkleRoot(chaincfg.RegressionNetParams.GenesisBlock.Transactions); got != want {
		t.Errorf("regtest genesis merkle root %s, want %s", got, want)
	}
}

func TestMerkleRootAgainstReference(t *testing.T) {
	for n := 0; n <= 17; n++ {
		leaves := make([]chainhash.Hash, n)
		for i := range leaves {
			leaves[i] = chainhash.HashH([]byte{byte(n), byte(i)})
		}
		in := append([]chainhash.Hash(nil), leaves...)
		if got, want := merkleRoot(leaves), refMerkle(leaves); got != want {
			t.Errorf("%d leaves: merkle root %s, reference %s", n, got, want)
		}
		for i := range leaves {
			if leaves[i] != in[i] {
				t.Fatalf("%d leaves: merkleRoot modified its input", n)
			}
		}
	}
}

// refWitnessCommitment recomputes BIP141's commitment from the block alone.
func refWitnessCommitment(blk *wire.MsgBlock) chainhash.Hash {
	wtxids := make([]chainhash.Hash, len(blk.Transactions))
	for i, tx := range blk.Transactions[1:] {
		wtxids[i+1] = tx.WitnessHash()
	}
	root := refMerkle(wtxids)
	reserved := blk.Transactions[0].TxIn[0].Witness[0]
	first := sha256.Sum256(append(root[:], reserved...))
	return chainhash.Hash(sha256.Sum256(first[:]))
}
