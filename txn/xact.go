package txn

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/xlog"
)

// Errors of transaction control.
var (
	// ErrTxDone is returned by a transaction that has ended.
	ErrTxDone = errors.New("txn: transaction has already committed or rolled back")
	// ErrUnknownGID names a prepared transaction that does not exist.
	ErrUnknownGID = errors.New("txn: no prepared transaction with that gid")
	// ErrDuplicateGID is returned by Prepare when the gid is in use.
	ErrDuplicateGID = errors.New("txn: a prepared transaction with that gid exists")
	// ErrNoSavepoint names a savepoint that does not exist.
	ErrNoSavepoint = errors.New("txn: no such savepoint")
)

// Tx is one transaction. It is not safe for concurrent use.
type Tx struct {
	m    *Manager
	proc *Proc
	xid  base.XID // top-level xid, InvalidXID until the first write
	// levels are the open savepoints, innermost last: each has the subxid
	// of its writes (InvalidXID until it writes) and the number of live
	// subxids when it began.
	levels []savepoint
	done   bool
	// lost is set, with done, when the flush of tx's commit or prepare
	// record failed: its outcome is unknown until recovery, it keeps its
	// xid and locks, and every later call returns lost.
	lost error
}

type savepoint struct {
	xid       base.XID
	liveStart int
}

// doneErr is what a call on an ended transaction returns.
func (tx *Tx) doneErr() error {
	if tx.lost != nil {
		return tx.lost
	}
	return ErrTxDone
}

// Begin starts a transaction. It has no xid until it first writes. Begin
// does no I/O and cannot fail; once the engine has stopped (Err), every
// call of the transaction that would write returns the stop's error, and
// the caller checks Err first to refuse new transactions.
func (m *Manager) Begin() *Tx {
	return &Tx{m: m, proc: m.procs.Join()}
}

// Snapshot fills dst with a new snapshot for tx: the reader's own xids are
// set so that its own writes are visible.
func (tx *Tx) Snapshot(dst *Snapshot) error {
	if tx.done {
		return tx.doneErr()
	}
	tx.m.procs.TakeSnapshot(dst, tx.proc)
	dst.Cur = tx.xid
	dst.Subs = append(dst.Subs[:0], tx.proc.subs()...)
	slices.Sort(dst.Subs)
	return nil
}

// SetOwn refreshes the reader's own xids in s (Cur and Subs): a snapshot
// kept for the whole transaction must learn the xids the transaction got
// after taking it, or its own later writes would be invisible to it.
func (tx *Tx) SetOwn(s *Snapshot) {
	s.Cur = tx.xid
	s.Subs = append(s.Subs[:0], tx.proc.subs()...)
}

// XID returns tx's top-level xid, or InvalidXID if it has not written.
func (tx *Tx) XID() base.XID { return tx.xid }

// Wait blocks until the transaction holding xid ends (or, for a
// subtransaction xid, rolls back). It returns at once if holder holds no
// lock (it has ended, or never began). It returns ErrDeadlock if waiting
// would deadlock, ErrLockTimeout after Config.LockTimeout, the context's
// error if ctx is done first, and the engine's stop error (base.ErrStopped)
// if the engine stops, or has stopped.
//
// When it returns nil, holder's outcome is in the CLOG (it records it
// before it lets go of its locks), so the caller's next look at the row
// makes progress. If the CLOG still says holder is running although it
// holds no lock, holder can never end: Wait reports that as corruption
// rather than let the caller's loop spin on it for ever.
func (tx *Tx) Wait(ctx context.Context, holder base.XID) error {
	if tx.done {
		return tx.doneErr()
	}
	m := tx.m
	if err := m.halt.Err(); err != nil {
		return fmt.Errorf("txn: waiting for xid %d: %w", holder, err)
	}
	waiter := tx.xid
	if waiter == base.InvalidXID {
		// A transaction that has not written can be waited for by nobody,
		// so it cannot be on a cycle; it still needs a name in the graph.
		if _, err := tx.WriteXID(); err != nil {
			return err
		}
		waiter = tx.xid
	}
	if err := m.locks.Wait(ctx, waiter, holder); err != nil {
		return err
	}
	// The holder may have ended by stopping the engine (rule 3 of the
	// fatal state), with no outcome in the CLOG.
	if err := m.halt.Err(); err != nil {
		return fmt.Errorf("txn: waiting for xid %d: %w", holder, err)
	}
	st, err := m.clog.Status(holder)
	if err != nil {
		return fmt.Errorf("txn: status of xid %d after waiting for it: %w", holder, err)
	}
	if st == InProgress || st == SubCommitted {
		return base.CorruptionErrorf("txn: xid %d holds no lock but the CLOG says it is %v: it can never end", holder, st)
	}
	return nil
}

// Savepoint opens a savepoint and returns its depth (1 for the first).
func (tx *Tx) Savepoint() (int, error) {
	if tx.done {
		return 0, tx.doneErr()
	}
	tx.levels = append(tx.levels, savepoint{liveStart: len(tx.proc.subs())})
	return len(tx.levels), nil
}

// ReleaseSavepoint closes savepoint depth and every one inside it, keeping
// their writes as part of the enclosing level.
func (tx *Tx) ReleaseSavepoint(depth int) error {
	if tx.done {
		return tx.doneErr()
	}
	if depth < 1 || depth > len(tx.levels) {
		return ErrNoSavepoint
	}
	tx.levels = tx.levels[:depth-1]
	return nil
}

