package drivers

import (
	"errors"

	"github.com/dgraph-io/badger/v4"
	"github.com/heapkv/heapkv/bench/ycsb"
)

// Badger: SyncWrites=true vs the default (false); the block cache is the
// cache budget. Its memtables (64 MiB x 5 by default) come on top.
func Badger() ycsb.Driver {
	return ycsb.Driver{Name: "badger", CacheNote: "block cache (memtables extra)", Open: openBadger}
}

type badgerDB struct{ db *badger.DB }

func openBadger(cfg ycsb.Config) (ycsb.DB, error) {
	opts := badger.DefaultOptions(cfg.Dir).
		WithSyncWrites(cfg.Durability == ycsb.Durable).
		WithLogger(nil)
	if cfg.CacheBytes > 0 {
		opts = opts.WithBlockCacheSize(cfg.CacheBytes)
	}
	db, err := badger.Open(opts)
	if err != nil {
		return nil, err
	}
	return &badgerDB{db: db}, nil
}

func (b *badgerDB) Read(key []byte) (v []byte, err error) {
	err = b.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if err != nil {
			return err
		}
		v, err = item.ValueCopy(nil)
		return err
	})
	return v, err
}

// rmw retries ErrConflict: badger's SSI aborts the later of two
// transactions that touched the same key.
func (b *badgerDB) rmw(key []byte, modify func([]byte) []byte) (old []byte, err error) {
	for attempt := 0; ; attempt++ {
		err = b.db.Update(func(txn *badger.Txn) error {
			item, err := txn.Get(key)
			if err != nil {
				return err
			}
			if old, err = item.ValueCopy(nil); err != nil {
				return err
			}
			return txn.Set(key, modify(old))
		})
		if errors.Is(err, badger.ErrConflict) && attempt < 100 {
			continue
		}
		return old, err
	}
}

func (b *badgerDB) Update(key []byte, modify func([]byte) []byte) error {
	_, err := b.rmw(key, modify)
	return err
}

func (b *badgerDB) ReadModifyWrite(key []byte, modify func([]byte) []byte) ([]byte, error) {
	return b.rmw(key, modify)
}

func (b *badgerDB) Insert(key, value []byte) error {
	return b.db.Update(func(txn *badger.Txn) error { return txn.Set(key, value) })
}

func (b *badgerDB) Scan(start []byte, count int) (n int, err error) {
	err = b.db.View(func(txn *badger.Txn) error {
		o := badger.DefaultIteratorOptions
		o.PrefetchSize = min(count, 100)
		it := txn.NewIterator(o)
		defer it.Close()
		var rec []byte
		for it.Seek(start); it.Valid() && n < count; it.Next() {
			// The value is valid only inside the callback.
			if err := it.Item().Value(func(v []byte) error { rec = append(rec[:0], v...); return nil }); err != nil {
				return err
			}
			n++
		}
		_ = rec
		return nil
	})
	return n, err
}

func (b *badgerDB) Close() error { return b.db.Close() }
