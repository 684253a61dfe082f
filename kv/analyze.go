package kv

import (
	"context"
	"time"

	"github.com/heapkv/heapkv/table"
)

// Analyze refreshes the planner's statistics of the named keyspace ("" or
// "default" for the default one), as PostgreSQL's ANALYZE: its heap pages,
// its keys, a sample of them, and how closely key order follows heap
// order. It reads the whole index and no heap page. A Query whose Scan is
// ScanAuto runs it itself when the keyspace has none yet or has changed by
// more than autoAnalyzeBase + autoAnalyzeScale of its rows since.
func (db *DB) Analyze(keyspace string) error {
	tx, err := db.Begin(context.Background(), TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := tx.begin(false); err != nil {
		return err
	}
	defer tx.end()
	ks, err := tx.lookupKeyspace(keyspace)
	if err != nil {
		return err
	}
	return db.analyze(ks)
}

// The automatic refresh's threshold, PostgreSQL's autovacuum_analyze
// threshold and scale factor.
const (
	autoAnalyzeBase  = 50
	autoAnalyzeScale = 0.1
)

// analyze computes ks's statistics and publishes them.
func (db *DB) analyze(ks *keyspace) error {
	ks.analyzeMu.Lock()
	defer ks.analyzeMu.Unlock()
	changed := ks.counts.changed.Load()
	st, err := ks.t.Analyze(uint64(time.Now().UnixNano()))
	if err != nil {
		return db.stopped(err)
	}
	ks.stats.Store(&st)
	ks.counts.changed.Add(-changed)
	return nil
}

// statsFor returns ks's statistics, refreshing them first when they are
// missing or stale.
func (db *DB) statsFor(ks *keyspace) (*table.Statistics, error) {
	st := ks.stats.Load()
	if st != nil && float64(ks.counts.changed.Load()) <= autoAnalyzeBase+autoAnalyzeScale*float64(st.Rows) {
		return st, nil
	}
	if err := db.analyze(ks); err != nil {
		return nil, err
	}
	return ks.stats.Load(), nil
}
