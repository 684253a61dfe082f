package table

import (
	"context"
	"errors"
	"fmt"

	"github.com/heapkv/heapkv/heap"
	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/txn"
)

// Writer is the transaction a write, delete or row lock acts for, as the
// layer above sees it: which snapshot to use and how a conflict ends are
// its isolation level's business, not the table's.
type Writer struct {
	// Ctx bounds the lock waits.
	Ctx context.Context
	// Tx is the transaction; its xid (WriteXID) marks the versions, and it
	// waits on other transactions' xids.
	Tx *txn.Tx
	// Snapshot returns the snapshot for the next attempt; it is called
	// once per attempt (Repeatable Read: the transaction's own; Read
	// Committed: a new one).
	Snapshot func() (*txn.Snapshot, error)
	// ReadCommitted: a row changed by a transaction that committed after
	// the snapshot is written on its newest version after waiting for
	// that transaction (the next Snapshot sees it), instead of failing
	// with ErrSerialization.
	ReadCommitted bool
}

// Change is what one Put did, for the caller's live and dead estimates.
type Change struct {
	Versions int64 // heap versions inserted, kept or garbage
	Inserted bool  // the key had no live version and now has one
	Updated  bool  // a live version was replaced
}

// target is the row a writer found: the index entry's TID, the newest
// version that did not abort, and the writer's verdict on it.
type target struct {
	indexTID base.TID // what the B+tree points at
	version  txn.Version
	tid      base.TID // the newest non-aborted version; InvalidTID if none
	live     bool     // the snapshot sees it, not deleted
}

// acquire finds key's newest version and waits until no other running
// transaction holds it (rules 2 to 4 in doc.go). found is false if the
// B+tree has no entry for key.
func (t *Table) acquire(w *Writer, key []byte) (found bool, tg target, err error) {
	for {
		if err := w.Ctx.Err(); err != nil {
			return false, tg, err
		}
		snap, err := w.Snapshot()
		if err != nil {
			return false, tg, err
		}
		indexTID, found, err := t.tree.Lookup(key)
		if err != nil || !found {
			return false, tg, err
		}
		f, ok, err := t.heap.Newest(indexTID, key)
		if err != nil {
			return false, tg, err
		}
		tg = target{indexTID: indexTID, tid: base.InvalidTID}
		if !ok {
			return true, tg, nil // every version aborted: the key is free
		}
		if h := TestHooks.AfterNewest; h != nil {
			h()
		}
		v := f.Version
		wv, err := txn.CheckWrite(v, snap, t.status)
		if err != nil {
			return false, tg, err
		}
		switch wv.Check {
		case txn.WriteOK:
			if (v.Mask|wv.Hints)&txn.XMinInvalid != 0 {
				// v's inserter aborted after Newest passed it: v is not
				// the row, the version below it is (Newest skips v now).
				// Judged, v would read as a missing row.
				continue
			}
		case txn.WriteWait:
			if err := w.Tx.Wait(w.Ctx, wv.Holder); err != nil {
				return false, tg, err
			}
			continue
		case txn.WriteConflict:
			if w.ReadCommitted {
				// The next snapshot sees the commit once the committer has
				// left the ProcArray; its xid lock goes after that.
				if err := w.Tx.Wait(w.Ctx, wv.Holder); err != nil {
					return false, tg, err
				}
				continue
			}
			return false, tg, fmt.Errorf("%w: key %q", ErrSerialization, truncKey(key))
		}
		j, err := txn.Judge(v, snap, t.status)
		if err != nil {
			return false, tg, err
		}
		tg.version, tg.tid, tg.live = v, f.TID, j.Visible()
		return true, tg, nil
	}
}

// Put writes a new version of key for w (PostgreSQL's heap_insert or
// heap_update with the index change). The Change is valid with an error
// too: versions inserted before it stay in the heap.
func (t *Table) Put(w *Writer, key, value []byte) (Change, error) {
	var c Change
	xid, err := w.Tx.WriteXID()
	if err != nil {
		return c, err
	}
	for {
		found, tg, err := t.acquire(w, key)
		if err != nil {
			return c, err
		}
		if !found {
			tid, err := t.heap.Insert(xid, key, value, base.InvalidTID)
			if err != nil {
				return c, err
			}
			c.Versions++
			if _, inserted, err := t.tree.Insert(key, tid); err != nil || inserted {
				c.Inserted = inserted
				return c, err
			}
			// A concurrent writer indexed the key first: our version is
			// garbage; mark it deleted by us and look again.
			if err := t.heap.SetXmax(tid, key, txn.Version{}, xid, heap.XmaxDelete); err != nil {
				return c, err
			}
			continue
		}
		if tg.live {
			// Claim the row: mark the current version replaced by us.
			err := t.heap.SetXmax(tg.tid, key, tg.version, xid, heap.XmaxDelete)
			if errors.Is(err, heap.ErrXmaxChanged) {
				continue // another writer got there first
			}
			if err != nil {
				return c, err
			}
		}
		tid, err := t.heap.Insert(xid, key, value, tg.tid)
		if err != nil {
			return c, err
		}
		c.Versions++
		ok, err := t.tree.Repoint(key, tg.indexTID, tid)
		if err != nil || ok {
			c.Updated = ok && tg.live
			c.Inserted = ok && !tg.live
			return c, err
		}
		if err := t.heap.SetXmax(tid, key, txn.Version{}, xid, heap.XmaxDelete); err != nil {
			return c, err
		}
	}
}

// Delete marks key's current version deleted by w (heap_delete),
// reporting whether there was one.
func (t *Table) Delete(w *Writer, key []byte) (bool, error) {
	xid, err := w.Tx.WriteXID()
	if err != nil {
		return false, err
	}
	for {
		found, tg, err := t.acquire(w, key)
		if err != nil || !found || !tg.live {
			return false, err
		}
		err = t.heap.SetXmax(tg.tid, key, tg.version, xid, heap.XmaxDelete)
		if errors.Is(err, heap.ErrXmaxChanged) {
			continue
		}
		return err == nil, err
	}
}

// LockRow locks key's current version for w until w's transaction ends
// (heap_lock_tuple, SELECT ... FOR UPDATE) and returns its value; found is
// false if w's snapshot sees no live version.
func (t *Table) LockRow(w *Writer, key []byte) (value []byte, found bool, err error) {
	xid, err := w.Tx.WriteXID()
	if err != nil {
		return nil, false, err
	}
	for {
		found, tg, err := t.acquire(w, key)
		if err != nil {
			return nil, false, err
		}
		if !found || !tg.live {
			return nil, false, nil
		}
		if tg.version.XMax != xid {
			err = t.heap.SetXmax(tg.tid, key, tg.version, xid, heap.XmaxLockOnly)
			if errors.Is(err, heap.ErrXmaxChanged) {
				continue
			}
			if err != nil {
				return nil, false, err
			}
		}
		v, err := t.Value(tg.tid)
		if err != nil {
			return nil, false, err
		}
		return v, true, nil
	}
}

func truncKey(k []byte) []byte {
	if len(k) > 64 {
		return k[:64]
	}
	return k
}
