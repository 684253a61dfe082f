package btree

import (
	"bytes"
	"fmt"
	"sync/atomic"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/pagecache"
	"github.com/heapkv/heapkv/xlog"
)

// Tree is a B+tree index over one relation: one entry per key, mapping the
// key to the TID of its newest heap version. A Tree may be used by many
// goroutines at once; see doc.go for the locking rules. Open at most one
// Tree per relation (the root is cached in it).
type Tree struct {
	pool *pagecache.Pool
	wal  *xlog.Log // nil: not WAL-logged (a temporary relation)
	rel  base.RelFileNode

	// root caches the metapage's root as block<<32 | level. It may be
	// stale (the root split since): a stale root is still a page of its
	// level that covers the whole key space through its right-links, so
	// descents starting there are correct, only longer. Updated by the
	// root split that this Tree performs, and whenever the metapage is
	// read.
	root atomic.Uint64
}

type lockMode uint8

const (
	shareLock lockMode = iota
	exclusiveLock
)

// target says where a descent goes.
type target uint8

const (
	toKey       target = iota // the leaf whose key range holds the key
	toLeftmost                // the first leaf
	toRightmost               // the last leaf
)

// pathStack remembers, per level above the leaves, the page a descent went
// through; InvalidBlock where it did not go (above a stale root).
type pathStack [MaxLevels]base.BlockNum

func newPathStack() pathStack {
	var s pathStack
	for i := range s {
		s[i] = base.InvalidBlock
	}
	return s
}

// Create creates relation rel as an empty B+tree: the metapage at block 0
// and an empty root leaf at block 1, WAL-logged as one record of two
// full-page images. The relation must not exist or be empty. The record is
// not flushed: the caller makes the creation durable (with the commit that
// creates the keyspace). wal nil makes an unlogged tree.
func Create(pool *pagecache.Pool, wal *xlog.Log, rel base.RelFileNode) (*Tree, error) {
	smgr := pool.Storage()
	if err := smgr.Create(rel); err != nil {
		return nil, fmt.Errorf("btree: create relation %d: %w", rel, err)
	}
	n, err := smgr.NBlocks(rel)
	if err != nil {
		return nil, fmt.Errorf("btree: create relation %d: %w", rel, err)
	}
	if n != 0 {
		return nil, fmt.Errorf("btree: create relation %d of %d blocks: %w", rel, n, ErrRelationExists)
	}
	mb, err := pool.Extend(rel, nil)
	if err != nil {
		return nil, fmt.Errorf("btree: create relation %d: %w", rel, err)
	}
	rb, err := pool.Extend(rel, nil)
	if err != nil {
		mb.UnlockExclusive()
		mb.Release()
		return nil, fmt.Errorf("btree: create relation %d: %w", rel, err)
	}
	defer func() {
		rb.UnlockExclusive()
		rb.Release()
		mb.UnlockExclusive()
		mb.Release()
	}()
	if mb.BlockNum() != metaBlock || rb.BlockNum() != metaBlock+1 {
		return nil, fmt.Errorf("btree: create relation %d: got blocks %d and %d: %w", rel, mb.BlockNum(), rb.BlockNum(), ErrRelationExists)
	}
	initMeta(page(mb.Page()), rb.BlockNum(), 0)
	initPage(page(rb.Page()), 0, flagLeaf|flagRoot, base.InvalidBlock, base.InvalidBlock)
	mb.MarkDirty() // before the WAL insert; see logOp
	rb.MarkDirty()
	if wal != nil {
		rec := xlog.NewRecord(RmgrID, infoCreate, base.InvalidXID).
			Image(rel, mb.BlockNum(), mb.Page()).
			Image(rel, rb.BlockNum(), rb.Page())
		_, end, err := wal.Insert(rec)
		if err != nil {
			// Leave zero pages behind: Open reports them as not a tree.
			clear(mb.Page())
			clear(rb.Page())
			return nil, fmt.Errorf("btree: create relation %d: %w", rel, err)
		}
		mb.Page().SetLSN(end)
		rb.Page().SetLSN(end)
	}
	t := &Tree{pool: pool, wal: wal, rel: rel}
	t.setRoot(rb.BlockNum(), 0)
	return t, nil
}

