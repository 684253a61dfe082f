package btree

import (
	"bytes"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/pagecache"
)

// Iterator walks the entries of a key range in key order, forward or
// backward. It reads one leaf at a time: it latches the leaf in share mode,
// copies the leaf's matching entries into its own buffer, and releases the
// latch and the pin before returning the first of them, so between calls it
// holds nothing in the buffer pool and the caller may go to the heap (or
// stop) at leisure.
//
// The scan is not a snapshot: an entry inserted or deleted while it runs
// may or may not be seen. It returns each key at most once, in strictly
// increasing (or, backward, decreasing) order, and every entry present for
// the whole scan is returned.
//
// An Iterator is not safe for concurrent use. Use it as
//
//	it := t.Scan(start, end, false)
//	for it.Next() { use(it.Key(), it.TID()) }
//	err := it.Err()
//	it.Close()
type Iterator struct {
	t          *Tree
	start, end []byte // [start, end); nil: unbounded
	reverse    bool

	// The batch: the matches copied from one leaf, in the order returned.
	// Key i is keys[offs[i]:offs[i+1]].
	keys []byte
	offs []int
	tids []base.TID
	pos  int // index of the current entry in the batch

	started bool
	done    bool // no leaf left to read
	err     error
	// Forward: the leaf to read next (the right-link of the last one read,
	// as it was then). Backward: the leaf read last and its left-link as it
	// was then.
	next, cur, left base.BlockNum
	// bound is the last key returned from an earlier batch: forward the
	// next batch starts above it, backward below it. It keeps a key that a
	// concurrent split moved right from being returned twice.
	bound    []byte
	hasBound bool
	// prevHigh is the high key of the leaf read last (forward), checked
	// against the next one's (Tree.checkRightOf).
	prevHigh []byte
}

// Scan returns an iterator over the entries with start <= key < end, in
// ascending order, or descending if reverse. A nil start or end leaves that
// side unbounded; start >= end gives nothing. The iterator copies start and
// end.
func (t *Tree) Scan(start, end []byte, reverse bool) *Iterator {
	it := &Iterator{t: t, reverse: reverse, pos: -1}
	if start != nil {
		it.start = bytes.Clone(start)
	}
	if end != nil {
		it.end = bytes.Clone(end)
	}
	if start != nil && end != nil && bytes.Compare(start, end) >= 0 {
		it.done = true
	}
	return it
}

// Next moves to the next entry and reports whether there is one. After
// false, Err says whether the scan ended or failed.
func (it *Iterator) Next() bool {
	if it.err != nil {
		return false
	}
	it.pos++
	for it.pos >= len(it.tids) {
		if it.done {
			it.pos = len(it.tids)
			return false
		}
		var err error
		if it.reverse {
			err = it.loadBackward()
		} else {
			err = it.loadForward()
		}
		if err != nil {
			it.err = err
			it.done = true
			it.reset()
			return false
		}
		it.pos = 0
	}
	return true
}

// Key returns the current key. It is valid until the next call of Next or
// Close; copy it to keep it.
func (it *Iterator) Key() []byte {
	return it.keys[it.offs[it.pos]:it.offs[it.pos+1]]
}

// TID returns the current entry's TID.
func (it *Iterator) TID() base.TID { return it.tids[it.pos] }

// Err returns the error that stopped the scan, if any.
func (it *Iterator) Err() error { return it.err }

// Close ends the scan. It holds no pin or latch to release, so Close only
// drops the batch; it is safe to call more than once.
func (it *Iterator) Close() error {
	it.done = true
	it.reset()
	it.keys, it.offs, it.tids = nil, nil, nil
	return nil
}

func (it *Iterator) reset() {
	it.keys = it.keys[:0]
	it.offs = append(it.offs[:0], 0)
	it.tids = it.tids[:0]
	it.pos = 0
}

func (it *Iterator) add(key []byte, tid base.TID) {
	it.keys = append(it.keys, key...)
	it.offs = append(it.offs, len(it.keys))
	it.tids = append(it.tids, tid)
}

// lastKey returns the last key of the batch.
func (it *Iterator) lastKey() []byte {
	n := len(it.tids)
	return it.keys[it.offs[n-1]:it.offs[n]]
}

