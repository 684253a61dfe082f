package btree

import (
	"bytes"
	"encoding/binary"
	"slices"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/pagecache"
)

// The B+tree page, on the common page header of pagecache (page.go there).
// Everything is little-endian.
//
//	 0                                                            24
//	+------------------------------------------------------------+
//	| common header: LSN u64, checksum u32, flags u16 (unused),  |
//	| lower u16, upper u16, special u16, version u16, reserved   |
//	+----------+----------+----------+-------+-------------------+  24
//	| lp 0     | lp 1     | lp 2     |  ...  | lp n-1            |
//	| off|len  | off|len  | off|len  |       |                   |
//	+----------+----------+----------+-------+-------------------+  lower
//	|                free space, all zero bytes                  |
//	+------------------------------------------------------------+  upper
//	|   items, packed without gaps, in no particular order       |
//	|   (an insert takes the space just below upper; a delete    |
//	|    moves the items below the hole up and fixes their lps)  |
//	+------+------+-------+-------+-------+----------------------+  special = 8176
//	| left | right| level | flags | magic | reserved             |
//	| u32  | u32  | u16   | u16   | u16   | u16                  |
//	+------+------+-------+-------+-------+----------------------+  8192
//
// A line pointer (lp) is the item's offset and length, u16 each. The line
// pointers are in key order; the items they point at lie anywhere between
// upper and special, and together fill that space exactly.
//
// An item is an 8-byte header and the key:
//
//	+--------+-----------+-----------+------------------+
//	| keylen | block     | offset    | key (keylen)     |
//	| u16    | u32       | u16       |                  |
//	+--------+-----------+-----------+------------------+
//
// On a leaf (block, offset) is the heap TID the key maps to. On an internal
// page it is a downlink: block is the child, offset is 0. A high key carries
// block 0 and offset 0.
//
// Line pointer 0 of a page that has a right sibling is its high key, an
// upper bound (exclusive) of every key on the page and at or below every key
// of the right sibling (PostgreSQL's P_HIKEY). The rightmost page of a level
// has no high key: its bound is +infinity. The data items follow. On an
// internal page the first data item's key is empty and stands for minus
// infinity (really the page's low bound, the separator of its downlink in
// the parent); item i's child covers [key i, key i+1), the last one
// [key last, high key).
//
// The special space holds the sibling links (InvalidBlock at the ends of a
// level), the level (0 for leaves), the flags and a magic number that tells
// a B+tree page from any other initialised page.
//
// The metapage (block 0) carries the same header and special space (flags =
// flagMeta) and, right after the header, where line pointers would be:
//
//	+-----------+-----------+-----------+-----------+
//	| magic u32 | version   | root u32  | level u32 |
//	+-----------+-----------+-----------+-----------+
//
// with lower just past it, so that a full-page image (which leaves out the
// free space between lower and upper) keeps it.
const (
	// MaxKeySize is the longest key the tree accepts (the engine's key
	// limit). Seven items of this size fit a page, so a split always leaves
	// at least three on each side.
	MaxKeySize = base.MaxKeySize

	// MaxLevels bounds the height of a tree; stacks are sized by it.
	MaxLevels = 32

	specialSize    = 16
	specialOff     = pagecache.BlockSize - specialSize
	lpSize         = 4
	itemHeaderSize = 8
	maxItemSize    = itemHeaderSize + MaxKeySize
	firstLP        = pagecache.PageHeaderSize
	// pageCapacity is the room for line pointers and items on a page.
	pageCapacity = specialOff - firstLP

	spLeft  = specialOff + 0
	spRight = specialOff + 4
	spLevel = specialOff + 8
	spFlags = specialOff + 10
	spMagic = specialOff + 12

	pageMagic = 0x6274 // "bt"

	flagLeaf = 1 << 0 // level 0
	flagRoot = 1 << 1 // the root named by the metapage
	flagMeta = 1 << 2 // the metapage
	allFlags = flagLeaf | flagRoot | flagMeta

	metaBlock   base.BlockNum = 0
	metaOff                   = pagecache.PageHeaderSize
	metaSize                  = 16
	metaMagic   uint32        = 0x504d5442 // "BTMP"
	metaVersion uint32        = 1
)

