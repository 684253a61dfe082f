package txn

import (
	"maps"
	"slices"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/xlog"
)

// checkpoint is the manager's checkpoint hook: it makes the CLOG durable
// and records its section of the checkpoint (appendCheckpointState).
// testHookAfterCLOGCheckpoint, when set by a test, runs in the checkpoint
// hook right after the CLOG pages were written.
var testHookAfterCLOGCheckpoint func()

func (m *Manager) checkpoint(redo base.LSN, cp *xlog.CheckpointData) error {
	// After a fatal error nothing in memory may be made durable as the
	// state at a redo point, and a committer stuck with an unknown outcome
	// may hold ckptDelay: fail at once.
	if err := m.halt.Err(); err != nil {
		return err
	}
	m.ckptDelay.Lock()
	m.ckptDelay.Unlock() //nolint:staticcheck // waiting out in-flight commits is the point
	// The oldest xid that may be running, taken BEFORE the CLOG is written:
	// an xid that ends after this sets its CLOG bits after it, perhaps
	// after the write below, and its abort record may lie before the redo
	// point, so recovery must look at it (Recovered marks what it finds in
	// progress from oldest up aborted). An xid that ended before this has
	// set its bits, which the write below includes. (A commit in the same
	// window is held off by ckptDelay above, so it is never taken for
	// crashed.)
	oldest := m.procs.OldestRunning(base.XID(m.next.Load()))
	if err := m.clog.Checkpoint(); err != nil {
		return err
	}
	if testHookAfterCLOGCheckpoint != nil {
		testHookAfterCLOGCheckpoint()
	}
	// A reservation in progress may have logged its page before the redo
	// point; wait for it, so NextXID covers it.
	m.reserve.Lock()
	reserved := base.XID(m.reserved.Load())
	m.reserve.Unlock()
	cp.NextXID = reserved
	m.prepMu.Lock()
	preps := make([]preparedRecord, 0, len(m.prepared))
	for _, gid := range slices.Sorted(maps.Keys(m.prepared)) {
		p := m.prepared[gid]
		preps = append(preps, preparedRecord{gid: gid, xid: p.xid, subs: p.subs})
	}
	m.prepMu.Unlock()
	b := appendCheckpointState(nil, oldest, preps)
	if cp.Sections == nil {
		cp.Sections = map[string][]byte{}
	}
	cp.Sections[checkpointSection] = b
	return nil
}

// Recovered finishes recovery: it sets the xid counter past every xid that
// may have been handed out, marks every transaction that was running at
// the crash (and is not prepared) aborted, and restores the prepared
// transactions, holding their xid locks.
func (m *Manager) Recovered(res xlog.RecoveryResult) error {
	cp := res.Checkpoint
	// Every xid below reserved may have been handed out: its CLOG page
	// was zeroed and logged. Both sources are multiples of a page.
	reserved := cp.NextXID
	if m.redo.maxZeroPage >= 0 {
		reserved = max(reserved, base.XID(m.redo.maxZeroPage+1)*xidsPerPage)
	}
	next := max(reserved, FirstNormalXID)
	// Without the manager's checkpoint section (the first checkpoint of a
	// new database) every xid so far may have been running.
	oldest := FirstNormalXID
	prepared := maps.Clone(m.redo.prepared)
	if sec, ok := cp.Sections[checkpointSection]; ok {
		o, preps, err := decodeCheckpointState(sec)
		if err != nil {
			return err
		}
		oldest = o
		for _, p := range preps {
			if !m.redo.ended[p.xid] {
				if _, ok := prepared[p.xid]; !ok {
					prepared[p.xid] = p
				}
			}
		}
	}
	isPrepared := make(map[base.XID]bool)
	for _, p := range prepared {
		isPrepared[p.xid] = true
		for _, s := range p.subs {
			isPrepared[s] = true
		}
	}
	// Whatever was running when the WAL ends never finished: mark it
	// aborted, so that a writer that finds its xid on a row does not wait
	// for ever. (Repeating this after another crash is harmless.)
	crashed := make([]base.XID, 0, 1024)
	flush := func() error {
		err := m.clog.SetStatus(crashed, Aborted, 0)
		crashed = crashed[:0]
		return err
	}
	for x := max(oldest, FirstNormalXID); x < reserved; x++ {
		if isPrepared[x] {
			continue
		}
		st, err := m.clog.Status(x)
		if err != nil {
			return err
		}
		if st == InProgress || st == SubCommitted {
			crashed = append(crashed, x)
			if len(crashed) == cap(crashed) {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	m.next.Store(uint64(next))
	m.reserved.Store(uint64(reserved))
	m.procs.setLatestCompleted(next - 1)
	for _, p := range prepared {
		proc := m.procs.Join()
		m.procs.SetXID(proc, p.xid)
		proc.setSubs(p.subs)
		m.locks.Acquire(p.xid)
		for _, s := range p.subs {
			m.locks.AcquireSub(s, p.xid)
		}
		m.prepared[p.gid] = &preparedTx{gid: p.gid, proc: proc, xid: p.xid, subs: p.subs}
	}
	m.redo.prepared, m.redo.ended = nil, nil
	if len(prepared) > 0 {
		m.log.Info("txn: restored prepared transactions", "count", len(prepared))
	}
	return nil
}

// redoRecord replays the manager's records.
func (m *Manager) redoRecord(rec *xlog.Record, _ *xlog.RedoContext) error {
	r, err := decodeTxnPayload(rec.Info, rec.Payload)
	if err != nil {
		return err
	}
	switch rec.Info {
	case infoZeroPage:
		m.redo.maxZeroPage = max(m.redo.maxZeroPage, r.page)
		return m.clog.ZeroPage(r.page)
	case infoTruncate:
		return m.clog.Truncate(r.oldest)
	}
	if rec.XID < FirstNormalXID {
		return base.CorruptionErrorf("txn: record %#x of xid %d", rec.Info, rec.XID)
	}
	switch rec.Info {
	case infoCommit, infoAbort, infoAbortSub:
		st := Committed
		if rec.Info != infoCommit {
			st = Aborted
		}
		xids := r.subs
		if rec.Info != infoAbortSub {
			xids = append(xids, rec.XID)
		}
		return m.clog.SetStatus(xids, st, rec.End)
	case infoPrepare:
		m.redo.prepared[rec.XID] = preparedRecord{gid: r.gid, xid: rec.XID, subs: r.subs}
		delete(m.redo.ended, rec.XID)
		return nil
	default: // infoCommitPrepared, infoAbortPrepared
		delete(m.redo.prepared, rec.XID)
		m.redo.ended[rec.XID] = true
		st := Committed
		if rec.Info == infoAbortPrepared {
			st = Aborted
		}
		return m.clog.SetStatus(append(r.subs, rec.XID), st, rec.End)
	}
}
