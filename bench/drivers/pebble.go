package drivers

import (
	"bytes"

	"github.com/cockroachdb/pebble/v2"
	"github.com/heapkv/heapkv/bench/ycsb"
)

// Pebble: pebble.Sync/NoSync per write for durable/relaxed; the block
// cache is the cache budget (memtables come on top: 2 x 4 MiB default).
func Pebble() ycsb.Driver {
	return ycsb.Driver{Name: "pebble", CacheNote: "block cache", Open: openPebble}
}

type pebbleDB struct {
	db    *pebble.DB
	wo    *pebble.WriteOptions
	locks *keyLocks
}

type quietLogger struct{}

func (quietLogger) Infof(string, ...any)         {}
func (quietLogger) Errorf(string, ...any)        {}
func (quietLogger) Fatalf(f string, args ...any) { panic(pebbleFatal{f, args}) }

type pebbleFatal struct {
	f    string
	args []any
}

func openPebble(cfg ycsb.Config) (ycsb.DB, error) {
	cache := pebble.NewCache(max(cfg.CacheBytes, 1<<20))
	defer cache.Unref()
	db, err := pebble.Open(cfg.Dir, &pebble.Options{Cache: cache, Logger: quietLogger{}})
	if err != nil {
		return nil, err
	}
	wo := pebble.Sync
	if cfg.Durability == ycsb.Relaxed {
		wo = pebble.NoSync
	}
	return &pebbleDB{db: db, wo: wo, locks: newKeyLocks()}, nil
}

func (p *pebbleDB) Read(key []byte) ([]byte, error) {
	v, closer, err := p.db.Get(key)
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	return bytes.Clone(v), nil
}

// rmw holds the key's stripe lock across the read and the write: pebble
// has no transactions, so this is what makes the update atomic.
func (p *pebbleDB) rmw(key []byte, modify func([]byte) []byte) ([]byte, error) {
	mu := p.locks.of(key)
	mu.Lock()
	defer mu.Unlock()
	old, err := p.Read(key)
	if err != nil {
		return nil, err
	}
	return old, p.db.Set(key, modify(old), p.wo)
}

func (p *pebbleDB) Update(key []byte, modify func([]byte) []byte) error {
	_, err := p.rmw(key, modify)
	return err
}

func (p *pebbleDB) ReadModifyWrite(key []byte, modify func([]byte) []byte) ([]byte, error) {
	return p.rmw(key, modify)
}

func (p *pebbleDB) Insert(key, value []byte) error { return p.db.Set(key, value, p.wo) }

func (p *pebbleDB) Scan(start []byte, count int) (int, error) {
	it, err := p.db.NewIter(&pebble.IterOptions{LowerBound: start})
	if err != nil {
		return 0, err
	}
	n := 0
	var rec []byte
	for ok := it.First(); ok && n < count; ok = it.Next() {
		rec = append(rec[:0], it.Value()...) // valid only until Next
		n++
	}
	_ = rec
	if err := it.Error(); err != nil {
		it.Close()
		return n, err
	}
	return n, it.Close()
}

func (p *pebbleDB) Close() error { return p.db.Close() }