// page is a view of a B+tree page. Its accessors never index outside the
// page once sane has accepted the header; an item whose line pointer or
// header is out of bounds reads as a nil key (see key), which the callers
// report as corruption.
type page []byte

func (p page) hdr() pagecache.Page { return pagecache.Page(p) }

func (p page) left() base.BlockNum {
	return base.BlockNum(binary.LittleEndian.Uint32(p[spLeft:]))
}
func (p page) right() base.BlockNum {
	return base.BlockNum(binary.LittleEndian.Uint32(p[spRight:]))
}
func (p page) level() int      { return int(binary.LittleEndian.Uint16(p[spLevel:])) }
func (p page) flags() uint16   { return binary.LittleEndian.Uint16(p[spFlags:]) }
func (p page) isLeaf() bool    { return p.flags()&flagLeaf != 0 }
func (p page) isRoot() bool    { return p.flags()&flagRoot != 0 }
func (p page) rightmost() bool { return p.right() == base.InvalidBlock }

func (p page) setLeft(b base.BlockNum) { binary.LittleEndian.PutUint32(p[spLeft:], uint32(b)) }
func (p page) setRight(b base.BlockNum) {
	binary.LittleEndian.PutUint32(p[spRight:], uint32(b))
}
func (p page) setFlags(f uint16) { binary.LittleEndian.PutUint16(p[spFlags:], f) }

// initPage formats p as an empty B+tree page.
func initPage(p page, level int, flags uint16, left, right base.BlockNum) {
	p.hdr().Init(specialSize)
	p.setLeft(left)
	p.setRight(right)
	binary.LittleEndian.PutUint16(p[spLevel:], uint16(level))
	p.setFlags(flags)
	binary.LittleEndian.PutUint16(p[spMagic:], pageMagic)
}

// sane reports whether p's header and special space are those of an
// initialised B+tree page, in O(1). After it the line pointer array lies
// within the page, so nItems and lp are safe.
func (p page) sane() bool {
	if len(p) != pagecache.BlockSize {
		return false
	}
	h := p.hdr()
	lower, upper, special := int(h.Lower()), int(h.Upper()), int(h.Special())
	return h.Version() == pagecache.PageLayoutVersion &&
		special == specialOff && lower >= firstLP && lower <= upper && upper <= special &&
		(lower-firstLP)%lpSize == 0 &&
		binary.LittleEndian.Uint16(p[spMagic:]) == pageMagic &&
		p.flags()&^allFlags == 0 && p.flags()&flagMeta == 0 &&
		(p.level() == 0) == p.isLeaf()
}

// nItems returns the number of line pointers, the high key included.
func (p page) nItems() int { return (int(p.hdr().Lower()) - firstLP) / lpSize }

// firstData returns the index of the first data item: 1 if the page has a
// high key, else 0.
func (p page) firstData() int {
	if p.rightmost() {
		return 0
	}
	return 1
}

// freeSpace returns the bytes between the line pointers and the items.
func (p page) freeSpace() int { return int(p.hdr().Upper()) - int(p.hdr().Lower()) }

// lp returns line pointer i.
func (p page) lp(i int) (off, n int) {
	at := firstLP + i*lpSize
	return int(binary.LittleEndian.Uint16(p[at:])), int(binary.LittleEndian.Uint16(p[at+2:]))
}

func (p page) setLP(i, off, n int) {
	at := firstLP + i*lpSize
	binary.LittleEndian.PutUint16(p[at:], uint16(off))
	binary.LittleEndian.PutUint16(p[at+2:], uint16(n))
}

// item returns the bytes of item i (header and key), or nil if its line
// pointer or header is out of bounds. i must be below nItems.
func (p page) item(i int) []byte {
	off, n := p.lp(i)
	if n < itemHeaderSize || off < firstLP || off+n > specialOff {
		return nil
	}
	it := p[off : off+n : off+n]
	if int(binary.LittleEndian.Uint16(it))+itemHeaderSize != n {
		return nil
	}
	return it
}

// key returns the key of item i, or nil if the item is damaged. The key of
// an internal page's first data item is empty but not nil.
func (p page) key(i int) []byte {
	it := p.item(i)
	if it == nil {
		return nil
	}
	return it[itemHeaderSize:]
}