// RollbackToSavepoint undoes every write made since savepoint depth was
// opened: the subtransaction xids used since then are marked aborted, their
// locks released, and the savepoint stays open (empty) as in SQL.
func (tx *Tx) RollbackToSavepoint(depth int) error {
	if tx.done {
		return tx.doneErr()
	}
	if err := tx.m.halt.Err(); err != nil {
		return err // the caller rolls the whole transaction back
	}
	if depth < 1 || depth > len(tx.levels) {
		return ErrNoSavepoint
	}
	live := tx.proc.subs()
	start := tx.levels[depth-1].liveStart
	gone := slices.Clone(live[start:])
	if len(gone) > 0 {
		b := appendTxnPayload(nil, infoAbortSub, txnPayload{subs: gone})
		_, end, err := tx.m.wal.Insert(xlog.NewRecord(RmgrTxn, infoAbortSub, tx.xid).SetPayload(b))
		if err != nil {
			return err
		}
		if err := tx.m.clog.SetStatus(gone, Aborted, end); err != nil {
			return err
		}
		tx.proc.setSubs(live[:start])
		for _, x := range gone {
			tx.m.locks.Release(x)
		}
	}
	tx.levels = tx.levels[:depth]
	tx.levels[depth-1] = savepoint{liveStart: start}
	return nil
}

// Commit makes tx's writes visible to later snapshots. With the WAL's
// synchronous commit on, it returns once the commit record is durable
// (group commit). A transaction that wrote nothing just ends.
//
// If the engine has stopped, Commit rolls tx back and returns the stop's
// error. If the commit record cannot be inserted, tx aborts. If it was
// inserted but its flush fails, the outcome is unknown (the record may be
// on disk): Commit stops the engine, which releases every waiter, and
// returns an error matching base.ErrStopped and the cause; tx keeps its
// xid, unmarked in the CLOG, and its locks, for recovery to decide.
func (tx *Tx) Commit() error {
	if tx.done {
		return tx.doneErr()
	}
	m := tx.m
	if err := m.halt.Err(); err != nil {
		tx.Rollback() // in memory only, and never fails to end tx
		return fmt.Errorf("txn: commit of xid %d: %w", tx.xid, err)
	}
	tx.done = true
	if tx.xid == base.InvalidXID {
		m.procs.Leave(tx.proc)
		m.stats.commits.Add(1)
		return nil
	}
	b := appendTxnPayload(nil, infoCommit, txnPayload{subs: tx.proc.subs()})
	m.ckptDelay.RLock()
	defer m.ckptDelay.RUnlock()
	_, end, err := m.wal.Insert(xlog.NewRecord(RmgrTxn, infoCommit, tx.xid).SetPayload(b))
	if err != nil {
		// No whole record is in the log: the transaction aborted.
		tx.end(Aborted, 0)
		return fmt.Errorf("txn: commit of xid %d: %w", tx.xid, err)
	}
	if err := m.wal.FlushCommit(end); err != nil {
		return tx.loseOutcome("commit", err)
	}
	if err := tx.end(Committed, end); err != nil {
		return err
	}
	m.stats.commits.Add(1)
	return nil
}

// loseOutcome handles the failed flush of tx's commit or prepare record:
// the record may be durable, so tx may not be marked aborted, and its
// locks stay held; the engine stops, which releases their waiters, and
// recovery decides. tx is done; every later call returns the error.
func (tx *Tx) loseOutcome(what string, cause error) error {
	tx.done = true
	tx.lost = tx.m.stop(fmt.Errorf("txn: %s of xid %d, outcome unknown until recovery: flush of its record: %w", what, tx.xid, cause))
	return tx.lost
}

// Rollback ends tx, discarding its writes. It always ends tx, releasing
// its locks; once the engine has stopped it does so in memory only
// (recovery aborts whatever never finished).
func (tx *Tx) Rollback() error {
	if tx.done {
		return tx.doneErr()
	}
	tx.done = true
	m := tx.m
	m.stats.aborts.Add(1)
	if tx.xid == base.InvalidXID {
		m.procs.Leave(tx.proc)
		return nil
	}
	var end base.LSN
	if m.halt.Err() == nil {
		b := appendTxnPayload(nil, infoAbort, txnPayload{subs: tx.proc.subs()})
		if _, e, err := m.wal.Insert(xlog.NewRecord(RmgrTxn, infoAbort, tx.xid).SetPayload(b)); err == nil {
			end = e
		} // else recovery will find it unfinished and abort it
	}
	return tx.end(Aborted, end)
}

// testHookBeforeEnd, when set by a test, runs at the start of end, after
// the commit or abort record was written and before the CLOG update.
var testHookBeforeEnd func(xid base.XID)

// testHookBeforeEndXID, when set by a test, runs in end between the CLOG
// update and leaving the ProcArray.
var testHookBeforeEndXID func(xid base.XID)

// end records st for tx's xids in the CLOG, leaves the ProcArray (in that
// order: a snapshot that no longer lists the xid must find its outcome) and
// releases the locks, waking waiters. If the CLOG cannot record the
// outcome the engine stops (PostgreSQL's critical section): the xid ends
// with no outcome in memory, which only recovery can give it, and the
// stop's error is what its waiters get.
func (tx *Tx) end(st Status, lsn base.LSN) error {
	if testHookBeforeEnd != nil {
		testHookBeforeEnd(tx.xid)
	}
	m := tx.m
	subs := tx.proc.subs()
	xids := append(slices.Clone(subs), tx.xid)
	err := m.clog.SetStatus(xids, st, lsn)
	if err != nil {
		err = m.stop(fmt.Errorf("txn: record outcome %v of xid %d in the CLOG: %w", st, tx.xid, err))
	}
	if testHookBeforeEndXID != nil {
		testHookBeforeEndXID(tx.xid)
	}
	tx.proc.setSubs(nil)
	m.procs.EndXID(tx.proc, tx.xid)
	m.procs.Leave(tx.proc)
	for _, x := range xids {
		m.locks.Release(x)
	}
	return err
}