// Open opens the B+tree in relation rel, reading its metapage. wal nil
// opens it unlogged.
func Open(pool *pagecache.Pool, wal *xlog.Log, rel base.RelFileNode) (*Tree, error) {
	t := &Tree{pool: pool, wal: wal, rel: rel}
	if _, _, err := t.readMeta(); err != nil {
		return nil, err
	}
	return t, nil
}

// Rel returns the tree's relation.
func (t *Tree) Rel() base.RelFileNode { return t.rel }

func (t *Tree) setRoot(blk base.BlockNum, level int) {
	t.root.Store(uint64(blk)<<32 | uint64(level))
}

func (t *Tree) rootInfo() (base.BlockNum, int) {
	v := t.root.Load()
	return base.BlockNum(v >> 32), int(uint32(v))
}

// readMeta reads the metapage, refreshes the cached root and returns it.
func (t *Tree) readMeta() (base.BlockNum, int, error) {
	b, err := t.lock(metaBlock, shareLock)
	if err != nil {
		return 0, 0, err
	}
	root, level, err := decodeMeta(b.Page())
	unlock(b, shareLock)
	if err != nil {
		return 0, 0, t.wrap(metaBlock, err)
	}
	t.setRoot(root, level)
	return root, level, nil
}

// wrap adds the relation and block to an error about a page.
func (t *Tree) wrap(blk base.BlockNum, err error) error {
	return fmt.Errorf("btree: relation %d block %d: %w", t.rel, blk, err)
}

// corrupt returns an error wrapping base.ErrCorrupt about block blk.
func (t *Tree) corrupt(blk base.BlockNum, format string, args ...any) error {
	return base.CorruptionErrorf("btree: relation %d block %d: %s", t.rel, blk, fmt.Sprintf(format, args...))
}

// lock pins block blk and takes its content latch.
func (t *Tree) lock(blk base.BlockNum, mode lockMode) (pagecache.Buffer, error) {
	b, err := t.pool.ReadBuffer(t.rel, blk, pagecache.ReadNormal, nil)
	if err != nil {
		return b, t.wrap(blk, err)
	}
	if mode == exclusiveLock {
		b.LockExclusive()
	} else {
		b.LockShare()
	}
	return b, nil
}

// unlock releases the latch and the pin.
func unlock(b pagecache.Buffer, mode lockMode) {
	if mode == exclusiveLock {
		b.UnlockExclusive()
	} else {
		b.UnlockShare()
	}
	b.Release()
}

// checkPage checks, in O(1), that a latched page is a B+tree page of the
// expected level.
func (t *Tree) checkPage(blk base.BlockNum, p page, level int) error {
	if !p.sane() {
		if p.hdr().IsNew() {
			return t.corrupt(blk, "page is not initialised (expected a page of level %d)", level)
		}
		return t.corrupt(blk, "not a valid B+tree page")
	}
	if p.level() != level {
		return t.corrupt(blk, "page is at level %d, expected %d", p.level(), level)
	}
	return nil
}

// checkRightOf checks that page p, block blk, reached through a right-link
// from a page whose high key was prevHigh, lies to the right of it: the high
// keys of a level strictly increase from left to right (a page's high key is
// above its low bound, which is its left neighbour's high key), concurrent
// splits or not. Every walk along right-links checks this at each step, so a
// damaged link that closes a cycle is reported instead of followed forever.
func (t *Tree) checkRightOf(blk base.BlockNum, p page, prevHigh []byte) error {
	if p.rightmost() {
		return nil
	}
	hk := p.highKey()
	if hk == nil {
		return t.corrupt(blk, "damaged high key")
	}
	if bytes.Compare(hk, prevHigh) <= 0 {
		return t.corrupt(blk, "high key %x is not above the high key %x of the page whose right-link led here", trunc(hk), trunc(prevHigh))
	}
	return nil
}

