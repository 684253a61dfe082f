// Package table is the access layer for a keyspace: one heap relation
// (package heap) and one B+tree relation (package btree) used as a pair.
// It owns every operation on that pair: fetch the version a snapshot sees
// (Get), insert or update (Put), delete (Delete), lock a row (LockRow),
// range scan (Scan), and the walk over the newest versions that the
// catalog's orphan sweep needs (ForEachNewest); pruning, vacuum, cluster
// and bulk load belong here when they come. It plays the part of
// PostgreSQL's heapam.c entry points with the index maintenance of
// execIndexing.c: heap_insert, heap_update, heap_delete and
// heap_lock_tuple.
//
// The layer above (kv) keeps what a transaction is: its isolation level,
// which snapshot each statement uses, what a failure does to the
// transaction, retries and two-phase commit. A table call gets that as a
// Writer (the transaction, a Snapshot function called once per attempt,
// whether a conflict under Read Committed waits and goes ahead) or as the
// snapshot itself for reads.
//
// # Structure
//
// The heap holds every version of every row; a version points back at the
// one it replaced (its prev link), so a key's chain runs newest to oldest.
// The B+tree has one entry per key, pointing at the chain's newest version
// (its entry point). Nothing else joins the two: heap and btree do not
// import each other, and only this package knows that a key's index entry
// and its heap chain belong together.
//
//	B+tree entry "k" --> version 3 (xmin 30) --prev--> version 2 --prev--> version 1
//
// # Rules
//
// Reads and writes follow these rules; a change to one changes this text
// in the same commit.
//
//  1. A read takes its snapshot before it reads the index entry (the caller
//     passes the snapshot in, taken first). An entry read after the
//     snapshot is at least as new as it, so the walk from the entry reaches
//     the version the snapshot sees. Taken after the lookup, a snapshot
//     could see an update commit whose new version the looked-up entry
//     predates, and an existing row would read as not found. A scan keeps
//     one snapshot for all its keys.
//  2. A read looks the key up in the B+tree and walks the chain with the
//     snapshot (heap.Get, judging each version with txn.Judge). Readers
//     never wait for writers, and writers never wait for readers.
//  3. A write (Put, Delete, LockRow) takes a snapshot, looks the key up,
//     finds the newest version that did not abort (heap.Newest) and asks
//     txn.CheckWrite about it. If the version's inserter aborted after
//     Newest passed it, CheckWrite says the row is free but the version is
//     not the row: the one below it is, and the write looks again (judged,
//     it would read as a missing row). Otherwise:
//  4. another running transaction holds the version: wait for that xid
//     (the lock manager detects deadlocks) and look again;
//  5. a transaction the snapshot does not see changed it and committed:
//     under Repeatable Read, ErrSerialization (first updater wins); under
//     Read Committed, wait for that xid (its lock goes after it left the
//     ProcArray, so the next snapshot sees the commit) and look again with
//     a new snapshot;
//  6. otherwise claim it: set the version's xmax to our xid with a
//     compare-and-set under its page lock (heap.SetXmax; a row lock sets
//     it lock-only), insert the new version pointing back at it, and
//     repoint the B+tree entry with a compare-and-set (btree.Repoint). A
//     key with no entry gets a new version with no prev link and a new
//     entry (btree.Insert). Losing any of these races means looking again;
//     a version inserted before a lost race is marked deleted by our own
//     xid at once, so it is garbage to everyone.
//  7. Writers of one key therefore serialise on the version's xmax and the
//     index entry. A Put that fails part-way may have set the old
//     version's xmax without inserting the new one: the caller must roll
//     the transaction back (kv does: "current transaction is aborted").
//
// # Lock order
//
// This package takes no lock of its own. Every page lock and latch is
// taken and released inside one heap or btree call, so a table operation
// holds at most one page lock at a time and none between calls: a wait
// for another transaction's xid (rules 4 and 5) holds no page lock, no
// latch and no pin. Below this package: heap's and btree's lock orders,
// then pagecache, then xlog; the transaction's xid lock (txn) is only
// waited on with nothing held.
//
// # Memory
//
// Pages live in the shared buffers (shared_buffers); a call pins them only
// while it runs. An Iterator keeps the B+tree iterator's batch of keys and
// TIDs (a leaf page's worth, btree's Memory section) and one value buffer
// that grows to the largest value returned. Get, Put and LockRow allocate
// only the values they return. No setting bounds anything here yet;
// work_mem will bound the sorts of the scan plans above.
//
// # Departures from PostgreSQL
//
//   - One index entry per key, repointed at the newest version, instead of
//     one index entry per version (or per HOT chain). So readers walk
//     chains newest to oldest along prev links, where PostgreSQL walks
//     t_ctid links from old to new.
//   - Uniqueness is the B+tree's insert racing with another writer's
//     (rule 6), not _bt_check_unique's wait on a conflicting inserter.
//   - A row lock is a lock-only xmax on the version, held by one
//     transaction at a time: there is no MultiXact, so a second locker
//     waits for the first (FOR UPDATE only, no FOR SHARE).
//   - The update of a row and its index entry is one operation of this
//     package, not a heap update followed by the executor's index
//     inserts.
package table
