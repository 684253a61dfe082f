package btree

import (
	"bytes"
	"fmt"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/pagecache"
	"github.com/heapkv/heapkv/xlog"
)

// Fill targets of a split that appends at the right end of a level: the
// left page keeps this share of its capacity (PostgreSQL's rightmost split
// fill factors), so ascending inserts leave full pages behind.
const (
	leafAppendFill     = 90
	internalAppendFill = 70
)

// heldPage is a page a split holds latched exclusively, with its new
// contents built aside: the shared page is not touched until the WAL
// record is in.
type heldPage struct {
	buf   pagecache.Buffer
	after page // the page's new contents; nil while not decided
	fresh bool // allocated by this split: logged as a full-page image
}

// splitter carries out one split and the cascade of downlink insertions
// above it. It collects every page it changes latched, logs them all as
// one record and only then changes the shared pages.
type splitter struct {
	t    *Tree
	held []heldPage
	// newRoot is the root made by a root split, InvalidBlock if none.
	newRoot      base.BlockNum
	newRootLevel int
}

func (s *splitter) holds(blk base.BlockNum) bool {
	for i := range s.held {
		if s.held[i].buf.BlockNum() == blk {
			return true
		}
	}
	return false
}

func (s *splitter) releaseAll() {
	for i := range s.held {
		s.held[i].buf.UnlockExclusive()
		s.held[i].buf.Release()
	}
	s.held = nil
}

func clonePage(p page) page {
	c := make(page, pagecache.BlockSize)
	copy(c, p)
	return c
}

// splitInsert inserts item at line pointer idx of the full leaf b, latched
// exclusively, by splitting it, releases b and returns the end LSN of the
// split's record. See doc.go, "Splits", for the protocol and the lock order.
func (t *Tree) splitInsert(b pagecache.Buffer, stack *pathStack, idx int, item []byte) (base.LSN, error) {
	s := splitter{t: t, newRoot: base.InvalidBlock}
	s.held = append(s.held, heldPage{buf: b})
	err := s.run(stack, idx, item)
	var end base.LSN
	if err == nil {
		end, err = s.log()
	}
	s.releaseAll()
	return end, err
}

// run builds the new contents of every page the split changes, latching
// them on its way up: the page that splits, its new right sibling, its old
// right sibling (whose left-link changes), then the parent that takes the
// downlink; if the parent is full it splits in turn, up to a new root.
func (s *splitter) run(stack *pathStack, idx int, item []byte) error {
	t := s.t
	cur := 0 // index in s.held of the page that takes item
	for level := 0; ; level++ {
		cb := s.held[cur].buf
		curBlk := cb.BlockNum()
		p := page(cb.Page())
		if p.freeSpace() >= len(item)+lpSize {
			after := clonePage(p)
			insertItem(after, idx, item)
			s.held[cur].after = after
			return nil
		}
		if len(s.held)+5 > xlog.MaxBlockRefs || level+1 >= MaxLevels {
			return fmt.Errorf("btree: relation %d: split at level %d: %w", t.rel, level, ErrTreeTooTall)
		}
		left, right, sep, err := splitPage(p, idx, item)
		if err != nil {
			return t.wrap(curBlk, err)
		}
		rb, err := t.pool.Extend(t.rel, nil)
		if err != nil {
			return fmt.Errorf("btree: relation %d: extend for a split: %w", t.rel, err)
		}
		rblk := rb.BlockNum()
		s.held = append(s.held, heldPage{buf: rb, after: right, fresh: true})
		oldRight := p.right()
		left.setRight(rblk)
		right.setLeft(curBlk)
		right.setRight(oldRight)
		s.held[cur].after = left

		if oldRight != base.InvalidBlock {
			if s.holds(oldRight) {
				return t.corrupt(curBlk, "right-link %d points at a page the split holds", oldRight)
			}
			sb, err := t.lock(oldRight, exclusiveLock)
			if err != nil {
				return err
			}
			s.held = append(s.held, heldPage{buf: sb})
			sp := page(sb.Page())
			if err := t.checkPage(oldRight, sp, level); err != nil {
				return err
			}
			if sp.left() != curBlk {
				return t.corrupt(oldRight, "left-link is %d, but the page is the right sibling of %d", sp.left(), curBlk)
			}
			sa := clonePage(sp)
			sa.setLeft(rblk)
			s.held[len(s.held)-1].after = sa
		}

		if p.isRoot() {
			return s.splitRoot(curBlk, rblk, sep, level)
		}

		pb, err := t.lockParent(stack, level+1, sep, s)
		if err != nil {
			return err
		}
		s.held = append(s.held, heldPage{buf: pb})
		pblk := pb.BlockNum()
		pp := page(pb.Page())
		at, ok := pp.searchInternal(sep)
		if !ok {
			return t.corrupt(pblk, "damaged internal page")
		}
		if c := pp.child(at); c != curBlk {
			return t.corrupt(pblk, "downlink for key %x is to block %d, expected %d (the page that split)", trunc(sep), c, curBlk)
		}
		if k := pp.key(at); bytes.Equal(k, sep) {
			return t.corrupt(pblk, "separator %x is in the parent already", trunc(sep))
		}
		item = appendItem(nil, sep, base.TID{Block: rblk})
		idx = at + 1
		cur = len(s.held) - 1
	}
}

