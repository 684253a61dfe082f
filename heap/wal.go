package heap

import (
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/pagecache"
	"github.com/heapkv/heapkv/xlog"
)

// RmgrHeap is the heap's resource manager id (xlog's list names them all).
const RmgrHeap = xlog.RmgrHeap

// The heap's WAL records. Each changes exactly one page, registered with
// RecordBuilder.PageOp, so xlog logs a full-page image instead of the
// operation data when the page was not logged since the redo point. The
// operation data (the block reference's data) is, little-endian:
//
// infoInsert: a tuple added at line pointer offnum
//
//	+--------+-------+-------+~~~~~~~~~~~~~~~~~~~~~~+
//	| offnum | flags |   0   | tuple (header, key,  |
//	|  u16   |  u8   |  u8   | value field)         |
//	+--------+-------+-------+~~~~~~~~~~~~~~~~~~~~~~+
//	flags: opInitPage (format the page first), opToastPage (as a TOAST page)
//
// infoSetXmax: xmax set on the tuple at offnum
//
//	+--------+-------+-------+---------------+
//	| offnum | flags |   0   |     xmax      |
//	|  u16   |  u8   |  u8   |      u64      |
//	+--------+-------+-------+---------------+
//	flags: opLockOnly (a row lock, not a delete)
//
// infoPrune: tuples freed, then the page compacted
//
//	+--------+--------+--------+--------+--------+~~~
//	| count  | offnum | action | offnum | action | ...
//	|  u16   |  u16   |   u8   |  u16   |   u8   |
//	+--------+--------+--------+--------+--------+~~~
//	action: pruneUnused, pruneDead, pruneStub
//
// infoHintImage: a full-page image logged before the first hint-bit change
// of a page after the redo point (Image; no operation data). Its redo is
// xlog's generic image restore.
const (
	infoInsert    uint8 = 0x00
	infoSetXmax   uint8 = 0x10
	infoPrune     uint8 = 0x20
	infoHintImage uint8 = 0x30

	opInitPage  = 1 << 0
	opToastPage = 1 << 1
	opLockOnly  = 1 << 0

	pruneUnused = 1
	pruneDead   = 2
	pruneStub   = 3
)

// RegisterRedo registers the heap's redo function with l. Call it after
// xlog.Open and before Recover.
func RegisterRedo(l *xlog.Log) error {
	return l.RegisterRmgr(RmgrHeap, "heap", redo)
}

func redo(rec *xlog.Record, ctx *xlog.RedoContext) error {
	var apply func(page []byte, ref *xlog.BlockRef) error
	switch rec.Info {
	case infoInsert:
		apply = redoInsert
	case infoSetXmax:
		apply = redoSetXmax
	case infoPrune:
		apply = redoPrune
	case infoHintImage:
		return xlog.GenericRedo(rec, ctx)
	default:
		return base.CorruptionErrorf("heap: unknown heap WAL record info %#x", rec.Info)
	}
	if len(rec.Blocks) != 1 {
		return base.CorruptionErrorf("heap: record info %#x with %d block references, want 1", rec.Info, len(rec.Blocks))
	}
	// pagecache.LockForRedo extends the file up to the block first, so a
	// page redo rebuilt earlier in this recovery is found in the pool.
	_, err := ctx.RedoBlock(rec, 0, apply)
	return err
}

// redoInsert replays infoInsert. Every check comes before the first change.
func redoInsert(page []byte, ref *xlog.BlockRef) error {
	op := ref.Data
	if len(op) < 4+tupleHeaderSize {
		return base.CorruptionErrorf("heap: insert record of %d bytes", len(op))
	}
	offnum := int(binary.LittleEndian.Uint16(op))
	flags := op[2]
	tup := op[4:]
	if _, err := decodeTupleHdr(tup); err != nil {
		return err
	}
	if len(tup) > maxTupleSpace {
		return base.CorruptionErrorf("heap: insert of a %d-byte tuple", len(tup))
	}
	p := pagecache.Page(page)
	if flags&opInitPage != 0 {
		initPage(p, flags&opToastPage != 0)
	} else if err := checkHeader(p); err != nil {
		return err
	}
	if isToastPage(p) != (flags&opToastPage != 0) {
		return base.CorruptionErrorf("heap: insert record and page disagree on TOAST")
	}
	return addItem(p, offnum, tup)
}

func encodeSetXmax(offnum int, xmax base.XID, lockOnly bool) []byte {
	var op [12]byte
	binary.LittleEndian.PutUint16(op[0:], uint16(offnum))
	if lockOnly {
		op[2] = opLockOnly
	}
	binary.LittleEndian.PutUint64(op[4:], uint64(xmax))
	return op[:]
}

func redoSetXmax(page []byte, ref *xlog.BlockRef) error {
	op := ref.Data
	if len(op) != 12 {
		return base.CorruptionErrorf("heap: set-xmax record of %d bytes", len(op))
	}
	p := pagecache.Page(page)
	if err := checkHeader(p); err != nil {
		return err
	}
	offnum := int(binary.LittleEndian.Uint16(op))
	off, n, ok, err := tupleAt(p, offnum)
	if err != nil {
		return err
	}
	if !ok {
		return base.CorruptionErrorf("heap: set-xmax of line pointer %d, which holds no tuple", offnum)
	}
	if _, err := decodeTupleHdr(p[off : off+n]); err != nil {
		return err
	}
	setXmaxLocked(p, off, base.XID(binary.LittleEndian.Uint64(op[4:])), op[2]&opLockOnly != 0)
	return nil
}

