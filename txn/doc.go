// Package txn is heapkv's transaction manager: transaction ids, the commit
// log (CLOG), the ProcArray and its snapshots, visibility, the lock manager
// with its deadlock detector, savepoints and two-phase commit. It follows
// PostgreSQL's src/backend/access/transam (xact.c, clog.c, varsup.c,
// twophase.c), storage/ipc/procarray.c and storage/lmgr (lmgr.c,
// deadlock.c), with 64-bit xids that never wrap, so nothing ever needs
// freezing for correctness.
//
// # Transaction ids
//
// A transaction gets an xid only when it first writes (Tx.WriteXID); a
// read-only transaction never has one. Xids come from an atomic counter, with
// no lock on the hot path. The CLOG page that will hold an xid's status must
// exist before the xid does, so the first xid of each page (one in 32768)
// takes the slow path: under Manager.reserve it zeroes the page and logs and
// flushes a zero-page record. That record doubles as the reservation of the
// page's xids: after a crash the counter resumes past the highest page
// zeroed (or the checkpoint's NextXID), so no xid is ever handed out twice,
// even one that left no other trace.
//
// A savepoint's writes carry a subtransaction xid, assigned on its first
// write after the top-level xid (so it is the larger). Rolling back to a
// savepoint marks its subxids aborted in the CLOG and releases their locks;
// releasing a savepoint keeps them live; commit marks the top xid and every
// live subxid committed in one atomic CLOG change.
//
// # The commit log
//
// Two status bits per xid (in progress, committed, aborted, sub-committed),
// 32768 xids in an 8 KiB page, 32 pages in a segment file DIR/clog/XXXX,
// cached in an SLRU of CLOGBuffers slots of its own, separate from shared
// buffers, with LRU eviction and hit/read/write counters. For each group of
// 32 xids a slot remembers the highest commit-record LSN that set a status
// there: a page is written only after the WAL is flushed that far (WAL before
// data), and IsDurable(xid) compares that LSN with the flushed one, which
// decides whether a hint bit may record the commit. The SLRU's mutex is never
// held across I/O: a slot being read or written is marked so and waiters
// sleep on a condition variable. A page read from disk needs no check
// (every two bits are a status); Truncate removes only files named as
// segments are.
//
// # Commit, abort, and the checkpoint
//
//  1. Commit inserts the commit record (top xid, live subxids), waits for
//     it to be durable (group commit, unless synchronous commit is off),
//     sets the CLOG bits, leaves the ProcArray, then releases the xid locks,
//     waking waiters. In that order: a snapshot that no longer lists the xid
//     must find its outcome in the CLOG, and a woken waiter must too. If
//     the record's flush fails the outcome is unknown (see "The fatal
//     state").
//  2. From before the commit record is inserted until the CLOG bits are
//     set, the committer holds Manager.ckptDelay in share mode (PostgreSQL's
//     DELAY_CHKPT_START). The checkpoint hook runs once the redo point is
//     fixed and takes ckptDelay exclusively before it writes the CLOG: so a
//     commit whose record lies before the redo point, and is therefore not
//     replayed, is in the CLOG pages the checkpoint makes durable.
//  3. Abort inserts an abort record (not flushed), sets the CLOG bits, and
//     ends as commit does. A lost abort record costs nothing: recovery
//     aborts every transaction that never finished.
//  4. The checkpoint hook also records NextXID (after waiting out a
//     reservation in progress), the oldest xid running, and the prepared
//     transactions, in the checkpoint record's "txn" section. The oldest
//     running xid is taken before the CLOG is written: an abort whose
//     record lies before the redo point but whose bits are set after the
//     write ended after that moment, so its xid is at or above the oldest
//     and recovery (rule 5) marks it aborted. Taken after the write, such
//     an xid could be below it and stay "in progress" for ever.
//  5. Recovery replays zero-page, commit, abort, savepoint-abort, prepare
//     and prepared-commit/abort records into the CLOG; then Recovered sets
//     the counter, marks every xid from the checkpoint's oldest running one
//     up to the counter that is still in progress (and not prepared)
//     aborted, so no writer ever waits for a dead transaction, and restores
//     the prepared transactions into the ProcArray with their xid locks.
//
// # The fatal state
//
// The engine has one fatal state, a base.Halt shared by the WAL, the data
// files and this package (Config.Halt; a Manager without one makes its
// own). After a failed fsync nothing written since the last good one can be
// trusted, so the only way on is recovery from the WAL, as PostgreSQL
// PANICs. The rules of this package:
//
//  1. A failed fsync of a CLOG segment or its directory stops the Halt
//     and is sticky in the CLOG itself: every later page write, sync,
//     checkpoint and truncation fails, so the checkpoint hook fails and
//     the redo point never passes a commit whose CLOG bits did not reach
//     the disk. A page write that fails leaves the page dirty and is
//     retried; it is not fatal.
//  2. A commit (or prepare, or prepared decision) whose record was
//     inserted but whose flush failed has an unknown outcome: the record
//     may be durable. The Manager stops the Halt; the transaction keeps
//     its xid, unmarked in the CLOG, and its locks, and recovery decides.
//     A record that could not be inserted is not in the log: the
//     transaction aborts.
//  3. A CLOG update at the end of a transaction that fails stops the
//     Halt too (PostgreSQL's critical section): the xid leaves with no
//     outcome in memory.
//  4. Once the Halt has stopped, whoever stopped it, every lock waiter is
//     released at once with an error matching base.ErrStopped and the
//     cause (the lock manager selects on Halt.Done), and WriteXID, Wait,
//     Commit, Prepare, RollbackToSavepoint, CommitPrepared,
//     RollbackPrepared, TruncateCLOG and the checkpoint hook return that
//     error without doing I/O. Commit rolls back instead; Rollback ends
//     the transaction in memory, releasing its locks; Begin and Snapshot
//     do no I/O and go on working (the caller checks Manager.Err).
//
// # Snapshots and visibility
//
// A snapshot is (xmin, xmax, xip): xids at or above xmax had not begun, xids
// in xip were running, everything else below xmax had ended. TakeSnapshot
// reads the ProcArray under its RWMutex in share mode, O(procs) and without
// allocating once its xip buffer is large enough; a transaction with an xid
// leaves the ProcArray under the exclusive lock, so a snapshot sees a set of
// commits whole, and sees every commit that finished before one it sees.
// Xid assignment takes no lock: the proc is marked "assigning" before the
// counter moves and snapshots wait out the marker, so an xid is visible to
// snapshots as running from the instant it exists. Subtransaction xids are
// published per proc the same way. The horizon (oldest xid any transaction
// or snapshot needs) is the minimum of the running xids and the snapshot
// xmins; vacuum will use it.
//
// Visible (and Judge, which separates "insert seen" from "delete seen" for
// walks down a version chain) is PostgreSQL's HeapTupleSatisfiesMVCC:
// hint bits first, then own xids, then the snapshot, then the CLOG; it
// returns the hint bits that may be set, never one for a commit that is not
// durable. CheckWrite is HeapTupleSatisfiesUpdate: go ahead, wait for an
// xid, or a conflict with a commit the snapshot does not see (first updater
// wins under Repeatable Read).
//
// # Locks
//
// The lock manager (see LockManager for its rules) holds one exclusive lock
// per xid in progress. Waiting for a row is waiting for the xid on it; the
// deadlock detector walks the wait-for graph after DeadlockTimeout and
// makes the first waiter of a cycle to check its one victim (ErrDeadlock).
// A subtransaction's lock is owned by its top-level xid for the walk, since
// transactions wait under their top-level xid. A wait also ends with the
// context, with ErrLockTimeout after Config.LockTimeout (lock_timeout;
// 0, the default, is no limit; counted in LockStats.LockTimeouts), and
// with the Halt.
//
// An xid holds its lock exactly while its CLOG status may still change:
// it takes it before any row carries the xid, records its outcome before
// releasing it, and prepared transactions restored by recovery take theirs
// again before anyone can wait. So no wait lasts for ever on an xid that
// holds no lock: Tx.Wait returns at once when the holder holds none, and
// if the CLOG then still calls the holder running, it can never end, and
// Tx.Wait reports corruption rather than let the caller's loop spin.
//
// # Two-phase commit
//
// Prepare logs and flushes a prepare record and hands the transaction to the
// Manager under its gid: still in the ProcArray, still holding its locks,
// outcome pending. CommitPrepared and RollbackPrepared log and flush the
// decision and end it like a commit or abort. Prepared transactions survive
// a crash through their prepare records, or, if those lie before the redo
// point, through the checkpoint's "txn" section.
//
// # Formats on disk
//
// The CLOG page is drawn in clog.go, the WAL payloads and the checkpoint
// section in codec.go. Every decoder returns ErrCorrupt for damage, never
// panics, and allocates only what its input can hold (fuzz_test.go).
//
// # Memory
//
// The CLOG cache is Config.CLOGBuffers pages of 8 KiB (transaction_buffers
// / 8 KiB, at least 2), allocated at start. The ProcArray holds one Proc
// per transaction running at once, reused, so it grows to the peak
// concurrency and no further; a snapshot's xid list is as long as the
// number of running transactions. The lock manager holds an entry per xid
// lock held and per waiter, the prepared-transaction table one per
// prepared transaction. Recovery's tables of prepare and end records are
// dropped when Recovered returns. Nothing grows with the size of the data.
//
// # Lock order
//
//	Manager.reserve -> CLOG.mu          (xid reservation zeroes a page)
//	Manager.ckptDelay (share, commit) -> WAL locks -> CLOG.mu -> ProcArray.mu
//	    -> lock manager partitions
//	Manager.prepMu: alone (never held while taking another lock)
//	ProcArray.freeMu: alone
//	base.Halt's mutex: innermost; Stop is called with no lock of this
//	    package held but ckptDelay in share mode
//
// The checkpoint hook takes ckptDelay exclusively and releases it before
// taking anything else. No lock of this package is held while waiting for a
// row (Tx.Wait) or across a WAL flush, except ckptDelay in share mode,
// which only delays checkpoints.
package txn