// splitRoot makes a new root above the old root oldRoot (at level), which
// has just split into itself and rblk, and points the metapage at it.
func (s *splitter) splitRoot(oldRoot, rblk base.BlockNum, sep []byte, level int) error {
	t := s.t
	nb, err := t.pool.Extend(t.rel, nil)
	if err != nil {
		return fmt.Errorf("btree: relation %d: extend for a new root: %w", t.rel, err)
	}
	rp := make(page, pagecache.BlockSize)
	initPage(rp, level+1, flagRoot, base.InvalidBlock, base.InvalidBlock)
	insertItem(rp, 0, appendItem(nil, nil, base.TID{Block: oldRoot}))
	insertItem(rp, 1, appendItem(nil, sep, base.TID{Block: rblk}))
	s.held = append(s.held, heldPage{buf: nb, after: rp, fresh: true})

	// The metapage comes last in the lock order.
	mb, err := t.lock(metaBlock, exclusiveLock)
	if err != nil {
		return err
	}
	s.held = append(s.held, heldPage{buf: mb})
	root, rootLevel, err := decodeMeta(mb.Page())
	if err != nil {
		return t.wrap(metaBlock, err)
	}
	if root != oldRoot || rootLevel != level {
		return t.corrupt(metaBlock, "metapage names root %d at level %d, but block %d at level %d carries the root flag", root, rootLevel, oldRoot, level)
	}
	ma := clonePage(page(mb.Page()))
	setMetaRoot(ma, nb.BlockNum(), level+1)
	s.held[len(s.held)-1].after = ma
	s.newRoot, s.newRootLevel = nb.BlockNum(), level+1
	return nil
}

// lockParent returns, latched exclusively, the page at level whose key
// range holds key: the page the descent passed at that level, or, if the
// descent started below it (at a root that has split since), the page found
// by descending again from the metapage's root. It moves right as needed,
// one latch at a time, never onto a page the split holds.
func (t *Tree) lockParent(stack *pathStack, level int, key []byte, s *splitter) (pagecache.Buffer, error) {
	blk := stack[level]
	if blk == base.InvalidBlock {
		root, rootLevel, err := t.readMeta()
		if err != nil {
			return pagecache.Buffer{}, err
		}
		if rootLevel < level {
			return pagecache.Buffer{}, t.corrupt(metaBlock, "root at level %d, but a page of level %d without the root flag is splitting", rootLevel, level-1)
		}
		blk = root
		for l := rootLevel; l > level; l-- {
			b, err := t.lock(blk, shareLock)
			if err != nil {
				return b, err
			}
			if b, err = t.moveRight(b, l, key, toKey, shareLock); err != nil {
				return b, err
			}
			child, err := t.childFor(b.BlockNum(), page(b.Page()), key, toKey)
			unlock(b, shareLock)
			if err != nil {
				return pagecache.Buffer{}, err
			}
			blk = child
		}
	}
	var prevHigh []byte
	for {
		if s.holds(blk) {
			return pagecache.Buffer{}, t.corrupt(blk, "a split at level %d reached a page it holds", level-1)
		}
		b, err := t.lock(blk, exclusiveLock)
		if err != nil {
			return b, err
		}
		p := page(b.Page())
		err = t.checkPage(blk, p, level)
		if err == nil && prevHigh != nil {
			err = t.checkRightOf(blk, p, prevHigh)
		}
		if err != nil {
			unlock(b, exclusiveLock)
			return pagecache.Buffer{}, err
		}
		if p.rightmost() {
			return b, nil
		}
		hk := p.highKey()
		if hk == nil {
			unlock(b, exclusiveLock)
			return pagecache.Buffer{}, t.corrupt(blk, "damaged high key")
		}
		if bytes.Compare(key, hk) < 0 {
			return b, nil
		}
		prevHigh = append(prevHigh[:0], hk...)
		next := p.right()
		unlock(b, exclusiveLock)
		blk = next
	}
}

// log marks every changed page dirty, writes the split as one WAL record,
// every changed page a block reference (new pages as images, the others as
// deltas or, after a checkpoint, images), then installs the new contents
// and stamps them with the record's end. Until the record is in, no shared
// page has changed; a failed insert leaves the tree as it was (new pages
// stay zero and unreachable; the pages marked dirty are written unchanged).
func (s *splitter) log() (base.LSN, error) {
	t := s.t
	// Dirty before the insert, for the checkpoint (see logOp).
	for _, h := range s.held {
		if h.after != nil {
			h.buf.MarkDirty()
		}
	}
	var end base.LSN
	if t.wal != nil {
		rb := xlog.NewRecord(RmgrID, infoSplit, base.InvalidXID)
		for _, h := range s.held {
			if h.after == nil {
				continue
			}
			if h.fresh {
				rb.Image(t.rel, h.buf.BlockNum(), h.after)
			} else {
				rb.Page(t.rel, h.buf.BlockNum(), h.buf.Page(), h.after)
			}
		}
		var err error
		if _, end, err = t.wal.Insert(rb); err != nil {
			return 0, fmt.Errorf("btree: relation %d: log split: %w", t.rel, err)
		}
	}
	for _, h := range s.held {
		if h.after == nil {
			continue
		}
		p := h.buf.Page()
		copy(p, h.after)
		if t.wal != nil {
			p.SetLSN(end)
		}
	}
	if s.newRoot != base.InvalidBlock {
		t.setRoot(s.newRoot, s.newRootLevel)
	}
	return end, nil
}

