package table

import (
	"github.com/heapkv/heapkv/btree"
	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/txn"
)

// Get returns the value of the version of key that snap sees, appended to
// dst, and whether there is one. The caller takes snap before calling Get
// (rule 1 in doc.go). A visible empty value is returned non-nil.
func (t *Table) Get(key []byte, snap *txn.Snapshot, dst []byte) ([]byte, bool, error) {
	tid, found, err := t.tree.Lookup(key)
	if err != nil || !found {
		return nil, false, err
	}
	if h := TestHooks.AfterLookup; h != nil {
		h()
	}
	f, ok, err := t.heap.Get(tid, key, snap, dst)
	if err != nil || !ok {
		return nil, false, err
	}
	v := f.Value
	if v == nil {
		v = []byte{}
	}
	return v, true, nil
}

// Iterator walks the keys of a range in order and, for each, the version a
// snapshot sees. Key and Value are valid until the next call of Next.
type Iterator struct {
	t     *Table
	it    *btree.Iterator
	key   []byte
	value []byte
	err   error
}

// Scan returns an iterator over [start, end) (nil start: from the first
// key; nil end: to the last), in reverse order if reverse is set.
func (t *Table) Scan(start, end []byte, reverse bool) *Iterator {
	return &Iterator{t: t, it: t.tree.Scan(start, end, reverse)}
}

// Next moves to the next key that snap sees a version of. It returns false
// at the end of the range or on an error (Err).
func (it *Iterator) Next(snap *txn.Snapshot) bool {
	if it.err != nil {
		return false
	}
	for it.it.Next() {
		key := it.it.Key()
		f, ok, err := it.t.heap.Get(it.it.TID(), key, snap, it.value[:0])
		if err != nil {
			it.err = err
			return false
		}
		if ok {
			it.key, it.value = key, f.Value
			return true
		}
	}
	it.err = it.it.Err()
	return false
}

// Key returns the current key.
func (it *Iterator) Key() []byte { return it.key }

// Value returns the current value.
func (it *Iterator) Value() []byte { return it.value }

// Err returns the error that stopped the iteration, if any.
func (it *Iterator) Err() error { return it.err }

// Close releases the iterator.
func (it *Iterator) Close() { it.it.Close() }

// ForEachNewest calls fn, in key order, with every key whose chain holds a
// version that did not abort, that newest such version and its TID (for
// Value). Keys whose every version aborted are skipped. It stops at fn's
// first error and returns it. The orphan sweep at Open uses it to decide
// which catalog entries count, before any snapshot could judge them.
func (t *Table) ForEachNewest(fn func(key []byte, v txn.Version, tid base.TID) error) error {
	it := t.tree.Scan(nil, nil, false)
	defer it.Close()
	for it.Next() {
		key := it.Key()
		f, ok, err := t.heap.Newest(it.TID(), key)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if err := fn(key, f.Version, f.TID); err != nil {
			return err
		}
	}
	return it.Err()
}

// Value returns the value of the version at tid, whatever its visibility
// (a version ForEachNewest reported). An empty value is returned non-nil.
func (t *Table) Value(tid base.TID) ([]byte, error) {
	tu, err := t.heap.Fetch(tid)
	if err != nil {
		return nil, err
	}
	if tu.Value == nil {
		tu.Value = []byte{}
	}
	return tu.Value, nil
}
