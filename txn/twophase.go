package txn

import (
	"fmt"
	"maps"
	"slices"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/xlog"
)

type preparedTx struct {
	gid  string
	proc *Proc
	xid  base.XID
	subs []base.XID
}

type preparedRecord struct {
	gid  string
	xid  base.XID
	subs []base.XID
}

// Prepare turns tx into a prepared transaction named gid (the first phase
// of two-phase commit): its outcome is decided later by CommitPrepared or
// RollbackPrepared, from any session, and survives a crash until then. tx
// itself is over when Prepare returns. If the prepare record's flush
// fails, the outcome is unknown, as for Commit: the engine stops and tx
// keeps its locks.
func (tx *Tx) Prepare(gid string) error {
	if tx.done {
		return tx.doneErr()
	}
	m := tx.m
	if err := m.halt.Err(); err != nil {
		return err
	}
	if len(gid) == 0 || len(gid) > maxGIDLen {
		return fmt.Errorf("txn: gid must be 1 to %d bytes, got %d", maxGIDLen, len(gid))
	}
	if _, err := tx.WriteXID(); err != nil { // a prepared transaction has an xid
		return err
	}
	subs := slices.Clone(tx.proc.subs())
	m.prepMu.Lock()
	if _, dup := m.prepared[gid]; dup {
		m.prepMu.Unlock()
		return ErrDuplicateGID
	}
	// Registered before the record is written, so a checkpoint that runs
	// meanwhile lists it (recovery ignores the duplicate).
	p := &preparedTx{gid: gid, proc: tx.proc, xid: tx.xid, subs: subs}
	m.prepared[gid] = p
	m.prepMu.Unlock()

	b := appendTxnPayload(nil, infoPrepare, txnPayload{gid: gid, subs: subs})
	_, end, err := m.wal.Insert(xlog.NewRecord(RmgrTxn, infoPrepare, tx.xid).SetPayload(b))
	if err != nil {
		m.prepMu.Lock()
		delete(m.prepared, gid)
		m.prepMu.Unlock()
		return fmt.Errorf("txn: prepare %q: %w", gid, err)
	}
	if err := m.wal.Flush(end); err != nil {
		// It may be prepared on disk: leave it registered (nothing can
		// finish it now the engine stops), holding its locks.
		return tx.loseOutcome(fmt.Sprintf("prepare %q", gid), err)
	}
	tx.done = true
	return nil
}

// CommitPrepared commits the prepared transaction gid.
func (m *Manager) CommitPrepared(gid string) error { return m.finishPrepared(gid, Committed) }

// RollbackPrepared rolls back the prepared transaction gid.
func (m *Manager) RollbackPrepared(gid string) error { return m.finishPrepared(gid, Aborted) }

// finishPrepared logs the decision on gid and ends it. If the decision's
// flush fails its outcome is unknown: the engine stops, and gid stays
// prepared, holding its locks, for recovery to decide.
func (m *Manager) finishPrepared(gid string, st Status) error {
	if err := m.halt.Err(); err != nil {
		return fmt.Errorf("txn: finish prepared %q: %w", gid, err)
	}
	m.prepMu.Lock()
	p, ok := m.prepared[gid]
	if ok {
		delete(m.prepared, gid)
	}
	m.prepMu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownGID, gid)
	}
	restore := func() {
		m.prepMu.Lock()
		m.prepared[gid] = p
		m.prepMu.Unlock()
	}
	info := infoCommitPrepared
	if st == Aborted {
		info = infoAbortPrepared
	}
	b := appendTxnPayload(nil, info, txnPayload{gid: gid, subs: p.subs})
	m.ckptDelay.RLock()
	defer m.ckptDelay.RUnlock()
	_, end, err := m.wal.Insert(xlog.NewRecord(RmgrTxn, info, p.xid).SetPayload(b))
	if err != nil {
		restore()
		return fmt.Errorf("txn: finish prepared %q: %w", gid, err)
	}
	if err := m.wal.Flush(end); err != nil {
		restore()
		return m.stop(fmt.Errorf("txn: finish prepared %q (xid %d), outcome unknown until recovery: flush of its record: %w", gid, p.xid, err))
	}
	tx := &Tx{m: m, proc: p.proc, xid: p.xid}
	if st == Committed {
		m.stats.commits.Add(1)
	} else {
		m.stats.aborts.Add(1)
	}
	return tx.end(st, end)
}

// Prepared lists the gids of the prepared transactions.
func (m *Manager) Prepared() []string {
	m.prepMu.Lock()
	defer m.prepMu.Unlock()
	return slices.Sorted(maps.Keys(m.prepared))
}
