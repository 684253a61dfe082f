package heap

import (
	"encoding/binary"
	"slices"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/pagecache"
)

// A heap page is a slotted page on pagecache's common header. Line pointers
// grow up from the header, tuples grow down from the end of the page; the
// heap uses no special space (special = BlockSize).
//
//	 0                     24      28      32
//	+---------------------+-------+-------+-------+--- ... ---+
//	| common page header  | lp 1  | lp 2  | lp 3  |  -> lower  |
//	+---------------------+-------+-------+-------+--- ... ---+
//	|                 free space                               |
//	+------------------+------------------+--------------------+
//	| upper -> tuple 3 |      tuple 1     |      tuple 2       |
//	+------------------+------------------+--------------------+ BlockSize
//
// The common header (pagecache/page.go): page LSN u64, checksum u32, flags
// u16, lower u16, upper u16, special u16, layout version u16, reserved u16.
// The heap's page flags are flagToast and flagHasFreeLines below.
//
// A line pointer is one little-endian u32:
//
//	 31                17 16 15 14                   0
//	+--------------------+-----+----------------------+
//	|   length (15 bits) |flags|   offset (15 bits)   |
//	+--------------------+-----+----------------------+
//
//	flags  0 unused: free for reuse, offset and length 0
//	       1 normal: offset/length locate a tuple
//	       3 dead:   the tuple's storage was freed, but an index entry may
//	                 still carry this TID, so the slot is not reused until
//	                 vacuum has removed such entries; offset and length 0
//	       (2 is PostgreSQL's redirect, which the heap does not use)
//
// Line pointers are numbered from 1; a TID's offset is that number.
const (
	lpSize = 4

	lpUnused = 0
	lpNormal = 1
	lpDead   = 3

	// flagToast marks a page that holds TOAST chunks; other pages hold row
	// versions. A page never holds both.
	flagToast uint16 = 1 << 0
	// flagHasFreeLines says some line pointer is unused, so an insert
	// should look for it before adding one (PostgreSQL's PD_HAS_FREE_LINES).
	flagHasFreeLines uint16 = 1 << 1
	flagsKnown              = flagToast | flagHasFreeLines

	// maxTupleSpace is the most a tuple can occupy on an empty page.
	maxTupleSpace = (pagecache.BlockSize - pagecache.PageHeaderSize - lpSize) &^ 7
	// maxLinePointers bounds the line pointer array (offsets are u16 and
	// the array cannot outgrow the page).
	maxLinePointers = (pagecache.BlockSize - pagecache.PageHeaderSize) / lpSize
)

func makeLP(off, flags, length int) uint32 {
	return uint32(off) | uint32(flags)<<15 | uint32(length)<<17
}

func lpOff(lp uint32) int   { return int(lp & 0x7FFF) }
func lpFlags(lp uint32) int { return int(lp>>15) & 3 }
func lpLen(lp uint32) int   { return int(lp >> 17) }

// numLP returns the number of line pointers of an initialised page.
func numLP(p pagecache.Page) int {
	return (int(p.Lower()) - pagecache.PageHeaderSize) / lpSize
}

func lpPos(i int) int { return pagecache.PageHeaderSize + (i-1)*lpSize }

// getLP returns line pointer i (1-based); the caller checks 1 <= i <= numLP.
func getLP(p pagecache.Page, i int) uint32 {
	return binary.LittleEndian.Uint32(p[lpPos(i):])
}

func setLP(p pagecache.Page, i int, lp uint32) {
	binary.LittleEndian.PutUint32(p[lpPos(i):], lp)
}

// initPage formats p as an empty heap page, or TOAST page if toast.
func initPage(p pagecache.Page, toast bool) {
	p.Init(0)
	if toast {
		p.SetFlags(flagToast)
	}
}

func isToastPage(p pagecache.Page) bool { return p.Flags()&flagToast != 0 }

// checkHeader checks the parts of an initialised page's header that the
// heap relies on before it indexes into the page. It never panics.
func checkHeader(p pagecache.Page) error {
	if len(p) != pagecache.BlockSize {
		return base.CorruptionErrorf("heap: page of %d bytes", len(p))
	}
	lower, upper, special := int(p.Lower()), int(p.Upper()), int(p.Special())
	switch {
	case p.Version() != pagecache.PageLayoutVersion:
		return base.CorruptionErrorf("heap: page layout version %d, want %d", p.Version(), pagecache.PageLayoutVersion)
	case special != pagecache.BlockSize:
		return base.CorruptionErrorf("heap: special space at %d; heap pages have none", special)
	case lower < pagecache.PageHeaderSize || (lower-pagecache.PageHeaderSize)%lpSize != 0:
		return base.CorruptionErrorf("heap: lower %d is not the end of a line pointer array", lower)
	case upper < lower || upper > special || upper%8 != 0:
		return base.CorruptionErrorf("heap: upper %d outside [lower %d, special %d] or not aligned", upper, lower, special)
	case p.Flags()&^flagsKnown != 0:
		return base.CorruptionErrorf("heap: unknown page flags %#x", p.Flags())
	}
	return nil
}

