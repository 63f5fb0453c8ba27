package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

var blocksBucket = []byte("blocks")

// BlockRecord is what the logger keeps about one block.
type BlockRecord struct {
	Height  uint64 `json:"height"`
	Hash    string `json:"hash"`
	Time    int64  `json:"time"` // header time, unix seconds
	TxCount int    `json:"tx_count"`
}

// Store is the logger's own bbolt database, one record per height of the
// best chain as the logger last saw it.
type Store struct {
	db *bolt.DB
}

// NewStore keeps its records in db (sdk.OpenDB), creating its bucket.
func NewStore(db *bolt.DB) (*Store, error) {
	err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(blocksBucket)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", db.Path(), err)
	}
	return &Store{db: db}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

func heightKey(h uint64) []byte { return binary.BigEndian.AppendUint64(nil, h) }

// Put records a connected block; a block at the same height (after a
// reorg) replaces the old one.
func (s *Store) Put(r BlockRecord) error {
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(blocksBucket).Put(heightKey(r.Height), v)
	})
}

// Get is the record at height, if any.
func (s *Store) Get(height uint64) (BlockRecord, bool, error) {
	var r BlockRecord
	var found bool
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(blocksBucket).Get(heightKey(height))
		if v == nil {
			return nil
		}
		found = true
		return json.Unmarshal(v, &r)
	})
	return r, found, err
}

// Disconnect forgets the block at height if it is the one with hash; it
// reports whether it did.
func (s *Store) Disconnect(height uint64, hash string) (bool, error) {
	var removed bool
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(blocksBucket)
		v := b.Get(heightKey(height))
		if v == nil {
			return nil
		}
		var r BlockRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return err
		}
		if r.Hash != hash {
			return nil
		}
		removed = true
		return b.Delete(heightKey(height))
	})
	return removed, err
}

// Recent is up to n records, highest first.
func (s *Store) Recent(n int) ([]BlockRecord, error) {
	var out []BlockRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(blocksBucket).Cursor()
		for k, v := c.Last(); k != nil && len(out) < n; k, v = c.Prev() {
			var r BlockRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("record %x: %w", k, err)
			}
			out = append(out, r)
		}
		return nil
	})
	return out, err
}