// entry returns the key and TID of item i; ok is false if it is damaged.
func (p page) entry(i int) (key []byte, tid base.TID, ok bool) {
	it := p.item(i)
	if it == nil {
		return nil, base.TID{}, false
	}
	return it[itemHeaderSize:], itemTID(it), true
}

// highKey returns the high key, nil for the rightmost page (or a damaged
// high key; sane pages with a damaged one fail validatePage).
func (p page) highKey() []byte {
	if p.rightmost() || p.nItems() == 0 {
		return nil
	}
	return p.key(0)
}

func itemTID(it []byte) base.TID {
	return base.TID{
		Block:  base.BlockNum(binary.LittleEndian.Uint32(it[2:])),
		Offset: binary.LittleEndian.Uint16(it[6:]),
	}
}

// appendItem appends an item for key and tid to dst.
func appendItem(dst, key []byte, tid base.TID) []byte {
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(key)))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(tid.Block))
	dst = binary.LittleEndian.AppendUint16(dst, tid.Offset)
	return append(dst, key...)
}

// validItem reports whether it is a well-formed item.
func validItem(it []byte) bool {
	return len(it) >= itemHeaderSize && len(it) <= maxItemSize &&
		int(binary.LittleEndian.Uint16(it))+itemHeaderSize == len(it)
}

// insertItem puts item at line pointer index idx, shifting the line
// pointers from idx on. The caller has checked that idx <= nItems and that
// the page has len(item)+lpSize bytes free. Do and redo both come here, so
// the page bytes they produce are the same.
func insertItem(p page, idx int, item []byte) {
	h := p.hdr()
	lower, upper := int(h.Lower()), int(h.Upper())
	newUpper := upper - len(item)
	copy(p[newUpper:upper], item)
	at := firstLP + idx*lpSize
	copy(p[at+lpSize:lower+lpSize], p[at:lower])
	p.setLP(idx, newUpper, len(item))
	h.SetLower(uint16(lower + lpSize))
	h.SetUpper(uint16(newUpper))
}

// deleteItem removes line pointer idx and its item, moving the items below
// it up so that the items stay packed, and zeroes the space it frees (the
// free space must stay zero: a full-page image leaves it out and redo
// restores it as zeros, and later deltas assume the bytes are equal). The
// caller has checked idx < nItems and upper <= off, off+n <= special.
func deleteItem(p page, idx int) {
	h := p.hdr()
	lower, upper := int(h.Lower()), int(h.Upper())
	off, n := p.lp(idx)
	copy(p[upper+n:off+n], p[upper:off])
	clear(p[upper : upper+n])
	at := firstLP + idx*lpSize
	copy(p[at:lower-lpSize], p[at+lpSize:lower])
	clear(p[lower-lpSize : lower])
	lower -= lpSize
	for i := range (lower - firstLP) / lpSize {
		if o, l := p.lp(i); o < off {
			p.setLP(i, o+n, l)
		}
	}
	h.SetLower(uint16(lower))
	h.SetUpper(uint16(upper + n))
}

// setItemTID overwrites the TID of item it in place.
func setItemTID(it []byte, tid base.TID) {
	binary.LittleEndian.PutUint32(it[2:], uint32(tid.Block))
	binary.LittleEndian.PutUint16(it[6:], tid.Offset)
}

