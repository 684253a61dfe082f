// Package kv is heapkv's public API: an embeddable, transactional key-value
// store built on PostgreSQL's memory architecture.
//
//	db, err := kv.Open(dir, nil) // defaults, then DIR/heapkv.conf
//	defer db.Close()
//	err = db.Update(ctx, func(tx *kv.Tx) error { return tx.Put(k, v) })
//
// # How the pieces fit
//
// Open wires the subsystems, bottom up: the shared buffer pool
// (pagecache) over the relation files, the write-ahead log (xlog) whose
// Flush the pool calls before writing a dirty page, the transaction manager
// (txn) with its commit log, and the table layer, whose two access
// methods, heap and btree, register their WAL redo (table.RegisterRedo).
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
// # Reads and writes
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
// # Files
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
// # The fatal state
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
// # Concurrency
//
// A DB is safe for concurrent use; a Tx and its Iterators belong to one
// goroutine. Close waits for calls in progress (every call holds
// DB.closeMu in share mode while it runs) and then refuses new ones with
// ErrClosed. Lock order below this package: see table, then heap and
// btree, txn, xlog and pagecache.
package kv
