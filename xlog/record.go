package xlog

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/pagecache"
)

// The record format. Everything is little-endian. A record starts at an LSN
// that is a multiple of 8 and is followed by zero padding up to the next
// multiple of 8, where the next record starts; that position is the record's
// end LSN (PostgreSQL's EndRecPtr), the LSN redo stamps on the pages the
// record changed.
//
// Record header, 32 bytes:
//
//	 0       4       8               16              24   25   26      28      32
//	+-------+-------+---------------+---------------+----+----+-------+-------+
//	|tot_len|  crc  |      xid      |     prev      |rmid|info|nblocks|paylen |
//	+-------+-------+---------------+---------------+----+----+-------+-------+
//
//	tot_len  u32  bytes of header + block references + payload (no padding)
//	crc      u32  CRC-32C of bytes [32, tot_len) followed by bytes [0,4) and [8,32)
//	xid      u64  transaction that wrote the record, 0 if none
//	prev     u64  start LSN of the previous record (0 for the very first one)
//	rmid     u8   resource manager that knows how to redo the record
//	info     u8   resource manager's opcode and flags
//	nblocks  u16  number of block references that follow
//	paylen   u32  bytes of payload after the block references
//
// Block reference, 20 bytes of header then datalen bytes of data:
//
//	 0    1    2       4       6       8       12      16      20
//	+----+----+-------+-------+-------+-------+-------+-------+----------~
//	|kind|comp|holeoff|holelen|  0    |  rel  |  blk  |datalen| data ...
//	+----+----+-------+-------+-------+-------+-------+-------+----------~
//
//	kind     BlockImage: data is the page minus its hole, maybe compressed
//	         BlockDelta: data is a page delta (see delta.go)
//	         BlockData:  data is the resource manager's own operation data
//	comp     for images: CompressionNone, CompressionS2 or CompressionZstd
//	holeoff, holelen   for images: the free space left out, zero on restore
//
// The CRC covers the body first and the header last (as PostgreSQL does) so
// that the body's CRC can be computed before the record has a position: prev
// is only known once space is reserved.
const (
	// HeaderSize is the size of a record header.
	HeaderSize = 32
	// blockRefHeaderSize is the size of a block reference's header.
	blockRefHeaderSize = 20
	// MaxRecordSize bounds tot_len. A length above it is garbage.
	MaxRecordSize = 256 << 20
	// MaxBlockRefs bounds the block references of one record.
	MaxBlockRefs = 64

	recAlign = 8
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// RmgrID names a resource manager. The layers above xlog register their
// redo for theirs with Log.RegisterRmgr.
type RmgrID uint8

// The resource managers, all in one list as in PostgreSQL's rmgrlist.h:
// an id is written into every WAL record, so ids are never reused or
// renumbered, and a new resource manager takes the next free one here.
const (
	RmgrXLOG  RmgrID = 0 // xlog itself: checkpoints, plain page images
	RmgrTxn   RmgrID = 1 // txn: commit, abort, prepare, CLOG page zeroing
	RmgrHeap  RmgrID = 2 // heap: tuples, hint images, pruning, TOAST
	RmgrBtree RmgrID = 3 // btree: creation, inserts and repoints, splits
)

// Info values of RmgrXLOG records.
const (
	// InfoCheckpointShutdown marks the checkpoint written by Close.
	InfoCheckpointShutdown uint8 = 0x10
	// InfoCheckpointOnline marks a checkpoint taken while the log runs.
	InfoCheckpointOnline uint8 = 0x20
	// InfoPage marks a record that carries only block references (images or
	// deltas); its redo is GenericRedo. Anyone may insert such records.
	InfoPage uint8 = 0x30
	// InfoNoop marks a record with no effect (used to test the log itself).
	InfoNoop uint8 = 0x40
)

// BlockKind says what a block reference carries.
type BlockKind uint8

const (
	// BlockImage is a full-page image.
	BlockImage BlockKind = 1
	// BlockDelta is a generic page delta: the byte ranges that changed.
	BlockDelta BlockKind = 2
	// BlockData is a resource manager's operation data for the page; only
	// its redo function knows how to apply it.
	BlockData BlockKind = 3
)

func (k BlockKind) String() string {
	switch k {
	case BlockImage:
		return "image"
	case BlockDelta:
		return "delta"
	case BlockData:
		return "data"
	}
	return fmt.Sprintf("BlockKind(%d)", uint8(k))
}

// Record is one decoded WAL record. Slices in it (Payload, each block's Data)
// point into the buffer it was decoded from: a Record from a Reader is valid
// until the next call of Next.
type Record struct {
	LSN     base.LSN // where the record starts
	End     base.LSN // where the next record starts; redo stamps pages with it
	Prev    base.LSN // start of the previous record
	XID     base.XID
	Rmgr    RmgrID
	Info    uint8
	Blocks  []BlockRef
	Payload []byte
}

// BlockRef is a block reference: which page a record changed and how.
type BlockRef struct {
	Rel         base.RelFileNode
	Block       base.BlockNum
	Kind        BlockKind
	Compression Compression // images only
	HoleOffset  uint16      // images only: start of the free space left out
	HoleLength  uint16      // images only: its length
	Data        []byte
}

func align8(n int64) int64 { return (n + recAlign - 1) &^ (recAlign - 1) }

// DecodeRecord decodes the record at the start of b, which must hold at
// least tot_len bytes. It checks the length, the CRC and the structure and
// returns an error wrapping base.ErrCorrupt for anything wrong; it never
// panics. LSN and End are left zero for the caller to set; Prev comes from
// the header. The record's slices point into b.
func DecodeRecord(b []byte) (*Record, error) {
	rec := new(Record)
	if err := decodeRecordInto(rec, b); err != nil {
		return nil, err
	}
	return rec, nil
}

// recordLength returns tot_len from a header, or an error if it cannot be
// a record's.
func recordLength(hdr []byte) (int64, error) {
	n := int64(binary.LittleEndian.Uint32(hdr[0:]))
	if n < HeaderSize || n > MaxRecordSize {
		return n, base.CorruptionErrorf("xlog: record length %d out of range", n)
	}
	return n, nil
}

func recordCRC(rec []byte) uint32 {
	c := crc32.Update(0, castagnoli, rec[HeaderSize:])
	c = crc32.Update(c, castagnoli, rec[0:4])
	return crc32.Update(c, castagnoli, rec[8:HeaderSize])
}

// errBadCRC is what checkRecord reports for a CRC mismatch, so that the
// reader can tell it from a bad length.
type crcError struct{ want, got uint32 }

func (e *crcError) Error() string {
	return fmt.Sprintf("xlog: record CRC mismatch: stored %08x, computed %08x", e.want, e.got)
}
func (e *crcError) Is(target error) bool { return target == base.ErrCorrupt }

// checkRecord verifies length and CRC of the record at the start of b and
// returns its length.
func checkRecord(b []byte) (int64, error) {
	if len(b) < HeaderSize {
		return 0, base.CorruptionErrorf("xlog: %d bytes is shorter than a record header", len(b))
	}
	n, err := recordLength(b)
	if err != nil {
		return 0, err
	}
	if int64(len(b)) < n {
		return 0, base.CorruptionErrorf("xlog: record of %d bytes truncated to %d", n, len(b))
	}
	want := binary.LittleEndian.Uint32(b[4:])
	if got := recordCRC(b[:n]); got != want {
		return 0, &crcError{want: want, got: got}
	}
	return n, nil
}

func decodeRecordInto(rec *Record, b []byte) error {
	n, err := checkRecord(b)
	if err != nil {
		return err
	}
	return decodeCheckedInto(rec, b[:n])
}

// decodeCheckedInto decodes the record b, whose length and CRC the caller
// has checked (len(b) is tot_len).
func decodeCheckedInto(rec *Record, b []byte) error {
	rec.XID = base.XID(binary.LittleEndian.Uint64(b[8:]))
	rec.Prev = base.LSN(binary.LittleEndian.Uint64(b[16:]))
	rec.Rmgr = RmgrID(b[24])
	rec.Info = b[25]
	nblocks := int(binary.LittleEndian.Uint16(b[26:]))
	paylen := int64(binary.LittleEndian.Uint32(b[28:]))
	if nblocks > MaxBlockRefs {
		return base.CorruptionErrorf("xlog: record has %d block references, at most %d allowed", nblocks, MaxBlockRefs)
	}
	rec.Blocks = rec.Blocks[:0]
	p := b[HeaderSize:]
	for i := range nblocks {
		if len(p) < blockRefHeaderSize {
			return base.CorruptionErrorf("xlog: block reference %d truncated", i)
		}
		ref := BlockRef{
			Kind:        BlockKind(p[0]),
			Compression: Compression(p[1]),
			HoleOffset:  binary.LittleEndian.Uint16(p[2:]),
			HoleLength:  binary.LittleEndian.Uint16(p[4:]),
			Rel:         base.RelFileNode(binary.LittleEndian.Uint32(p[8:])),
			Block:       base.BlockNum(binary.LittleEndian.Uint32(p[12:])),
		}
		dlen := int64(binary.LittleEndian.Uint32(p[16:]))
		p = p[blockRefHeaderSize:]
		if dlen > int64(len(p)) {
			return base.CorruptionErrorf("xlog: block reference %d claims %d bytes, %d left", i, dlen, len(p))
		}
		ref.Data = p[:dlen:dlen]
		p = p[dlen:]
		if err := ref.validate(); err != nil {
			return fmt.Errorf("block reference %d: %w", i, err)
		}
		rec.Blocks = append(rec.Blocks, ref)
	}
	if int64(len(p)) != paylen {
		return base.CorruptionErrorf("xlog: record payload is %d bytes, header says %d", len(p), paylen)
	}
	rec.Payload = p[:len(p):len(p)]
	return nil
}

func (r *BlockRef) validate() error {
	switch r.Kind {
	case BlockImage:
		if int(r.HoleOffset)+int(r.HoleLength) > pagecache.BlockSize {
			return base.CorruptionErrorf("xlog: image hole %d+%d beyond the page", r.HoleOffset, r.HoleLength)
		}
		if r.Compression > CompressionZstd {
			return base.CorruptionErrorf("xlog: unknown image compression %d", r.Compression)
		}
		if r.Compression == CompressionNone && len(r.Data) != pagecache.BlockSize-int(r.HoleLength) {
			return base.CorruptionErrorf("xlog: raw image of %d bytes, want %d", len(r.Data), pagecache.BlockSize-int(r.HoleLength))
		}
	case BlockDelta, BlockData:
		if r.Compression != 0 || r.HoleOffset != 0 || r.HoleLength != 0 {
			return base.CorruptionErrorf("xlog: %v block reference with image fields set", r.Kind)
		}
	default:
		return base.CorruptionErrorf("xlog: unknown block reference kind %d", uint8(r.Kind))
	}
	return nil
}

// RecordBuilder assembles a record for Log.Insert. It keeps references to
// the slices handed to it until Insert returns; the caller must not change
// them before then. A builder may be reused after Reset.
//
// The page methods implement the full-page-write rule: the caller hands in
// the page and Insert decides, by comparing the page's LSN with the current
// redo pointer, whether the record carries a full-page image or only the
// change. The caller holds the page's exclusive lock from before the change
// until it has stamped the page with the end LSN Insert returns, and passes
// the page with its old LSN still in place.
type RecordBuilder struct {
	rmgr    RmgrID
	info    uint8
	xid     base.XID
	pages   []pageReg
	payload []byte
}

type pageReg struct {
	rel    base.RelFileNode
	blk    base.BlockNum
	before []byte // for Page: the page before the change
	after  []byte // the page after the change (old LSN still in its header)
	op     []byte // for PageOp: the operation data
	kind   BlockKind
	image  bool // always log an image
}

// NewRecord starts a record for resource manager rmgr.
func NewRecord(rmgr RmgrID, info uint8, xid base.XID) *RecordBuilder {
	return &RecordBuilder{rmgr: rmgr, info: info, xid: xid}
}

// Reset empties the builder for a new record.
func (b *RecordBuilder) Reset(rmgr RmgrID, info uint8, xid base.XID) {
	*b = RecordBuilder{rmgr: rmgr, info: info, xid: xid, pages: b.pages[:0]}
}

// SetPayload sets the record's main data.
func (b *RecordBuilder) SetPayload(p []byte) *RecordBuilder {
	b.payload = p
	return b
}

// Page registers a change of block blk of rel from before to after. The
// record carries a full-page image of after if full-page writes are on and
// the page has not been logged since the redo point (its LSN is at or below
// the redo LSN), and a delta of the changed bytes otherwise.
func (b *RecordBuilder) Page(rel base.RelFileNode, blk base.BlockNum, before, after []byte) *RecordBuilder {
	b.pages = append(b.pages, pageReg{rel: rel, blk: blk, before: before, after: after, kind: BlockDelta})
	return b
}

// PageOp registers a change of block blk described by the resource
// manager's own operation data op; page is the page after the change (with
// its old LSN). The record carries op, or a full-page image of page when the
// full-page-write rule asks for one, in which case op is dropped, as
// PostgreSQL drops a block's data when it takes its image.
func (b *RecordBuilder) PageOp(rel base.RelFileNode, blk base.BlockNum, page, op []byte) *RecordBuilder {
	b.pages = append(b.pages, pageReg{rel: rel, blk: blk, after: page, op: op, kind: BlockData})
	return b
}

// Image registers an unconditional full-page image of block blk, for a page
// that is (re)initialised and whose old contents do not matter.
func (b *RecordBuilder) Image(rel base.RelFileNode, blk base.BlockNum, page []byte) *RecordBuilder {
	b.pages = append(b.pages, pageReg{rel: rel, blk: blk, after: page, kind: BlockImage, image: true})
	return b
}

// assembled is a record encoded apart from its prev link and CRC.
type assembled struct {
	buf     []byte   // header + body + zero padding, len = aligned size
	totLen  int      // unpadded length
	bodyCRC uint32   // CRC-32C of the body
	fpwLSN  base.LSN // lowest page LSN among pages logged without an image; 0 if none
	fpis    int      // full-page images carried
}

// assemble encodes the record for the given redo pointer. It is PostgreSQL's
// XLogRecordAssemble: pages at or below redo get images when fpw is on.
func (b *RecordBuilder) assemble(redo base.LSN, fpw bool, comp Compression, scratch *assembled) error {
	if len(b.pages) > MaxBlockRefs {
		return fmt.Errorf("xlog: %d block references, at most %d: %w", len(b.pages), MaxBlockRefs, ErrRecordTooLarge)
	}
	a := scratch
	*a = assembled{buf: a.buf[:0]}
	buf := append(a.buf, make([]byte, HeaderSize)...)
	for i := range b.pages {
		reg := &b.pages[i]
		if len(reg.after) != pagecache.BlockSize || (reg.before != nil && len(reg.before) != pagecache.BlockSize) {
			return fmt.Errorf("xlog: page %d of rel %d: pages must be %d bytes", reg.blk, reg.rel, pagecache.BlockSize)
		}
		var pageLSN base.LSN
		if reg.kind == BlockDelta {
			pageLSN = pagecache.Page(reg.before).LSN()
		} else {
			pageLSN = pagecache.Page(reg.after).LSN()
		}
		image := reg.image || (fpw && pageLSN <= redo)
		hdr := len(buf)
		buf = append(buf, make([]byte, blockRefHeaderSize)...)
		var kind BlockKind
		switch {
		case image:
			kind = BlockImage
			var img imageHeader
			buf, img = appendImage(buf, reg.after, comp)
			buf[hdr+1] = byte(img.comp)
			binary.LittleEndian.PutUint16(buf[hdr+2:], img.holeOff)
			binary.LittleEndian.PutUint16(buf[hdr+4:], img.holeLen)
			a.fpis++
		case reg.kind == BlockDelta:
			kind = BlockDelta
			buf = AppendDelta(buf, reg.before, reg.after)
		default:
			kind = BlockData
			buf = append(buf, reg.op...)
		}
		if !reg.image && !image && (a.fpwLSN == 0 || pageLSN < a.fpwLSN) {
			a.fpwLSN = pageLSN
		}
		buf[hdr] = byte(kind)
		binary.LittleEndian.PutUint32(buf[hdr+8:], uint32(reg.rel))
		binary.LittleEndian.PutUint32(buf[hdr+12:], uint32(reg.blk))
		binary.LittleEndian.PutUint32(buf[hdr+16:], uint32(len(buf)-hdr-blockRefHeaderSize))
	}
	buf = append(buf, b.payload...)
	if len(buf) > MaxRecordSize {
		return fmt.Errorf("xlog: record of %d bytes: %w", len(buf), ErrRecordTooLarge)
	}
	a.totLen = len(buf)
	binary.LittleEndian.PutUint32(buf[0:], uint32(len(buf)))
	binary.LittleEndian.PutUint64(buf[8:], uint64(b.xid))
	buf[24] = byte(b.rmgr)
	buf[25] = b.info
	binary.LittleEndian.PutUint16(buf[26:], uint16(len(b.pages)))
	binary.LittleEndian.PutUint32(buf[28:], uint32(len(b.payload)))
	for len(buf)%recAlign != 0 {
		buf = append(buf, 0)
	}
	a.buf = buf
	a.bodyCRC = crc32.Update(0, castagnoli, buf[HeaderSize:a.totLen])
	return nil
}

// finish sets the prev link and the CRC, once the record has a position.
func (a *assembled) finish(prev base.LSN) {
	binary.LittleEndian.PutUint64(a.buf[16:], uint64(prev))
	c := crc32.Update(a.bodyCRC, castagnoli, a.buf[0:4])
	c = crc32.Update(c, castagnoli, a.buf[8:HeaderSize])
	binary.LittleEndian.PutUint32(a.buf[4:], c)
}
