package drivers

import (
	"context"
	"errors"
	"fmt"

	"github.com/heapkv/heapkv/bench/ycsb"
	"github.com/heapkv/heapkv/kv"
)

// Heapkv is the engine under development: synchronous_commit on/off for
// durable/relaxed, shared_buffers = the cache budget.
func Heapkv() ycsb.Driver {
	return ycsb.Driver{Name: "heapkv", CacheNote: "shared_buffers", Open: openHeapkv}
}

type heapkvDB struct {
	db    *kv.DB
	start kv.Stats // at Open, so Report shows what the run did
}

func openHeapkv(cfg ycsb.Config) (ycsb.DB, error) {
	var o kv.Options
	sync := "on"
	if cfg.Durability == ycsb.Relaxed {
		sync = "off"
	}
	if err := o.Set("synchronous_commit", sync); err != nil {
		return nil, err
	}
	if cfg.CacheBytes > 0 {
		if err := o.Set("shared_buffers", fmt.Sprintf("%dkB", cfg.CacheBytes>>10)); err != nil {
			return nil, err
		}
	}
	db, err := kv.Open(cfg.Dir, &o)
	if err != nil {
		return nil, err
	}
	start, _ := db.Stats() // zero counters if it fails: Report is best effort
	return &heapkvDB{db: db, start: start}, nil
}

func (h *heapkvDB) Read(key []byte) ([]byte, error) {
	tx, err := h.db.Begin(context.Background(), kv.TxOptions{ReadOnly: true, Isolation: kv.ReadCommitted})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	return tx.Get(key)
}

// rmw locks the row (GetForUpdate) at Read Committed, as PostgreSQL's
// SELECT ... FOR UPDATE would, and retries serialization failures and
// deadlocks.
func (h *heapkvDB) rmw(key []byte, modify func([]byte) []byte) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		old, err := h.rmwOnce(key, modify)
		if (errors.Is(err, kv.ErrSerialization) || errors.Is(err, kv.ErrDeadlock)) && attempt < 100 {
			continue
		}
		return old, err
	}
}

func (h *heapkvDB) rmwOnce(key []byte, modify func([]byte) []byte) ([]byte, error) {
	tx, err := h.db.Begin(context.Background(), kv.TxOptions{Isolation: kv.ReadCommitted})
	if err != nil {
		return nil, err
	}
	old, err := tx.GetForUpdate(key)
	if err == nil {
		err = tx.Put(key, modify(old))
	}
	if err != nil {
		tx.Rollback()
		return nil, err
	}
	return old, tx.Commit()
}

func (h *heapkvDB) Update(key []byte, modify func([]byte) []byte) error {
	_, err := h.rmw(key, modify)
	return err
}

func (h *heapkvDB) ReadModifyWrite(key []byte, modify func([]byte) []byte) ([]byte, error) {
	return h.rmw(key, modify)
}

func (h *heapkvDB) Insert(key, value []byte) error { return h.db.Put(key, value) }

func (h *heapkvDB) Scan(start []byte, count int) (int, error) {
	tx, err := h.db.Begin(context.Background(), kv.TxOptions{ReadOnly: true})
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	it := tx.Scan(start, nil, &kv.ScanOptions{Limit: count})
	n, bytes := 0, 0
	for it.Next() {
		n++
		bytes += len(it.Value())
	}
	if err := it.Err(); err != nil {
		it.Close()
		return n, err
	}
	_ = bytes
	return n, it.Close()
}

func (h *heapkvDB) Close() error { return h.db.Close() }

// Report says what heapkv did since Open: the buffer hit ratio, pages read
// and written (by backends, bgwriter and checkpoints), WAL volume and
// full-page images, CLOG reads and lock waits.
func (h *heapkvDB) Report() string {
	s, err := h.db.Stats()
	if err != nil {
		return "stats: " + err.Error()
	}
	b := h.start
	hit, read := s.Database.BlocksHit-b.Database.BlocksHit, s.Database.BlocksRead-b.Database.BlocksRead
	ratio := 0.0
	if hit+read > 0 {
		ratio = 100 * float64(hit) / float64(hit+read)
	}
	return fmt.Sprintf("buffers hit %.1f%% (%d read), written by backends %d / bgwriter %d / checkpoints %d (%d done); "+
		"WAL %d records, %.1f MiB, %d full-page images, %d syncs; CLOG reads %d; lock waits %d",
		ratio, read, s.BgWriter.BuffersBackend-b.BgWriter.BuffersBackend, s.BgWriter.BuffersClean-b.BgWriter.BuffersClean,
		s.BgWriter.BuffersCheckpoint-b.BgWriter.BuffersCheckpoint, s.BgWriter.CheckpointsDone-b.BgWriter.CheckpointsDone,
		s.WAL.Records-b.WAL.Records, float64(s.WAL.Bytes-b.WAL.Bytes)/(1<<20), s.WAL.FPI-b.WAL.FPI, s.WAL.Syncs-b.WAL.Syncs,
		s.Transactions.CLOGReads-b.Transactions.CLOGReads, s.Transactions.LockWaits-b.Transactions.LockWaits)
}