// loadForward copies the matches of the next leaf into the batch.
func (it *Iterator) loadForward() error {
	t := it.t
	it.reset()
	var b pagecache.Buffer
	var err error
	if !it.started {
		it.started = true
		to := toKey
		if it.start == nil {
			to = toLeftmost
		}
		b, err = t.descend(it.start, to, shareLock, nil)
	} else {
		b, err = t.lock(it.next, shareLock)
		if err == nil {
			err = t.checkPage(it.next, page(b.Page()), 0)
			if err == nil {
				err = t.checkRightOf(it.next, page(b.Page()), it.prevHigh)
			}
			if err != nil {
				unlock(b, shareLock)
			}
		}
	}
	if err != nil {
		return err
	}
	defer unlock(b, shareLock)
	p := page(b.Page())
	blk := b.BlockNum()

	var from int
	var ok bool
	switch {
	case it.hasBound:
		var found bool
		from, found, ok = p.searchLeaf(it.bound)
		if found {
			from++
		}
	case it.start != nil:
		from, _, ok = p.searchLeaf(it.start)
	default:
		from, ok = p.firstData(), true
	}
	if !ok {
		return t.corrupt(blk, "damaged leaf item")
	}
	for i := from; i < p.nItems(); i++ {
		k, tid, ok := p.entry(i)
		if !ok {
			return t.corrupt(blk, "damaged leaf item %d", i)
		}
		if it.end != nil && bytes.Compare(k, it.end) >= 0 {
			it.done = true
			break
		}
		it.add(k, tid)
	}
	it.next = p.right()
	if it.next == base.InvalidBlock {
		it.done = true
	} else if it.end != nil {
		// Everything right of this leaf is at or above its high key.
		hk := p.highKey()
		if hk == nil {
			return t.corrupt(blk, "damaged high key")
		}
		if bytes.Compare(hk, it.end) >= 0 {
			it.done = true
		}
	}
	if !it.done {
		it.prevHigh = append(it.prevHigh[:0], p.highKey()...)
	}
	if len(it.tids) > 0 {
		it.bound = append(it.bound[:0], it.lastKey()...)
		it.hasBound = true
	}
	return nil
}

// loadBackward copies the matches of the leaf left of the last one read
// into the batch, in descending order.
func (it *Iterator) loadBackward() error {
	t := it.t
	it.reset()
	var b pagecache.Buffer
	var err error
	if !it.started {
		it.started = true
		if it.end == nil {
			b, err = t.descend(nil, toRightmost, shareLock, nil)
		} else {
			b, err = t.descend(it.end, toKey, shareLock, nil)
		}
	} else {
		b, err = it.walkLeft()
	}
	if err != nil {
		return err
	}
	defer unlock(b, shareLock)
	p := page(b.Page())
	blk := b.BlockNum()

	// Copy the keys below the upper bound, from the top down.
	upper := it.end
	if it.hasBound {
		upper = it.bound
	}
	to := p.nItems()
	if upper != nil {
		var ok bool
		if to, _, ok = p.searchLeaf(upper); !ok {
			return t.corrupt(blk, "damaged leaf item")
		}
	}
	reachedStart := false
	for i := to - 1; i >= p.firstData(); i-- {
		k, tid, ok := p.entry(i)
		if !ok {
			return t.corrupt(blk, "damaged leaf item %d", i)
		}
		if it.start != nil && bytes.Compare(k, it.start) < 0 {
			reachedStart = true
			break
		}
		it.add(k, tid)
	}
	it.cur, it.left = blk, p.left()
	if reachedStart || it.left == base.InvalidBlock {
		it.done = true
	}
	if len(it.tids) > 0 {
		it.bound = append(it.bound[:0], it.lastKey()...)
		it.hasBound = true
	}
	return nil
}

// walkLeft latches the leaf that is now the left neighbour of it.cur. The
// left-link noted when it.cur was read may be stale: that page may have
// split since, and its new right halves lie between it and it.cur. Since
// pages only ever split to the right and are never removed, the true
// neighbour is found by following right-links from the noted page until one
// points at it.cur (PostgreSQL's _bt_walk_left does the same). One latch at
// a time.
func (it *Iterator) walkLeft() (pagecache.Buffer, error) {
	t := it.t
	blk := it.left
	var prevHigh []byte
	for {
		b, err := t.lock(blk, shareLock)
		if err != nil {
			return b, err
		}
		p := page(b.Page())
		err = t.checkPage(blk, p, 0)
		if err == nil && prevHigh != nil {
			err = t.checkRightOf(blk, p, prevHigh)
		}
		if err != nil {
			unlock(b, shareLock)
			return pagecache.Buffer{}, err
		}
		r := p.right()
		if r == it.cur {
			return b, nil
		}
		if r == base.InvalidBlock || p.highKey() == nil {
			unlock(b, shareLock)
			return pagecache.Buffer{}, t.corrupt(it.cur, "left-link leads to block %d, whose right-links never come back", it.left)
		}
		prevHigh = append(prevHigh[:0], p.highKey()...)
		unlock(b, shareLock)
		blk = r
	}
}