// tupleAt returns the page offset and length of the tuple of line pointer
// i. ok is false if i is out of range or its line pointer is not normal (no
// such tuple). A normal line pointer that points outside the tuple space is
// damage.
func tupleAt(p pagecache.Page, i int) (off, n int, ok bool, err error) {
	if i < 1 || i > numLP(p) {
		return 0, 0, false, nil
	}
	lp := getLP(p, i)
	switch lpFlags(lp) {
	case lpNormal:
	case lpUnused, lpDead:
		return 0, 0, false, nil
	default:
		return 0, 0, false, base.CorruptionErrorf("heap: line pointer %d has flags %d", i, lpFlags(lp))
	}
	off, n = lpOff(lp), lpLen(lp)
	if off%8 != 0 || off < int(p.Upper()) || n < tupleHeaderSize || off+n > int(p.Special()) {
		return 0, 0, false, base.CorruptionErrorf("heap: line pointer %d locates %d bytes at %d, outside the tuple space [%d, %d)", i, n, off, p.Upper(), p.Special())
	}
	return off, n, true, nil
}

// freeSpace returns the bytes a new tuple (aligned) may occupy on p: the
// gap between line pointers and tuples, less a new line pointer unless an
// unused one can be reused. A new (zero) page is empty.
func freeSpace(p pagecache.Page) int {
	if p.IsNew() {
		return maxTupleSpace
	}
	n := int(p.Upper()) - int(p.Lower())
	if p.Flags()&flagHasFreeLines == 0 {
		if numLP(p) >= maxLinePointers {
			return 0
		}
		n -= lpSize
	}
	return max(n, 0) &^ 7
}

// chooseOffset returns the line pointer a new tuple gets: the first unused
// one if the page has any, else a new one at the end.
func chooseOffset(p pagecache.Page) int {
	n := numLP(p)
	if p.Flags()&flagHasFreeLines != 0 {
		for i := 1; i <= n; i++ {
			if lpFlags(getLP(p, i)) == lpUnused {
				return i
			}
		}
	}
	return n + 1
}

// addItem places tup at line pointer i, which must be unused or the next
// new one, below the current upper. Insert and its redo both call it, so
// replay builds the same page. It checks everything before changing p and
// returns an error wrapping base.ErrCorrupt if tup does not fit there.
func addItem(p pagecache.Page, i int, tup []byte) error {
	n := numLP(p)
	alen := align8(len(tup))
	need := alen
	switch {
	case i == n+1 && n < maxLinePointers:
		need += lpSize
	case i >= 1 && i <= n && lpFlags(getLP(p, i)) == lpUnused:
	default:
		return base.CorruptionErrorf("heap: cannot add a tuple at line pointer %d of %d", i, n)
	}
	if len(tup) < tupleHeaderSize || int(p.Upper())-int(p.Lower()) < need {
		return base.CorruptionErrorf("heap: tuple of %d bytes does not fit between %d and %d", len(tup), p.Lower(), p.Upper())
	}
	upper := int(p.Upper()) - alen
	copy(p[upper:], tup)
	clear(p[upper+len(tup) : upper+alen])
	if i == n+1 {
		p.SetLower(p.Lower() + lpSize)
	}
	setLP(p, i, makeLP(upper, lpNormal, len(tup)))
	p.SetUpper(uint16(upper))
	if i <= n {
		updateFreeLines(p)
	}
	return nil
}

// updateFreeLines sets flagHasFreeLines iff some line pointer is unused.
func updateFreeLines(p pagecache.Page) {
	f := p.Flags() &^ flagHasFreeLines
	for i := 1; i <= numLP(p); i++ {
		if lpFlags(getLP(p, i)) == lpUnused {
			f |= flagHasFreeLines
			break
		}
	}
	p.SetFlags(f)
}

// compact packs the normal tuples of p against the end of the page in the
// order of their offsets (PostgreSQL's PageRepairFragmentation), drops
// unused line pointers from the end of the array, zeroes the free space and
// resets flagHasFreeLines. Prune and its redo both call it on the same
// line pointers, so replay builds the same page. The caller has checked the
// line pointers (tupleAt) so that every normal one lies in the tuple space.
func compact(p pagecache.Page) {
	type item struct{ i, off, n int }
	var stack [256]item
	items := stack[:0]
	n := numLP(p)
	for i := 1; i <= n; i++ {
		lp := getLP(p, i)
		if lpFlags(lp) == lpNormal {
			items = append(items, item{i, lpOff(lp), lpLen(lp)})
		}
	}
	// Highest offset first: each tuple moves up (or stays), and never onto
	// a tuple not yet moved, which all lie below it.
	slices.SortFunc(items, func(a, b item) int { return b.off - a.off })
	upper := int(p.Special())
	for _, it := range items {
		dst := upper - align8(it.n)
		copy(p[dst:dst+it.n], p[it.off:it.off+it.n])
		clear(p[dst+it.n : dst+align8(it.n)])
		setLP(p, it.i, makeLP(dst, lpNormal, it.n))
		upper = dst
	}
	for n > 0 && lpFlags(getLP(p, n)) == lpUnused {
		n--
	}
	lower := pagecache.PageHeaderSize + n*lpSize
	clear(p[lower:upper])
	p.SetLower(uint16(lower))
	p.SetUpper(uint16(upper))
	updateFreeLines(p)
}
