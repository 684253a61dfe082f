package kv

import (
	"errors"
	"fmt"
	"sort"
	"sync/atomic"
	"time"
)

// Stats are the database's counters since Open, grouped as PostgreSQL's
// statistics views group them.
type Stats struct {
	Database     DatabaseStats
	WAL          WALStats
	BgWriter     BgWriterStats
	Buffers      BufferStats
	Transactions TransactionStats
	Keyspaces    []KeyspaceStats
}

// DatabaseStats is pg_stat_database.
type DatabaseStats struct {
	Commits    uint64 // xact_commit
	Rollbacks  uint64 // xact_rollback
	BlocksRead uint64 // blks_read
	BlocksHit  uint64 // blks_hit
	TempFiles  uint64 // temp_files
	TempBytes  uint64 // temp_bytes
	Deadlocks  uint64 // deadlocks
	Conflicts  uint64 // serialization failures
	// LockTimeouts counts lock waits that lock_timeout ended.
	LockTimeouts uint64
}

// WALStats is pg_stat_wal.
type WALStats struct {
	Records     uint64
	FPI         uint64
	Bytes       uint64
	BuffersFull uint64
	Writes      uint64
	Syncs       uint64
	WriteTime   time.Duration
	SyncTime    time.Duration
}

// BgWriterStats is pg_stat_bgwriter and pg_stat_checkpointer.
type BgWriterStats struct {
	CheckpointsDone   uint64 // checkpoints completed
	BuffersCheckpoint uint64 // written by checkpoints
	BuffersClean      uint64 // written by the background writer
	MaxWrittenClean   uint64 // bgwriter rounds stopped by bgwriter_lru_maxpages
	BuffersBackend    uint64 // written by transactions to free a buffer
	BuffersAlloc      uint64 // buffers assigned to a page
}

// BufferStats describes the shared buffer pool.
type BufferStats struct {
	SharedBuffers    int64 // bytes
	NBuffers         int
	Evictions        uint64
	RingReuses       uint64
	ChecksumFailures uint64
}

// TransactionStats describes the transaction manager.
type TransactionStats struct {
	Active      int
	NextXID     uint64
	LockWaits   uint64
	CLOGHits    uint64
	CLOGReads   uint64
	CLOGWrites  uint64
	CLOGBuffers int64 // bytes
}

// KeyspaceStats is pg_stat_user_tables, reduced: version counts estimated
// from the commits and rollbacks since Open, as n_live_tup and n_dead_tup.
type KeyspaceStats struct {
	Name         string
	LiveVersions int64
	DeadVersions int64
	Inserts      uint64 // row versions written
	HeapPages    uint64 // pages the heap file has
}

// ksCounters are a keyspace's estimated version counts.
type ksCounters struct {
	live, dead atomic.Int64
	// changed counts rows inserted, updated or deleted since the last
	// Analyze, for the automatic refresh of the planner's statistics.
	changed atomic.Int64
}

// Stats returns the counters.
func (db *DB) Stats() (Stats, error) {
	if err := db.enter(); err != nil {
		return Stats{}, err
	}
	defer db.leave()
	ps := db.pool.Stats()
	ws := db.wal.Stats()
	ts := db.txm.Stats()
	tmp := db.temp.Stats()
	s := Stats{
		Database: DatabaseStats{
			Commits: ts.Commits, Rollbacks: ts.Rollbacks,
			BlocksRead: ps.Reads, BlocksHit: ps.Hits,
			TempFiles: tmp.Files, TempBytes: tmp.Bytes,
			Deadlocks: db.stats.deadlocks.Load(), Conflicts: db.stats.conflicts.Load(),
			LockTimeouts: db.stats.lockTimeouts.Load(),
		},
		WAL: WALStats(ws),
		BgWriter: BgWriterStats{
			CheckpointsDone: ps.Checkpoints, BuffersCheckpoint: ps.WritesCheckpoint, BuffersClean: ps.WritesBgWriter,
			MaxWrittenClean: ps.MaxWrittenClean, BuffersBackend: ps.WritesBackend, BuffersAlloc: ps.Allocs,
		},
		Buffers: BufferStats{
			SharedBuffers: db.cfg.SharedBuffers, NBuffers: ps.NBuffers, Evictions: ps.Evictions,
			RingReuses: ps.RingReuses, ChecksumFailures: ps.ChecksumFailures,
		},
		Transactions: TransactionStats{
			Active: ts.Active, NextXID: uint64(ts.NextXID), LockWaits: ts.Locks.Waits,
			CLOGHits: ts.CLOG.Hits, CLOGReads: ts.CLOG.Reads, CLOGWrites: ts.CLOG.Writes,
			CLOGBuffers: db.cfg.TransactionBuffers,
		},
	}
	db.ksMu.Lock()
	for _, ks := range db.keyspaces {
		if ks == db.catalog {
			continue
		}
		ts := ks.t.Stats()
		s.Keyspaces = append(s.Keyspaces, KeyspaceStats{
			Name: ks.name, LiveVersions: ks.counts.live.Load(), DeadVersions: ks.counts.dead.Load(),
			Inserts: ts.Inserts, HeapPages: ts.HeapPages,
		})
	}
	db.ksMu.Unlock()
	sort.Slice(s.Keyspaces, func(i, j int) bool { return s.Keyspaces[i].Name < s.Keyspaces[j].Name })
	return s, nil
}

// Check runs the verifiers over every relation (table.Check: heap.Check
// and btree.Check, like PostgreSQL's amcheck) and returns every problem found,
// joined; nil means all verified.
func (db *DB) Check() error {
	if err := db.enter(); err != nil {
		return err
	}
	defer db.leave()
	var errs []error
	db.ksMu.Lock()
	spaces := make([]*keyspace, 0, len(db.keyspaces))
	for _, ks := range db.keyspaces {
		spaces = append(spaces, ks)
	}
	db.ksMu.Unlock()
	// Named keyspaces not opened yet are opened through the catalog.
	tx, err := db.Begin(nil, TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	names, err := tx.Keyspaces()
	if err != nil {
		errs = append(errs, err)
	}
	for _, n := range names {
		if ks, err := tx.lookupKeyspace(n); err != nil {
			errs = append(errs, err)
		} else {
			spaces = append(spaces, ks)
		}
	}
	tx.Rollback()
	seen := map[*keyspace]bool{}
	for _, ks := range spaces {
		if seen[ks] {
			continue
		}
		seen[ks] = true
		name := ks.name
		if name == "" {
			name = "(catalog)"
		}
		heapErr, indexErr := ks.t.Check()
		if heapErr != nil {
			errs = append(errs, fmt.Errorf("keyspace %s heap (relation %d): %w", name, ks.t.HeapRel(), heapErr))
		}
		if indexErr != nil {
			errs = append(errs, fmt.Errorf("keyspace %s index (relation %d): %w", name, ks.t.IndexRel(), indexErr))
		}
	}
	return errors.Join(errs...)
}
