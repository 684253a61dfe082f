package txn

import (
	"fmt"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/xlog"
)

// testHookXIDTaken, when set by a test, runs in allocXID right after the
// xid was taken from the counter, before it is published.
var testHookXIDTaken func(x base.XID)

// allocXID hands out a new xid to p (as its top xid, or as a subtransaction
// xid when sub). It takes no lock unless the xid is the first of a CLOG
// page, which must be zeroed and logged before any xid on it is used.
func (m *Manager) allocXID(p *Proc, sub bool) (base.XID, error) {
	if sub {
		p.subAssigning.Store(true)
		defer p.subAssigning.Store(false)
	} else {
		m.procs.BeginAssign(p)
	}
	x := base.XID(m.next.Add(1) - 1)
	if testHookXIDTaken != nil {
		testHookXIDTaken(x)
	}
	if x >= base.XID(m.reserved.Load()) {
		if err := m.reserveThrough(x); err != nil {
			if !sub {
				p.xid.Store(0)
			}
			return 0, err
		}
	}
	if sub {
		p.addSub(x)
	} else {
		m.procs.SetXID(p, x)
	}
	return x, nil
}

// reserveThrough zeroes and logs CLOG pages until x is covered.
func (m *Manager) reserveThrough(x base.XID) error {
	m.reserve.Lock()
	defer m.reserve.Unlock()
	for base.XID(m.reserved.Load()) <= x {
		r := base.XID(m.reserved.Load())
		page := clogPage(r)
		if err := m.clog.ZeroPage(page); err != nil {
			return err
		}
		b := appendTxnPayload(nil, infoZeroPage, txnPayload{page: page})
		// Flushed, once per 32768 xids, so that no xid is ever handed out
		// twice, even one that left no other trace before a crash.
		_, end, err := m.wal.Insert(xlog.NewRecord(RmgrTxn, infoZeroPage, 0).SetPayload(b))
		if err == nil {
			err = m.wal.Flush(end)
		}
		if err != nil {
			return fmt.Errorf("txn: log CLOG page %d: %w", page, err)
		}
		m.reserved.Store(uint64(base.XID(page+1) * xidsPerPage))
	}
	return nil
}

// WriteXID returns the xid to stamp on tx's writes: that of the innermost
// savepoint, or the top-level one, assigning them on first use (the parent
// before the child, so a subtransaction's xid is always the larger). Once
// the engine has stopped it returns the stop's error: nothing may be
// written any more.
func (tx *Tx) WriteXID() (base.XID, error) {
	if tx.done {
		return 0, tx.doneErr()
	}
	if err := tx.m.halt.Err(); err != nil {
		return 0, err
	}
	if tx.xid == base.InvalidXID {
		x, err := tx.m.allocXID(tx.proc, false)
		if err != nil {
			return 0, err
		}
		tx.xid = x
		tx.m.locks.Acquire(x)
	}
	if len(tx.levels) == 0 {
		return tx.xid, nil
	}
	sp := &tx.levels[len(tx.levels)-1]
	if sp.xid == base.InvalidXID {
		x, err := tx.m.allocXID(tx.proc, true)
		if err != nil {
			return 0, err
		}
		sp.xid = x
		tx.m.locks.AcquireSub(x, tx.xid)
	}
	return sp.xid, nil
}