// splitPage divides the data items of the full page p, plus item at line
// pointer idx, between a new left page (p's replacement) and a new right
// page, and returns both and the separator between them: the left page's
// new high key and the key of the right page's downlink in the parent.
//
// On a leaf the separator is the shortest prefix of the right page's first
// key that is above the left page's last key (suffix truncation, as
// PostgreSQL 12 does), so the levels above hold short keys. On an internal
// page the right page's first key moves up as the separator and the page
// keeps the downlink with an empty (minus infinity) key.
//
// The left page keeps p's left-link and flags (but not the root flag); the
// caller sets the links to the new right page.
func splitPage(p page, idx int, item []byte) (left, right page, sep []byte, err error) {
	fd, n := p.firstData(), p.nItems()
	items := make([][]byte, 0, n-fd+1)
	for i := fd; i < n; i++ {
		if i == idx {
			items = append(items, item)
		}
		it := p.item(i)
		if it == nil {
			return nil, nil, nil, base.CorruptionErrorf("damaged item %d", i)
		}
		items = append(items, it)
	}
	if idx >= n {
		items = append(items, item)
	}
	var high []byte
	if fd == 1 {
		if high = p.item(0); high == nil {
			return nil, nil, nil, base.CorruptionErrorf("damaged high key")
		}
	}
	leaf := p.isLeaf()
	appending := p.rightmost() && idx >= n
	m := chooseSplit(items, leaf, high, appending)
	if m <= 0 {
		return nil, nil, nil, base.CorruptionErrorf("no split point for %d items", len(items))
	}
	if leaf {
		a, b := items[m-1][itemHeaderSize:], items[m][itemHeaderSize:]
		sep = b[:separatorLen(a, b)]
	} else {
		sep = items[m][itemHeaderSize:]
	}
	sep = bytes.Clone(sep)

	level, flags := p.level(), p.flags()&^flagRoot
	left = make(page, pagecache.BlockSize)
	initPage(left, level, flags, p.left(), base.InvalidBlock)
	copy(left[:12], p[:12]) // the old LSN and checksum, as in the shared page
	insertItem(left, 0, appendItem(nil, sep, base.TID{}))
	for j := range m {
		insertItem(left, j+1, items[j])
	}
	right = make(page, pagecache.BlockSize)
	initPage(right, level, flags, base.InvalidBlock, base.InvalidBlock)
	k := 0
	if high != nil {
		insertItem(right, 0, high)
		k = 1
	}
	for j := m; j < len(items); j++ {
		it := items[j]
		if !leaf && j == m {
			it = appendItem(nil, nil, itemTID(it))
		}
		insertItem(right, k, it)
		k++
	}
	return left, right, sep, nil
}

// separatorLen returns the length of the shortest prefix of b that is above
// a, for a < b.
func separatorLen(a, b []byte) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return min(n+1, len(b))
}

// chooseSplit returns how many of items go to the left page: the split
// point that balances the two pages' bytes, or, when appending at the right
// end of a level, the one that fills the left page to its fill target. Both
// pages must fit: the left with its new high key, the right with the old
// one. It returns 0 if no split point fits (which the item size limit rules
// out).
func chooseSplit(items [][]byte, leaf bool, high []byte, appending bool) int {
	total := 0
	for _, it := range items {
		total += len(it) + lpSize
	}
	highRight := 0
	if high != nil {
		highRight = len(high) + lpSize
	}
	fill := leafAppendFill
	if !leaf {
		fill = internalAppendFill
	}
	limit := pageCapacity * fill / 100
	best, bestDiff, fillBest := 0, 0, 0
	leftItems := 0
	for m := 1; m < len(items); m++ {
		leftItems += len(items[m-1]) + lpSize
		first := items[m][itemHeaderSize:]
		sepLen := len(first)
		if leaf {
			sepLen = separatorLen(items[m-1][itemHeaderSize:], first)
		}
		leftUsed := leftItems + itemHeaderSize + sepLen + lpSize
		rightUsed := total - leftItems + highRight
		if !leaf {
			rightUsed -= len(first)
		}
		if leftUsed > pageCapacity || rightUsed > pageCapacity {
			continue
		}
		diff := leftUsed - rightUsed
		if diff < 0 {
			diff = -diff
		}
		if best == 0 || diff < bestDiff {
			best, bestDiff = m, diff
		}
		if leftUsed <= limit {
			fillBest = m
		}
	}
	if appending && fillBest > 0 {
		return fillBest
	}
	return best
}