// moveRight follows right-links from the latched page b (at level) while
// the target lies beyond its high key: the Lehman-Yao recovery from a
// concurrent split. It releases each page before latching its right
// sibling, so it never holds two latches. It returns the page whose range
// holds the target, latched in mode.
func (t *Tree) moveRight(b pagecache.Buffer, level int, key []byte, to target, mode lockMode) (pagecache.Buffer, error) {
	var prevHigh []byte
	for {
		blk := b.BlockNum()
		p := page(b.Page())
		err := t.checkPage(blk, p, level)
		if err == nil && prevHigh != nil {
			err = t.checkRightOf(blk, p, prevHigh)
		}
		if err != nil {
			unlock(b, mode)
			return pagecache.Buffer{}, err
		}
		if p.rightmost() || to == toLeftmost {
			return b, nil
		}
		hk := p.highKey()
		if hk == nil {
			unlock(b, mode)
			return pagecache.Buffer{}, t.corrupt(blk, "damaged high key")
		}
		if to == toKey && bytes.Compare(key, hk) < 0 {
			return b, nil
		}
		prevHigh = append(prevHigh[:0], hk...)
		next := p.right()
		unlock(b, mode)
		nb, err := t.lock(next, mode)
		if err != nil {
			return pagecache.Buffer{}, err
		}
		b = nb
	}
}

// childFor returns the downlink to follow on the internal page p.
func (t *Tree) childFor(blk base.BlockNum, p page, key []byte, to target) (base.BlockNum, error) {
	var idx int
	switch to {
	case toLeftmost:
		idx = p.firstData()
	case toRightmost:
		idx = p.nItems() - 1
	default:
		var ok bool
		if idx, ok = p.searchInternal(key); !ok {
			return 0, t.corrupt(blk, "damaged internal page")
		}
	}
	if idx < p.firstData() || idx >= p.nItems() {
		return 0, t.corrupt(blk, "internal page without downlinks")
	}
	c := p.child(idx)
	if c == base.InvalidBlock || c == metaBlock {
		return 0, t.corrupt(blk, "damaged downlink at item %d", idx)
	}
	return c, nil
}

// descend walks from the root to the leaf for key (or the first or last
// leaf), holding one latch at a time: internal pages in share mode, the
// leaf in mode. It returns the leaf latched. If stack is not nil it records
// the internal page it passed at each level.
func (t *Tree) descend(key []byte, to target, mode lockMode, stack *pathStack) (pagecache.Buffer, error) {
	blk, level := t.rootInfo()
	for {
		m := shareLock
		if level == 0 {
			m = mode
		}
		b, err := t.lock(blk, m)
		if err != nil {
			return b, err
		}
		if b, err = t.moveRight(b, level, key, to, m); err != nil {
			return b, err
		}
		if level == 0 {
			return b, nil
		}
		blk = b.BlockNum()
		child, err := t.childFor(blk, page(b.Page()), key, to)
		unlock(b, m)
		if err != nil {
			return pagecache.Buffer{}, err
		}
		if stack != nil {
			stack[level] = blk
		}
		blk = child
		level--
	}
}

func checkKey(key []byte) error { return base.CheckKey(key, ErrEmptyKey, ErrKeyTooLarge) }

// Lookup returns the TID key maps to, and whether the key is there.
func (t *Tree) Lookup(key []byte) (base.TID, bool, error) {
	if err := checkKey(key); err != nil {
		return base.TID{}, false, err
	}
	b, err := t.descend(key, toKey, shareLock, nil)
	if err != nil {
		return base.TID{}, false, err
	}
	defer unlock(b, shareLock)
	p := page(b.Page())
	idx, found, ok := p.searchLeaf(key)
	if !ok {
		return base.TID{}, false, t.corrupt(b.BlockNum(), "damaged leaf item")
	}
	if !found {
		return base.TID{}, false, nil
	}
	_, tid, _ := p.entry(idx)
	return tid, true, nil
}

// Insert adds key -> tid unless key is in the tree already; then it
// returns the TID the key maps to and inserted false, and changes nothing.
// Of several goroutines inserting the same key at once exactly one gets
// inserted true. The change is WAL-logged but not flushed.
func (t *Tree) Insert(key []byte, tid base.TID) (existing base.TID, inserted bool, err error) {
	existing, inserted, _, err = t.insert(key, tid)
	return existing, inserted, err
}

