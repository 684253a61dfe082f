// Package kv is heapkv's public API: an embeddable, transactional key-value
// store built on PostgreSQL's memory architecture.
//
//	db, err := kv.Open(dir, nil) // defaults, then DIR/heapkv.conf
//	defer db.Close()
//	err = db.Update(ctx, func(tx *kv.Tx) error { return tx.Put(k, v) })
//
// # Structure
//
// Settings are resolved once (settings.go): compiled-in defaults, which
// are the subsystems' own named constants, then DIR/heapkv.conf, then the
// Options the program set; the result yields one finished Config per
// subsystem (poolConfig, walConfig, txnConfig), where PostgreSQL spellings
// that differ from a subsystem's zero-means-default are translated.
//
// Open wires the subsystems: the write-ahead log (xlog), the shared buffer
// pool (pagecache) over the relation files, given the log's Flush to call
// before writing a dirty page, the transaction manager (txn) with its
// commit log, which logs through the log and is then handed to it as the
// count of active transactions (SetActiveTransactions, for
// commit_siblings), and the table layer, whose two access methods, heap
// and btree, register their WAL redo (table.RegisterRedo).
// Then WAL recovery replays from the last checkpoint, the transaction
// manager aborts what never finished and restores prepared transactions,
// and the catalog is opened.
//
// A keyspace is a table (package table): a heap relation (every version of
// every row, newest to oldest along prev links) plus a B+tree relation
// with one entry per key pointing at the newest version. The catalog,
// itself a keyspace with fixed relations 1 and 2, maps keyspace names to
// their relations, so creating and dropping keyspaces is transactional;
// the default keyspace is 3 and 4.
//
// Every operation on a keyspace's pair of relations (a read's chain walk,
// a write's wait for the row's holder, the claim of its xmax, the index
// repoint) is package table's; its doc.go lists the rules. kv decides
// which snapshot an operation uses: Repeatable Read takes one for the
// transaction, Read Committed one per operation (a scan keeps the one it
// started with, and a write may take a new one per attempt), and what a
// failure means for the transaction (Tx.fail). A transaction that meets
// ErrSerialization or ErrDeadlock is rolled back on the spot; Update
// retries it. Any other failure of a statement (an I/O error, a canceled
// or timed-out lock wait) may have come after the statement began
// changing a row, so it rolls the transaction back too and leaves it
// aborted: every later call but Rollback returns ErrTxAborted, and Commit
// rolls back (PostgreSQL's "current transaction is aborted"). ErrNotFound,
// the keyspace errors and validation errors (empty or oversized key or
// value, checked before anything changes) leave the transaction as it was.
//
// # Formats
//
// The files of the data directory are listed in DESIGN.md §2. This package
// owns three: DIR/format (drawn in datadir.go), DIR/creating, and
// DIR/heapkv.conf (PostgreSQL's syntax, settings.go); the catalog's entries
// are drawn in catalog.go.
//
// # Rules
//
// DIR/creating is written before any other engine file when a directory is
// created and removed after DIR/format, which is written last. Open clears
// a directory without a format file only if the creating marker proves it
// is our own interrupted creation; engine files with neither are refused
// with ErrCorrupt naming the missing file, and nothing is deleted
// (datadir.go). DIR/LOCK holds the pid of the process that has the
// directory (flock); relation files that no committed or prepared catalog
// entry names (a dropped keyspace, or a create whose transaction aborted)
// are removed at Open.
//
// One base.Halt per open database is handed to the buffer pool, the WAL and
// the transaction manager. A failed fsync of the WAL, the CLOG or a data
// file, or a failed WAL or control-file write, stops it (PostgreSQL
// PANICs: the kernel may have dropped what it had acknowledged). From then
// on every call returns ErrEngineStopped wrapping the first cause (an error
// a subsystem returns on the way is replaced by the Halt's, DB.stopped),
// lock and group-commit waiters are released with it, no page, CLOG or
// control file is written, and Close releases the directory without a
// checkpoint. A commit caught in the stop has an unknown outcome until the
// next Open, whose recovery decides it from the WAL. A failed Open releases
// the log the same way (xlog.Log.Abandon): it never checkpoints a state it
// did not finish recovering.
//
// # Lock order
//
// A DB is safe for concurrent use; a Tx and its Iterators belong to one
// goroutine. Close waits for calls in progress (every call holds
// DB.closeMu in share mode while it runs) and then refuses new ones with
// ErrClosed. DB.ksMu guards the map of open keyspaces; under it only a
// keyspace's relations are opened, and at Close their free space maps
// saved. Lock order
// below this package: see table, then heap and btree, txn, xlog and
// pagecache.
//
// # Memory
//
// A DB holds its settings, one handle per keyspace opened since Open, and
// the counters of Stats; the buffers are the subsystems' (shared_buffers,
// wal_buffers, transaction_buffers). A Tx holds its snapshot (as long as
// the list of running transactions) and a count per keyspace it wrote; an
// Iterator holds its own copy of the snapshot and one leaf's batch of keys.
// Values returned are copies the caller owns.
//
// # Departures from PostgreSQL
//
//   - Keyspaces instead of tables: a keyspace is one key-value relation with
//     its index, created and dropped transactionally through the catalog.
//   - Update and View retry serialization failures and deadlocks
//     themselves, a bounded number of times, with backoff.
//   - A statement's failure rolls the transaction back at once (PostgreSQL
//     also releases its locks at once, but keeps the transaction block
//     until ROLLBACK, which is what ErrTxAborted stands for).
//   - Prepare with a gid in use leaves the transaction usable (PostgreSQL
//     aborts it).
package kv