// setXmaxLocked writes xmax into the tuple at off and resets the xmax hint
// bits. The caller holds the page exclusively.
func setXmaxLocked(p pagecache.Page, off int, xmax base.XID, lockOnly bool) {
	binary.LittleEndian.PutUint64(p[off+offXmax:], uint64(xmax))
	m := binary.LittleEndian.Uint32(p[off+offMask:])
	m &^= uint32(xmaxHintBits)
	if lockOnly {
		m |= uint32(xmaxLockOnly)
	}
	binary.LittleEndian.PutUint32(p[off+offMask:], m)
}

type pruneAction struct {
	offnum int
	action uint8
}

func encodePrune(dst []byte, acts []pruneAction) []byte {
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(acts)))
	for _, a := range acts {
		dst = binary.LittleEndian.AppendUint16(dst, uint16(a.offnum))
		dst = append(dst, a.action)
	}
	return dst
}

func redoPrune(page []byte, ref *xlog.BlockRef) error {
	op := ref.Data
	if len(op) < 2 {
		return base.CorruptionErrorf("heap: prune record of %d bytes", len(op))
	}
	count := int(binary.LittleEndian.Uint16(op))
	if len(op) != 2+3*count {
		return base.CorruptionErrorf("heap: prune record of %d bytes for %d actions", len(op), count)
	}
	acts := make([]pruneAction, count)
	for i := range acts {
		e := op[2+3*i:]
		acts[i] = pruneAction{offnum: int(binary.LittleEndian.Uint16(e)), action: e[2]}
	}
	return applyPrune(pagecache.Page(page), acts)
}

// applyPrune frees the tuples acts name and compacts the page. Prune and
// its redo both call it. It validates the page and every action before
// changing anything.
func applyPrune(p pagecache.Page, acts []pruneAction) error {
	if err := checkHeader(p); err != nil {
		return err
	}
	for i := 1; i <= numLP(p); i++ {
		if _, _, _, err := tupleAt(p, i); err != nil {
			return err
		}
	}
	for _, a := range acts {
		off, n, ok, err := tupleAt(p, a.offnum)
		if err != nil {
			return err
		}
		if !ok {
			return base.CorruptionErrorf("heap: prune of line pointer %d, which holds no tuple", a.offnum)
		}
		h, err := decodeTupleHdr(p[off : off+n])
		if err != nil {
			return err
		}
		switch a.action {
		case pruneUnused, pruneDead:
		case pruneStub:
			if h.isChunk() {
				return base.CorruptionErrorf("heap: prune would make a stub of TOAST chunk %d", a.offnum)
			}
		default:
			return base.CorruptionErrorf("heap: unknown prune action %d", a.action)
		}
	}
	for _, a := range acts {
		lp := getLP(p, a.offnum)
		switch a.action {
		case pruneUnused:
			setLP(p, a.offnum, makeLP(0, lpUnused, 0))
		case pruneDead:
			setLP(p, a.offnum, makeLP(0, lpDead, 0))
		case pruneStub:
			off := lpOff(lp)
			klen := int(binary.LittleEndian.Uint16(p[off+offKeyLen:]))
			m := binary.LittleEndian.Uint32(p[off+offMask:])
			m = m&^(maskExternal|maskCompressed) | maskStub | uint32(xminInvalid)
			binary.LittleEndian.PutUint32(p[off+offMask:], m)
			binary.LittleEndian.PutUint32(p[off+offValLen:], 0)
			setLP(p, a.offnum, makeLP(off, lpNormal, tupleHeaderSize+klen))
		}
	}
	compact(p)
	return nil
}

// builderPool recycles record builders; a heap operation builds one record
// at a time.
var builderPool = sync.Pool{New: func() any { return new(xlog.RecordBuilder) }}

// pagePool recycles page-sized scratch buffers: the copy a change is undone
// from if its WAL insert fails, and the copy a hint image is taken of.
var pagePool = sync.Pool{New: func() any { return new([pagecache.BlockSize]byte) }}

// change is one WAL-logged change of one page, PostgreSQL's critical
// section: begin (after taking the exclusive lock) saves the page; the
// caller changes it; commit marks the buffer dirty, inserts the record and
// stamps the page with its end LSN, or, if the insert fails, puts the page
// back as it was. See doc.go, "WAL", for why the buffer is marked dirty
// before the record is inserted.
type change struct {
	h     *Heap
	b     pagecache.Buffer
	saved *[pagecache.BlockSize]byte
}

func (h *Heap) begin(b pagecache.Buffer) change {
	c := change{h: h, b: b, saved: pagePool.Get().(*[pagecache.BlockSize]byte)}
	copy(c.saved[:], b.Page())
	return c
}

// commit logs the change with operation data op for resource manager info
// and the transaction xid. The caller still holds the exclusive lock and
// releases it afterwards.
func (c change) commit(info uint8, xid base.XID, op []byte) error {
	defer pagePool.Put(c.saved)
	page := c.b.Page()
	c.b.MarkDirty()
	if c.h.wal == nil {
		return nil
	}
	rb := builderPool.Get().(*xlog.RecordBuilder)
	rb.Reset(RmgrHeap, info, xid)
	rb.PageOp(c.h.rel, c.b.BlockNum(), page, op)
	_, end, err := c.h.wal.Insert(rb)
	rb.Reset(0, 0, 0)
	builderPool.Put(rb)
	if err != nil {
		copy(page, c.saved[:])
		return fmt.Errorf("heap: log change of block %d of relation %d: %w", c.b.BlockNum(), c.h.rel, err)
	}
	page.SetLSN(end)
	return nil
}

// abort puts the page back, for a change given up before commit.
func (c change) abort() {
	copy(c.b.Page(), c.saved[:])
	pagePool.Put(c.saved)
}
