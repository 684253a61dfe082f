package btree

import (
	"bytes"
	"fmt"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/pagecache"
)

// Check verifies the B+tree in relation rel, like PostgreSQL's amcheck
// (bt_index_parent_check with heapallindexed off). It reads every page of
// the tree, level by level from the root, one page latched at a time, and
// checks:
//
//  1. the metapage, and that it names a root page that carries the root
//     flag, sits at the level the metapage says and has no siblings;
//  2. every page on its own (validatePage): header, line pointers, packed
//     items, zero free space, keys strictly ascending and below the high
//     key, leaf TIDs valid, the first downlink of an internal page minus
//     infinity;
//  3. that the pages of each level, read through the right-links from the
//     leftmost, are exactly the children of the level above in downlink
//     order (so every level is reachable and all leaves are at one depth),
//     that each page's left-link names the page before it, and that the
//     last page of each level is rightmost;
//  4. that each page's key range is the one its downlink gives it: its keys
//     are at or above the downlink's key (the page's low bound) and its high
//     key equals the next downlink's key (or the parent's high key for the
//     last child; none for the last child of a rightmost parent);
//  5. that no initialised page of the relation lies outside the tree (new,
//     all-zero pages may: a split that failed or was lost in a crash leaves
//     one behind).
//
// It returns nil or an error wrapping base.ErrCorrupt that names the block
// and the problem. Run it on a quiescent tree: a concurrent split makes it
// report a mismatch that is not there.
func Check(pool *pagecache.Pool, rel base.RelFileNode) error {
	t := &Tree{pool: pool, rel: rel}
	root, rootLevel, err := t.readMeta()
	if err != nil {
		return err
	}
	nblocks, err := pool.Storage().NBlocks(rel)
	if err != nil {
		return fmt.Errorf("btree: check relation %d: %w", rel, err)
	}
	if root >= nblocks {
		return t.corrupt(metaBlock, "root %d beyond the end of the relation (%d blocks)", root, nblocks)
	}
	reached := make([]bool, nblocks)
	reached[metaBlock] = true

	// expect lists the pages of the level being checked, in key order, as
	// the level above gave them: block and key range [low, high). low nil
	// is minus infinity, high nil plus infinity.
	type downlink struct {
		blk       base.BlockNum
		low, high []byte
		parent    base.BlockNum
	}
	expect := []downlink{{blk: root, parent: metaBlock}}
	for level := rootLevel; level >= 0; level-- {
		var next []downlink
		for i, d := range expect {
			if d.blk >= nblocks {
				return t.corrupt(d.parent, "downlink to block %d beyond the end of the relation (%d blocks)", d.blk, nblocks)
			}
			if reached[d.blk] {
				return t.corrupt(d.parent, "downlink to block %d, which is reached twice", d.blk)
			}
			reached[d.blk] = true
			b, err := t.lock(d.blk, shareLock)
			if err != nil {
				return err
			}
			p := page(b.Page())
			err = checkTreePage(t, d.blk, p, level, d.blk == root, i, len(expect), func(j int) base.BlockNum {
				return expect[j].blk
			}, d.low, d.high)
			if err == nil && level > 0 {
				n := p.nItems()
				pageHigh := p.highKey()
				for j := p.firstData(); j < n; j++ {
					low := d.low
					if j > p.firstData() {
						low = bytes.Clone(p.key(j))
					}
					var high []byte
					if j+1 < n {
						high = bytes.Clone(p.key(j + 1))
					} else if pageHigh != nil {
						high = bytes.Clone(pageHigh)
					}
					next = append(next, downlink{blk: p.child(j), low: low, high: high, parent: d.blk})
				}
			}
			unlock(b, shareLock)
			if err != nil {
				return err
			}
		}
		expect = next
	}

	for blk := metaBlock + 1; blk < nblocks; blk++ {
		if reached[blk] {
			continue
		}
		b, err := t.lock(blk, shareLock)
		if err != nil {
			return err
		}
		isNew := b.Page().IsNew()
		unlock(b, shareLock)
		if !isNew {
			return t.corrupt(blk, "initialised page is not reachable from the root")
		}
	}
	return nil
}

// checkTreePage checks page p, block blk, the i-th of n pages of its level,
// whose neighbours at that level are sibling(i-1) and sibling(i+1), and
// whose key range from the level above is [low, high).
func checkTreePage(t *Tree, blk base.BlockNum, p page, level int, isRoot bool, i, n int,
	sibling func(int) base.BlockNum, low, high []byte) error {
	if err := validatePage(p); err != nil {
		return t.wrap(blk, err)
	}
	if p.level() != level {
		return t.corrupt(blk, "page at level %d, but its downlink is on a page of level %d, so it should be at level %d", p.level(), level+1, level)
	}
	if p.isRoot() != isRoot {
		return t.corrupt(blk, "root flag is %v, but the metapage says root is %v", p.isRoot(), isRoot)
	}
	wantLeft, wantRight := base.InvalidBlock, base.InvalidBlock
	if i > 0 {
		wantLeft = sibling(i - 1)
	}
	if i+1 < n {
		wantRight = sibling(i + 1)
	}
	if p.left() != wantLeft {
		return t.corrupt(blk, "left-link is %d, but the page before it at level %d is %d", p.left(), level, wantLeft)
	}
	if p.right() != wantRight {
		return t.corrupt(blk, "right-link is %d, but the page after it at level %d is %d", p.right(), level, wantRight)
	}
	hk := p.highKey()
	switch {
	case high == nil && hk != nil:
		return t.corrupt(blk, "high key %x, but the page is the last of its level", trunc(hk))
	case high != nil && !bytes.Equal(hk, high):
		return t.corrupt(blk, "high key %x, but its parent bounds it by %x", trunc(hk), trunc(high))
	}
	// Keys at or above the low bound. Internal pages: the first downlink is
	// the low bound itself, the next keys must be above it.
	if low != nil {
		first := p.firstData()
		if !p.isLeaf() {
			first++
		}
		if first < p.nItems() {
			k := p.key(first)
			c := bytes.Compare(k, low)
			if c < 0 || (c == 0 && !p.isLeaf()) {
				return t.corrupt(blk, "key %x below the page's low bound %x from its parent", trunc(k), trunc(low))
			}
		}
	}
	return nil
}