// insert is Insert that also returns the end LSN of the WAL record that
// made the change (0 if none was made or the tree is unlogged): the insert
// is durable once the WAL is flushed that far.
func (t *Tree) insert(key []byte, tid base.TID) (existing base.TID, inserted bool, end base.LSN, err error) {
	if err := checkKey(key); err != nil {
		return base.TID{}, false, 0, err
	}
	if !tid.Valid() {
		return base.TID{}, false, 0, fmt.Errorf("%w: %v", ErrInvalidTID, tid)
	}
	stack := newPathStack()
	b, err := t.descend(key, toKey, exclusiveLock, &stack)
	if err != nil {
		return base.TID{}, false, 0, err
	}
	p := page(b.Page())
	idx, found, ok := p.searchLeaf(key)
	if !ok {
		unlock(b, exclusiveLock)
		return base.TID{}, false, 0, t.corrupt(b.BlockNum(), "damaged leaf item")
	}
	if found {
		_, old, _ := p.entry(idx)
		unlock(b, exclusiveLock)
		return old, false, 0, nil
	}
	var buf [2 + maxItemSize]byte
	item := appendItem(buf[2:2], key, tid)
	if p.freeSpace() >= len(item)+lpSize {
		op := insertOp(buf[:0], idx, item)
		end, err := t.logOp(b, infoInsert, op, func(p page) { deleteItem(p, idx) })
		unlock(b, exclusiveLock)
		if err != nil {
			return base.TID{}, false, 0, err
		}
		return base.TID{}, true, end, nil
	}
	// The leaf is full: split it (the split releases b).
	end, err = t.splitInsert(b, &stack, idx, item)
	if err != nil {
		return base.TID{}, false, 0, err
	}
	return base.TID{}, true, end, nil
}

// lockEntry descends to key's leaf, latched exclusively, and reports
// whether key's entry there maps to want, with its index. On a nil error
// the caller unlocks b, found or not.
func (t *Tree) lockEntry(key []byte, want base.TID) (b pagecache.Buffer, idx int, found bool, err error) {
	b, err = t.descend(key, toKey, exclusiveLock, nil)
	if err != nil {
		return b, 0, false, err
	}
	p := page(b.Page())
	idx, found, ok := p.searchLeaf(key)
	if !ok {
		unlock(b, exclusiveLock)
		return b, 0, false, t.corrupt(b.BlockNum(), "damaged leaf item")
	}
	if !found {
		return b, idx, false, nil
	}
	_, cur, _ := p.entry(idx)
	return b, idx, cur == want, nil
}

// Repoint changes the entry of key from old to new in place (a compare and
// swap on the TID). It reports false, changing nothing, if key is absent or
// maps to another TID.
func (t *Tree) Repoint(key []byte, old, new base.TID) (bool, error) {
	if err := checkKey(key); err != nil {
		return false, err
	}
	if !new.Valid() {
		return false, fmt.Errorf("%w: %v", ErrInvalidTID, new)
	}
	b, idx, found, err := t.lockEntry(key, old)
	if err != nil {
		return false, err
	}
	defer unlock(b, exclusiveLock)
	if !found {
		return false, nil
	}
	if old == new {
		return true, nil
	}
	var buf [8]byte
	_, err = t.logOp(b, infoRepoint, repointOp(buf[:0], idx, new), func(p page) { setItemTID(p.item(idx), old) })
	return err == nil, err
}

// Delete removes the entry of key if it maps to tid (a compare and swap),
// and reports whether it did. The leaf stays in the tree even if it becomes
// empty (see doc.go).
func (t *Tree) Delete(key []byte, tid base.TID) (bool, error) {
	if err := checkKey(key); err != nil {
		return false, err
	}
	b, idx, found, err := t.lockEntry(key, tid)
	if err != nil {
		return false, err
	}
	defer unlock(b, exclusiveLock)
	if !found {
		return false, nil
	}
	var saved [maxItemSize]byte
	item := append(saved[:0], page(b.Page()).item(idx)...)
	var buf [2]byte
	_, err = t.logOp(b, infoDelete, deleteOp(buf[:0], idx), func(p page) { insertItem(p, idx, item) })
	return err == nil, err
}
