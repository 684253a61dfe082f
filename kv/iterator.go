package kv

import (
	"bytes"
	"iter"
	"slices"

	"github.com/heapkv/heapkv/table"
	"github.com/heapkv/heapkv/txn"
)

// ScanOptions shape a Scan. A nil *ScanOptions is the zero value.
type ScanOptions struct {
	// Reverse yields keys from the last below end down to start.
	Reverse bool
	// Limit stops after that many keys; 0 means no limit.
	Limit int
}

// Iterator walks keys in order. Key and Value are valid until the next
// call of Next; copy them to keep them. Close it when done (it holds no
// page latch between calls, only its buffered batch of keys).
type Iterator struct {
	tx    *Tx
	ks    *keyspace
	snap  txn.Snapshot // the scan's own: later reads of a Read Committed tx move tx's on
	it    *table.Iterator
	limit int
	n     int
	err   error
	done  bool
}

// Scan returns an iterator over [start, end) of the default keyspace; a nil
// end runs to the last key, a nil start from the first; start == end
// yields nothing.
func (tx *Tx) Scan(start, end []byte, opts *ScanOptions) *Iterator {
	return tx.scanIn(tx.db.def, start, end, opts)
}

func (tx *Tx) scanIn(ks *keyspace, start, end []byte, opts *ScanOptions) *Iterator {
	if err := tx.begin(false); err != nil {
		return &Iterator{err: err, done: true}
	}
	defer tx.end()
	return tx.scan(ks, start, end, opts)
}

func (tx *Tx) scan(ks *keyspace, start, end []byte, opts *ScanOptions) *Iterator {
	var o ScanOptions
	if opts != nil {
		o = *opts
	}
	it := &Iterator{tx: tx, ks: ks, limit: o.Limit}
	if start != nil && end != nil && bytes.Compare(start, end) >= 0 {
		it.done = true
		return it
	}
	// A scan sees one snapshot throughout, taken before any index entry
	// is read (see Tx.get), and its own copy: a Read Committed
	// transaction's next read replaces tx's.
	s, err := tx.snapshot()
	if err != nil {
		return &Iterator{err: tx.fail(err), done: true}
	}
	it.snap = cloneSnapshot(s)
	it.it = ks.t.Scan(start, end, o.Reverse)
	return it
}

// cloneSnapshot copies s, which a Read Committed transaction's next read
// replaces, for a scan that must keep seeing it.
func cloneSnapshot(s *txn.Snapshot) txn.Snapshot {
	return txn.Snapshot{XMin: s.XMin, XMax: s.XMax, XIP: slices.Clone(s.XIP), Cur: s.Cur, Subs: slices.Clone(s.Subs)}
}

// Next moves to the next key visible to the transaction.
func (it *Iterator) Next() bool {
	if it.done {
		return false
	}
	if it.tx.done {
		it.err, it.done = ErrTxDone, true
		return false
	}
	if it.tx.aborted != nil {
		it.err, it.done = it.tx.abortedErr(), true
		return false
	}
	if err := it.tx.db.enter(); err != nil {
		it.err, it.done = err, true
		return false
	}
	defer it.tx.db.leave()
	if it.limit != 0 && it.n >= it.limit {
		it.done = true
		return false
	}
	it.tx.t.SetOwn(&it.snap) // writes of tx since the scan began are its own
	if !it.it.Next(&it.snap) {
		it.err, it.done = it.tx.fail(it.it.Err()), true
		return false
	}
	it.n++
	return true
}

// Key returns the current key.
func (it *Iterator) Key() []byte {
	if it.it == nil {
		return nil
	}
	return it.it.Key()
}

// Value returns the current value.
func (it *Iterator) Value() []byte {
	if it.it == nil {
		return nil
	}
	return it.it.Value()
}

// Err returns the error that stopped the iteration, if any.
func (it *Iterator) Err() error { return it.err }

// Close releases the iterator and returns Err.
func (it *Iterator) Close() error {
	it.done = true
	if it.it != nil {
		it.it.Close()
	}
	return it.err
}

// All iterates over the scan as a range-over-func sequence of key, value
// pairs (valid for one step each). Check Err after the loop.
func (it *Iterator) All() iter.Seq2[[]byte, []byte] {
	return func(yield func([]byte, []byte) bool) {
		defer it.Close()
		for it.Next() {
			if !yield(it.Key(), it.Value()) {
				return
			}
		}
	}
}

// Keyspace is a named keyspace as seen by one transaction: the Tx methods,
// bound to it.
type Keyspace struct {
	tx  *Tx
	ks  *keyspace
	err error
}

// Keyspace returns the keyspace called name ("" or "default" for the
// default one). If it does not exist, every method returns ErrNoKeyspace.
func (tx *Tx) Keyspace(name string) *Keyspace {
	if err := tx.begin(false); err != nil {
		return &Keyspace{tx: tx, err: err}
	}
	defer tx.end()
	ks, err := tx.lookupKeyspace(name)
	return &Keyspace{tx: tx, ks: ks, err: tx.fail(err)}
}

// Get is Tx.Get in the keyspace.
func (k *Keyspace) Get(key []byte) ([]byte, error) {
	if k.err != nil {
		return nil, k.err
	}
	return k.tx.getIn(k.ks, key)
}

// Put is Tx.Put in the keyspace.
func (k *Keyspace) Put(key, value []byte) error {
	if k.err != nil {
		return k.err
	}
	return k.tx.putIn(k.ks, key, value)
}

// Delete is Tx.Delete in the keyspace.
func (k *Keyspace) Delete(key []byte) error {
	if k.err != nil {
		return k.err
	}
	return k.tx.deleteIn(k.ks, key)
}

// GetForUpdate is Tx.GetForUpdate in the keyspace.
func (k *Keyspace) GetForUpdate(key []byte) ([]byte, error) {
	if k.err != nil {
		return nil, k.err
	}
	return k.tx.getForUpdateIn(k.ks, key)
}

// Scan is Tx.Scan in the keyspace.
func (k *Keyspace) Scan(start, end []byte, opts *ScanOptions) *Iterator {
	if k.err != nil {
		return &Iterator{err: k.err, done: true}
	}
	return k.tx.scanIn(k.ks, start, end, opts)
}