// searchLeaf returns the index of the first data item whose key is >= key
// and whether that key equals key. ok is false if a damaged item was met.
func (p page) searchLeaf(key []byte) (idx int, found, ok bool) {
	lo, hi := p.firstData(), p.nItems()
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		k := p.key(mid)
		if k == nil {
			return 0, false, false
		}
		if bytes.Compare(k, key) < 0 {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo < p.nItems() {
		k := p.key(lo)
		if k == nil {
			return 0, false, false
		}
		return lo, bytes.Equal(k, key), true
	}
	return lo, false, true
}

// searchInternal returns the index of the last data item whose key is <= key
// on an internal page (the first data item counts as minus infinity): the
// downlink to follow for key. ok is false if the page has no data item or a
// damaged one.
func (p page) searchInternal(key []byte) (idx int, ok bool) {
	fd, n := p.firstData(), p.nItems()
	if fd >= n {
		return 0, false
	}
	lo, hi := fd+1, n
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		k := p.key(mid)
		if k == nil {
			return 0, false
		}
		if bytes.Compare(k, key) <= 0 {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo - 1, true
}

// child returns the downlink of item i, or InvalidBlock if it is damaged.
func (p page) child(i int) base.BlockNum {
	it := p.item(i)
	if it == nil {
		return base.InvalidBlock
	}
	return itemTID(it).Block
}

// validatePage checks everything about a B+tree page that can be checked
// without looking at other pages: the header, the special space, every
// line pointer and item, that the items tile [upper, special) exactly, that
// the free space is zero, that the keys are in strictly ascending order and
// below the high key, and that leaf TIDs and downlinks can be valid. It is
// the decoder of B+tree pages: it returns an error wrapping base.ErrCorrupt
// for anything wrong and never panics, whatever the bytes.
func validatePage(b []byte) error {
	p := page(b)
	if len(p) != pagecache.BlockSize {
		return base.CorruptionErrorf("page of %d bytes", len(p))
	}
	h := p.hdr()
	if h.IsNew() {
		return base.CorruptionErrorf("page is not initialised")
	}
	if h.Version() != pagecache.PageLayoutVersion {
		return base.CorruptionErrorf("page layout version %d", h.Version())
	}
	lower, upper, special := int(h.Lower()), int(h.Upper()), int(h.Special())
	if special != specialOff || lower < firstLP || lower > upper || upper > special || (lower-firstLP)%lpSize != 0 {
		return base.CorruptionErrorf("bad page bounds lower %d upper %d special %d", lower, upper, special)
	}
	if m := binary.LittleEndian.Uint16(p[spMagic:]); m != pageMagic {
		return base.CorruptionErrorf("special space magic %#x is not a B+tree page's", m)
	}
	f := p.flags()
	if f&^allFlags != 0 || f&flagMeta != 0 {
		return base.CorruptionErrorf("bad page flags %#x", f)
	}
	if (p.level() == 0) != p.isLeaf() {
		return base.CorruptionErrorf("level %d does not agree with flags %#x", p.level(), f)
	}
	if p.level() >= MaxLevels {
		return base.CorruptionErrorf("level %d above the maximum %d", p.level(), MaxLevels-1)
	}
	if p.isRoot() && (p.left() != base.InvalidBlock || p.right() != base.InvalidBlock) {
		return base.CorruptionErrorf("root page has siblings (left %d right %d)", p.left(), p.right())
	}
	for i := lower; i < upper; i++ {
		if p[i] != 0 {
			return base.CorruptionErrorf("free space byte at offset %d is not zero", i)
		}
	}
	if binary.LittleEndian.Uint16(p[spMagic+2:]) != 0 {
		return base.CorruptionErrorf("reserved special bytes are not zero")
	}

	n := p.nItems()
	type span struct{ off, n int }
	spans := make([]span, 0, n)
	total := 0
	for i := range n {
		off, l := p.lp(i)
		if off < upper || off+l > special || l < itemHeaderSize {
			return base.CorruptionErrorf("line pointer %d (offset %d, length %d) outside the items [%d, %d)", i, off, l, upper, special)
		}
		if kl := int(binary.LittleEndian.Uint16(p[off:])); kl+itemHeaderSize != l || kl > MaxKeySize {
			return base.CorruptionErrorf("item %d: key length %d does not fit item length %d", i, kl, l)
		}
		spans = append(spans, span{off, l})
		total += l
	}
	if total != special-upper {
		return base.CorruptionErrorf("items take %d bytes, but [upper, special) is %d", total, special-upper)
	}
	slices.SortFunc(spans, func(a, b span) int { return a.off - b.off })
	for i := 1; i < len(spans); i++ {
		if spans[i-1].off+spans[i-1].n != spans[i].off {
			return base.CorruptionErrorf("items at offsets %d and %d overlap or leave a gap", spans[i-1].off, spans[i].off)
		}
	}

	fd := p.firstData()
	var high []byte
	if fd == 1 {
		if n == 0 {
			return base.CorruptionErrorf("page has a right sibling but no high key")
		}
		it := p.item(0)
		high = it[itemHeaderSize:]
		if len(high) == 0 {
			return base.CorruptionErrorf("empty high key")
		}
		if tid := itemTID(it); tid != (base.TID{}) {
			return base.CorruptionErrorf("high key carries TID %v", tid)
		}
	}
	if !p.isLeaf() && fd >= n {
		return base.CorruptionErrorf("internal page without downlinks")
	}
	var prev []byte
	for i := fd; i < n; i++ {
		it := p.item(i)
		k, tid := it[itemHeaderSize:], itemTID(it)
		if p.isLeaf() {
			if len(k) == 0 {
				return base.CorruptionErrorf("item %d: empty key", i)
			}
			if !tid.Valid() {
				return base.CorruptionErrorf("item %d: invalid TID %v", i, tid)
			}
		} else {
			if (i == fd) != (len(k) == 0) {
				return base.CorruptionErrorf("item %d: only the first downlink has an empty (minus infinity) key", i)
			}
			if tid.Offset != 0 || tid.Block == base.InvalidBlock || tid.Block == metaBlock {
				return base.CorruptionErrorf("item %d: bad downlink %v", i, tid)
			}
		}
		if i > fd || p.isLeaf() {
			if prev != nil && bytes.Compare(prev, k) >= 0 {
				return base.CorruptionErrorf("item %d: key %x not above the previous key %x", i, trunc(k), trunc(prev))
			}
			if high != nil && bytes.Compare(k, high) >= 0 {
				return base.CorruptionErrorf("item %d: key %x not below the high key %x", i, trunc(k), trunc(high))
			}
			prev = k
		}
	}
	return nil
}

// trunc shortens a key for an error message.
func trunc(k []byte) []byte {
	if len(k) > 32 {
		return k[:32]
	}
	return k
}

// Metapage accessors.

func initMeta(p page, root base.BlockNum, level int) {
	p.hdr().Init(specialSize)
	binary.LittleEndian.PutUint32(p[metaOff:], metaMagic)
	binary.LittleEndian.PutUint32(p[metaOff+4:], metaVersion)
	setMetaRoot(p, root, level)
	p.hdr().SetLower(metaOff + metaSize)
	p.setLeft(base.InvalidBlock)
	p.setRight(base.InvalidBlock)
	p.setFlags(flagMeta)
	binary.LittleEndian.PutUint16(p[spMagic:], pageMagic)
}

func setMetaRoot(p page, root base.BlockNum, level int) {
	binary.LittleEndian.PutUint32(p[metaOff+8:], uint32(root))
	binary.LittleEndian.PutUint32(p[metaOff+12:], uint32(level))
}

// decodeMeta checks a metapage and returns the root and its level. Errors
// wrap base.ErrCorrupt; it never panics.
func decodeMeta(b []byte) (root base.BlockNum, level int, err error) {
	p := page(b)
	if len(p) != pagecache.BlockSize {
		return 0, 0, base.CorruptionErrorf("metapage of %d bytes", len(p))
	}
	h := p.hdr()
	if h.IsNew() {
		return 0, 0, base.CorruptionErrorf("metapage is not initialised")
	}
	if h.Version() != pagecache.PageLayoutVersion || int(h.Special()) != specialOff ||
		int(h.Lower()) != metaOff+metaSize || h.Upper() != h.Special() ||
		binary.LittleEndian.Uint16(p[spMagic:]) != pageMagic || p.flags() != flagMeta {
		return 0, 0, base.CorruptionErrorf("not a B+tree metapage")
	}
	if m := binary.LittleEndian.Uint32(p[metaOff:]); m != metaMagic {
		return 0, 0, base.CorruptionErrorf("metapage magic %#x", m)
	}
	if v := binary.LittleEndian.Uint32(p[metaOff+4:]); v != metaVersion {
		return 0, 0, base.CorruptionErrorf("metapage version %d, this code reads %d", v, metaVersion)
	}
	root = base.BlockNum(binary.LittleEndian.Uint32(p[metaOff+8:]))
	lv := binary.LittleEndian.Uint32(p[metaOff+12:])
	if root == metaBlock || root == base.InvalidBlock || lv >= MaxLevels {
		return 0, 0, base.CorruptionErrorf("metapage names root %d at level %d", root, lv)
	}
	return root, int(lv), nil
}
