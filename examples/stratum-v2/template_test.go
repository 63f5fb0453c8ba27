package main

import (
	"testing"
	"time"

	"github.com/btcsuite/btcd/chainhash/v2"

	"github.com/blvm/blvm-sandbox/ipc/pb"
	"github.com/blvm/blvm-sandbox/ipc/sdk"
)

func mustHash(t *testing.T, s string) chainhash.Hash {
	t.Helper()
	h, err := chainhash.NewHashFromStr(s)
	if err != nil {
		t.Fatal(err)
	}
	return *h
}

// Mainnet block 100000: four transactions and a known merkle root.
func TestMerkleBranchBlock100000(t *testing.T) {
	coinbase := mustHash(t, "8c14f0db3df150123e6f3dbbf30f8b955a8249b62ac1d1ff16284aefa3d06d87")
	others := []chainhash.Hash{
		mustHash(t, "fff2525b8931402dd09222c50775608f75787bd2b87e56995a7bdd30f79702c4"),
		mustHash(t, "6359f0868171b1d194cbee1af2f16ea598ae8fad666d9b012c8ed2b79a236ec4"),
		mustHash(t, "e9a66845e05d5abc0ad04ec80f774a7e585c6e8db975962d069a522137b80c1d"),
	}
	branch := MerkleBranch(others)
	if len(branch) != 2 {
		t.Fatalf("branch has %d hashes, want 2", len(branch))
	}
	const want = "f3e94742aca4b5ef85488dc37c06c3282295ffec960994b2c0d5ac2a25a95766"
	if got := MerkleRoot(coinbase, branch).String(); got != want {
		t.Errorf("root = %s, want %s", got, want)
	}
}

func TestMerkleBranchSizes(t *testing.T) {
	cb := chainhash.DoubleHashH([]byte("coinbase"))
	if got := MerkleRoot(cb, MerkleBranch(nil)); got != cb {
		t.Error("coinbase alone: the root is the coinbase txid")
	}
	// Odd counts duplicate the last hash of a level.
	tx := chainhash.DoubleHashH([]byte("tx"))
	tx2 := chainhash.DoubleHashH([]byte("tx2"))
	want := hashPair(hashPair(cb, tx), hashPair(tx2, tx2))
	if got := MerkleRoot(cb, MerkleBranch([]chainhash.Hash{tx, tx2})); got != want {
		t.Errorf("three leaves: %s, want %s", got, want)
	}
}

func TestBuildTemplate(t *testing.T) {
	info := &pb.ChainInfo{Network: "regtest", Height: 41, BestHash: "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206",
		Bits: 0x207fffff, MedianTime: 2000}
	txid := "e9a66845e05d5abc0ad04ec80f774a7e585c6e8db975962d069a522137b80c1d"
	tmpl, err := BuildTemplate(info, []string{txid}, time.Unix(1000, 0), 1.5)
	if err != nil {
		t.Fatal(err)
	}
	if tmpl.Height != 42 || tmpl.PrevHash != info.BestHash || tmpl.Bits != "207fffff" || tmpl.CurTime != 2001 {
		t.Errorf("template = %+v", tmpl)
	}
	// One other transaction: the branch is that txid, in internal order.
	if len(tmpl.MerkleBranch) != 1 || tmpl.MerkleBranch[0] != "1d0cb83721529a062d9675b98d6e5c587e4a770fc84ed00abc5a5de04568a6e9" {
		t.Errorf("branch = %v", tmpl.MerkleBranch)
	}
	if _, err := BuildTemplate(info, []string{"zz"}, time.Now(), 0); err == nil {
		t.Error("bad txid accepted")
	}
	if _, err := BuildTemplate(&pb.ChainInfo{}, nil, time.Now(), 0); err == nil {
		t.Error("empty chain info accepted")
	}
}

// The shipped config.toml must decode into Config (an integer fee too).
func TestShippedConfig(t *testing.T) {
	var cfg Config
	if err := sdk.LoadConfig("config.toml", &cfg); err != nil {
		t.Fatal(err)
	}
}
