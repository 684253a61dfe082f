package drivers

import (
	"bytes"
	"errors"
	"path/filepath"

	"github.com/heapkv/heapkv/bench/ycsb"
	bolt "go.etcd.io/bbolt"
)

// Bbolt: default (fsync per commit) vs NoSync; no cache knob, it reads
// through mmap and the OS page cache.
func Bbolt() ycsb.Driver {
	return ycsb.Driver{Name: "bbolt", CacheNote: "none (mmap, OS page cache)", Open: openBbolt}
}

var boltBucket = []byte("usertable")

var errBoltNotFound = errors.New("bbolt: key not found")

type boltDB struct{ db *bolt.DB }

func openBbolt(cfg ycsb.Config) (ycsb.DB, error) {
	db, err := bolt.Open(filepath.Join(cfg.Dir, "bolt.db"), 0o600,
		&bolt.Options{NoSync: cfg.Durability == ycsb.Relaxed})
	if err != nil {
		return nil, err
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(boltBucket)
		return err
	}); err != nil {
		db.Close()
		return nil, err
	}
	return &boltDB{db: db}, nil
}

func (b *boltDB) Read(key []byte) (v []byte, err error) {
	err = b.db.View(func(tx *bolt.Tx) error {
		got := tx.Bucket(boltBucket).Get(key)
		if got == nil {
			return errBoltNotFound
		}
		v = bytes.Clone(got) // got is valid only inside the transaction
		return nil
	})
	return v, err
}

func (b *boltDB) rmw(key []byte, modify func([]byte) []byte) (old []byte, err error) {
	err = b.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(boltBucket)
		got := bk.Get(key)
		if got == nil {
			return errBoltNotFound
		}
		old = bytes.Clone(got)
		return bk.Put(key, modify(old))
	})
	return old, err
}

func (b *boltDB) Update(key []byte, modify func([]byte) []byte) error {
	_, err := b.rmw(key, modify)
	return err
}

func (b *boltDB) ReadModifyWrite(key []byte, modify func([]byte) []byte) ([]byte, error) {
	return b.rmw(key, modify)
}

func (b *boltDB) Insert(key, value []byte) error {
	return b.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(boltBucket).Put(key, value) })
}

func (b *boltDB) Scan(start []byte, count int) (n int, err error) {
	err = b.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(boltBucket).Cursor()
		var rec []byte
		for k, v := c.Seek(start); k != nil && n < count; k, v = c.Next() {
			rec = append(rec[:0], v...) // v lives in the mmap only until the tx ends
			n++
		}
		_ = rec
		return nil
	})
	return n, err
}

func (b *boltDB) Close() error { return b.db.Close() }
