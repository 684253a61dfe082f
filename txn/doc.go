// Package txn is heapkv's transaction manager: transaction ids, the commit
// log (CLOG), the ProcArray and its snapshots, visibility, the lock manager
// with its deadlock detector, savepoints and two-phase commit. It follows
// PostgreSQL's src/backend/access/transam (xact.c, clog.c, varsup.c,
// twophase.c), storage/ipc/procarray.c and storage/lmgr (lmgr.c,
// deadlock.c), with 64-bit xids that never wrap, so nothing ever needs
// freezing for correctness. Where it departs, this text says so.
//
// # Structure
//
// The files follow the concepts: xid.go (assignment), xact.go (a
// transaction's life: begin, savepoints, commit, abort), clog.go (the commit
// log), procarray.go (running transactions and snapshots), visibility.go
// (Judge, Visible, CheckWrite), lockmgr.go (xid locks and deadlocks),
// twophase.go, recovery.go (the checkpoint hook, redo, Recovered) and
// codec.go (the bytes on disk). A Manager (manager.go) owns one CLOG, one
// ProcArray and one LockManager.
//
// Transaction ids. A transaction gets an xid only when it first writes
// (Tx.WriteXID); a read-only transaction never has one. Xids come from an
// atomic counter, with no lock on the hot path. The CLOG page that will hold
// an xid's status must exist before the xid does, so the first xid of each
// page (one in 32768) takes the slow path: under Manager.reserve it zeroes
// the page and logs and flushes a zero-page record. That record doubles as
// the reservation of the page's xids: after a crash the counter resumes past
// the highest page zeroed (or the checkpoint's NextXID), so no xid is ever
// handed out twice, even one that left no other trace.
//
// A savepoint's writes carry a subtransaction xid, assigned on its first
// write after the top-level xid (so it is the larger). Rolling back to a
// savepoint logs an abort record for its subxids, marks them aborted in the
// CLOG and releases their locks; releasing a savepoint keeps them live and
// writes nothing; commit marks the top xid and every live subxid committed
// in one atomic CLOG change.
//
// The commit log. Two status bits per xid (in progress, committed, aborted,
// sub-committed), 32768 xids in an 8 KiB page, 32 pages in a segment file
// DIR/clog/XXXX, cached in an SLRU of Config.CLOGBuffers slots of its own,
// separate from shared buffers, with LRU eviction and hit/read/write
// counters (CLOGStats). For each group of 32 xids a slot remembers the
// highest commit-record LSN that set a status there: a page is written only
// after the WAL is flushed that far (WAL before data), and IsDurable(xid)
// compares that LSN with the flushed one, which decides whether a hint bit
// may record the commit. A page read from disk needs no check (every two
// bits are a status); Truncate removes only files named as segments are.
//
// Snapshots. A snapshot is (xmin, xmax, xip): xids at or above xmax had not
// begun, xids in xip were running, everything else below xmax had ended.
// TakeSnapshot reads the ProcArray under its RWMutex in share mode, O(procs)
// and without allocating once its xip buffer is large enough; a transaction
// with an xid leaves the ProcArray under the exclusive lock, so a snapshot
// sees a set of commits whole, and sees every commit that finished before
// one it sees. Xid assignment takes no lock: the proc is marked "assigning"
// before the counter moves and snapshots wait out the marker (with the lock
// released), so an xid is visible to snapshots as running from the instant
// it exists. Subtransaction xids are published per proc the same way and go
// into the snapshot's xip. The horizon (Horizon: the oldest xid any
// transaction or snapshot needs) is the minimum of the running xids and the
// snapshot xmins; vacuum will use it.
//
// Visibility. Visible (and Judge, which separates "insert seen" from
// "delete seen" for walks down a version chain) is PostgreSQL's
// HeapTupleSatisfiesMVCC: hint bits first, then own xids, then the
// snapshot, then the CLOG; it returns the hint bits that may be set, never
// one for a commit that is not durable. CheckWrite is
// HeapTupleSatisfiesUpdate: go ahead, wait for an xid, or a conflict with a
// commit the snapshot does not see (first updater wins under Repeatable
// Read).
//
// Locks. The lock manager (LockManager's own documentation gives its rules,
// lock order and memory) holds one exclusive lock per xid in progress.
// Waiting for a row is waiting for the xid on it; the deadlock detector
// walks the wait-for graph after DeadlockTimeout, and the first waiter of a
// cycle to check is its one victim (ErrDeadlock). A subtransaction's lock
// is owned by its top-level xid for the walk, since transactions wait under
// their top-level xid. A wait also ends with the context, with
// ErrLockTimeout after Config.LockTimeout (lock_timeout; 0, the default, is
// no limit; counted in LockStats.LockTimeouts), and with the Halt.
//
// Two-phase commit. Prepare logs and flushes a prepare record and hands the
// transaction to the Manager under its gid: still in the ProcArray, still
// holding its locks, outcome pending. CommitPrepared and RollbackPrepared
// log and flush the decision and end it like a commit or abort. Prepared
// transactions survive a crash through their prepare records, or, if those
// lie before the redo point, through the checkpoint's "txn" section.
//
// The fatal state. The engine has one fatal state, a base.Halt shared by
// the WAL, the data files and this package (Config.Halt; a Manager without
// one makes its own). After a failed fsync nothing written since the last
// good one can be trusted, so the only way on is recovery from the WAL, as
// PostgreSQL PANICs. The rules of this package are listed under Rules.
//
// # Formats
//
// A CLOG page (clog.go) holds four xids per byte, the lowest xid in the
// lowest bits; page n of the log is page n%32 of segment n/32, whose file
// name is the segment number in upper-case hex, at least four digits:
//
//	byte (xid % 32768) / 4 of page xid / 32768:
//	  bit 7  6 | 5  4 | 3  2 | 1  0
//	    xid+3  | xid+2| xid+1| xid    (xid a multiple of 4)
//
//	status bits: 0 in progress, 1 committed, 2 aborted, 3 sub-committed
//
// The WAL records of RmgrTxn (codec.go; little-endian, the top xid is the
// record's own XID):
//
//	0x10 zero page         page u64
//	0x20 commit            nsubs u32, subxids u64...
//	0x30 abort             nsubs u32, subxids u64...
//	0x40 abort subxids     nsubs u32, subxids u64... (the top goes on)
//	0x50 prepare           gidlen u16, gid, nsubs u32, subxids u64...
//	0x60 commit prepared   gidlen u16, gid, nsubs u32, subxids u64...
//	0x70 abort prepared    gidlen u16, gid, nsubs u32, subxids u64...
//	0x80 truncate          oldest xid kept u64
//
// The checkpoint record's "txn" section (codec.go):
//
//	+-----------+---------+------------------------------------------+
//	| oldestRun | nprep   | per prepared: gidlen u16, gid, xid u64,  |
//	|   u64     |  u32    |   nsubs u32, subxids u64...              |
//	+-----------+---------+------------------------------------------+
//
// A gid is 1 to 200 bytes. There is no two-phase state file: a prepared
// transaction's state is its prepare record and, once that lies before the
// redo point, its entry in the section above. Every decoder returns an
// error matching base.ErrCorrupt for damage, never panics, and allocates
// only what its input can hold (fuzz_test.go).
//
// # Rules
//
// Commit, abort and the checkpoint:
//
//  1. Commit inserts the commit record (top xid, live subxids), waits for
//     it to be durable (group commit, unless synchronous commit is off),
//     sets the CLOG bits, leaves the ProcArray, then releases the xid locks,
//     waking waiters. In that order: a snapshot that no longer lists the xid
//     must find its outcome in the CLOG, and a woken waiter must too. If
//     the record's flush fails the outcome is unknown (rule 2 of the fatal
//     state, below).
//  2. From before the commit record is inserted until the CLOG bits are
//     set, the committer holds Manager.ckptDelay in share mode (PostgreSQL's
//     DELAY_CHKPT_START); so does the decision on a prepared transaction.
//     The checkpoint hook runs once the redo point is fixed and takes
//     ckptDelay exclusively before it writes the CLOG: so a commit whose
//     record lies before the redo point, and is therefore not replayed, is
//     in the CLOG pages the checkpoint makes durable.
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
//  5. Recovery replays zero-page, truncate, commit, abort, savepoint-abort
//     and prepared-commit/abort records into the CLOG and collects the
//     prepare records; then Recovered sets the counter, marks every xid
//     from the checkpoint's oldest running one up to the counter that is
//     still in progress or sub-committed (and not prepared) aborted, so no
//     writer ever waits for a dead transaction, and restores the prepared
//     transactions into the ProcArray with their xid locks.
//  6. The SLRU's mutex is never held across I/O or a WAL flush: a slot
//     being read or written is marked so, and waiters sleep on a condition
//     variable.
//
// The fatal state:
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
// Xid locks (the lock manager's own rules are LockManager's):
//
//  1. An xid holds its lock exactly while its CLOG status may still
//     change: it takes it before any row carries the xid, records its
//     outcome before releasing it, and prepared transactions restored by
//     recovery take theirs again before anyone can wait.
//  2. So no wait lasts for ever on an xid that holds no lock: Tx.Wait
//     returns at once when the holder holds none, and if the CLOG then
//     still calls the holder running, it can never end, and Tx.Wait
//     reports corruption rather than let the caller's loop spin.
//
// # Lock order
//
// A goroutine holding a lock on the left takes only those on its right:
//
//	xlog's ckptMu (the checkpoint hook runs under it) -> Manager.ckptDelay
//	    (exclusive, released at once), then CLOG.mu, Manager.reserve and
//	    Manager.prepMu, each released before the next is taken
//	Manager.ckptDelay (share: commit, prepared decision) -> the WAL's
//	    insert and flush locks, CLOG.mu, ProcArray.mu, lock manager
//	    partitions, each released before the next is taken
//	Manager.reserve -> CLOG.mu (zeroing a page), then the WAL's insert
//	    and flush locks (the zero-page record)
//	CLOG.mu -> base.Halt's mutex (reading the fatal state)
//	Manager.prepMu, ProcArray.mu, ProcArray.freeMu: take nothing
//	lock manager partitions: take nothing; all sixteen only in partition
//	    order (see LockManager)
//	base.Halt's mutex: innermost
//
// No lock of this package is held while waiting for a row (Tx.Wait). Only
// two are held across a WAL flush: ckptDelay in share mode, which only
// delays checkpoints, and Manager.reserve, which delays only the
// assignment of xids beyond the reserved ones and the checkpoint hook.
// Halt.Stop may be called with either of them held.
//
// # Memory
//
// transaction_buffers bounds the CLOG cache: Config.CLOGBuffers pages of
// 8 KiB (transaction_buffers / 8 KiB, at least MinCLOGBuffers, default
// DefaultCLOGBuffers, 1 MiB), allocated at start, each with 1024 group LSNs
// (8 KiB more per slot), plus two private page copies for writes. The
// ProcArray holds one Proc per transaction running at once, reused, so it
// grows to the peak concurrency and no further; a snapshot's xid list is as
// long as the running transactions and their live subtransactions. The lock
// manager holds an entry per xid lock held and per waiter, the
// prepared-transaction table one per prepared transaction. Recovery's
// tables of prepare and end records are dropped when Recovered returns.
// Nothing grows with the size of the data.
//
// # Departures from PostgreSQL
//
//   - 64-bit xids that never wrap: no freezing, no anti-wraparound vacuum.
//   - Xid assignment is an atomic counter and the "assigning" marker, not
//     XidGenLock; a snapshot waits out the marker with the ProcArray lock
//     released.
//   - No pg_subtrans and no 64-subxid cache limit: a proc publishes all its
//     live subxids, and snapshots list them in xip.
//   - One CLOG SLRU under one RWMutex with LRU eviction, of a fixed size
//     (transaction_buffers, default 1 MiB) rather than PostgreSQL 17's
//     banks sized from shared_buffers; no group CLOG update. A
//     transaction's xids change status in one atomic SetStatus, so no
//     xid is ever written sub-committed (the status is defined, and read
//     as in progress).
//   - DELAY_CHKPT_START is an RWMutex (ckptDelay) that the checkpoint hook
//     takes exclusively, not a per-proc flag the checkpointer polls.
//   - No two-phase state files in pg_twophase/: prepared transactions are
//     kept in the checkpoint record instead, and prepare needs no
//     max_prepared_transactions.
//   - The only lock is the xid lock: no relation or tuple locks, no lock
//     modes. A waiter sleeps on the holder's xid without first taking a
//     tuple lock.
//   - Recovery writes "aborted" into the CLOG for every xid that never
//     finished (Recovered). PostgreSQL leaves such xids in progress in
//     pg_xact and lets readers conclude "aborted or crashed" from their
//     absence from the ProcArray.
package txn
