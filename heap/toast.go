package heap

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/klauspost/compress/s2"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/pagecache"
)

// TOAST. A row version whose tuple would take more than inlineMax bytes
// has its value compressed with s2; if the tuple still does not fit in
// inlineMax, the value (compressed if that saved at least an eighth, raw
// otherwise) is cut into chunks stored as tuples of their own on TOAST
// pages of the same relation, and the row version keeps a TOAST pointer:
//
//	 0       4       8       12      16      20  22  24
//	+-------+-------+-------+-------+-------+---+---+
//	|rawlen |extlen |nchunks|  crc  |lastblk|lof| 0 |
//	+-------+-------+-------+-------+-------+---+---+
//
//	rawlen   the value's length
//	extlen   the stored bytes' length (compressed or raw; infomask says)
//	nchunks  how many chunks hold them
//	crc      CRC-32C of the stored bytes, checked on reassembly
//	lastblk, lof   TID of the LAST chunk
//
// A chunk is a heap tuple flagged maskChunk on a page flagged flagToast:
// xmin is the inserting transaction (the row version's xmin), its key is
// the 4-byte little-endian offset of its bytes within the stored value, its
// value the bytes, and its prev link the TID of the chunk before it (the
// first chunk's is invalid). Chunks are written first to last, each knowing
// its predecessor, and the pointer names the last; a reader walks the links
// back and fills its buffer from the end. Every chunk but the last fills a
// page (chunkData bytes).
const (
	// inlineMax is the most a row version may occupy in its page: about a
	// quarter of a page, so that at least four fit (TOAST_TUPLE_THRESHOLD).
	inlineMax = ((pagecache.BlockSize-pagecache.PageHeaderSize)/4 - lpSize) &^ 7

	toastPointerSize = 24
	// chunkData is the most value bytes one chunk holds: a chunk tuple
	// then fills an empty TOAST page.
	chunkData = maxTupleSpace - tupleHeaderSize - 4

	// bulkChunks is the chunk count from which a value is written and read
	// through a ring (BulkWrite, BulkRead) instead of the whole pool.
	bulkChunks = 16

	// Compression: values beyond sampleFrom bytes are first tried on their
	// first sampleSize bytes, and not compressed if that saves less than an
	// eighth, so that an incompressible 64 MiB value costs no full pass.
	sampleFrom = 256 << 10
	sampleSize = 64 << 10
)

type toastPointer struct {
	rawLen  uint32
	extLen  uint32
	nchunks uint32
	crc     uint32
	last    base.TID
}

func (p *toastPointer) encode(dst []byte) []byte {
	var b [toastPointerSize]byte
	binary.LittleEndian.PutUint32(b[0:], p.rawLen)
	binary.LittleEndian.PutUint32(b[4:], p.extLen)
	binary.LittleEndian.PutUint32(b[8:], p.nchunks)
	binary.LittleEndian.PutUint32(b[12:], p.crc)
	binary.LittleEndian.PutUint32(b[16:], uint32(p.last.Block))
	binary.LittleEndian.PutUint16(b[20:], p.last.Offset)
	return append(dst, b[:]...)
}

// decodeToastPointer decodes and checks a TOAST pointer. It never panics;
// damage is an error wrapping base.ErrCorrupt.
func decodeToastPointer(b []byte) (toastPointer, error) {
	if len(b) != toastPointerSize {
		return toastPointer{}, base.CorruptionErrorf("heap: TOAST pointer of %d bytes", len(b))
	}
	p := toastPointer{
		rawLen:  binary.LittleEndian.Uint32(b[0:]),
		extLen:  binary.LittleEndian.Uint32(b[4:]),
		nchunks: binary.LittleEndian.Uint32(b[8:]),
		crc:     binary.LittleEndian.Uint32(b[12:]),
		last: base.TID{
			Block:  base.BlockNum(binary.LittleEndian.Uint32(b[16:])),
			Offset: binary.LittleEndian.Uint16(b[20:]),
		},
	}
	switch {
	case p.rawLen > MaxValueSize || p.extLen > MaxValueSize || p.extLen == 0:
		return p, base.CorruptionErrorf("heap: TOAST pointer with lengths %d/%d", p.rawLen, p.extLen)
	case uint64(p.nchunks) != (uint64(p.extLen)+chunkData-1)/chunkData:
		return p, base.CorruptionErrorf("heap: TOAST pointer with %d chunks for %d bytes", p.nchunks, p.extLen)
	case !p.last.Valid():
		return p, base.CorruptionErrorf("heap: TOAST pointer to invalid TID %v", p.last)
	case binary.LittleEndian.Uint16(b[22:]) != 0:
		return p, base.CorruptionErrorf("heap: TOAST pointer padding not zero")
	}
	return p, nil
}

// compressValue returns v compressed with s2 if that is shorter, else nil.
func compressValue(v []byte) []byte {
	if len(v) < 64 {
		return nil
	}
	if len(v) >= sampleFrom {
		est := s2.EstimateBlockSize(v[:sampleSize])
		if est < 0 || est > sampleSize-sampleSize/8 {
			return nil
		}
	}
	c := s2.Encode(nil, v)
	if len(c) >= len(v) {
		return nil
	}
	return c
}

// decompress appends the s2 block src, which must decode to at most
// MaxValueSize bytes (and to want bytes, if want >= 0), to dst.
func decompress(dst, src []byte, want int) ([]byte, error) {
	n, err := s2.DecodedLen(src)
	if err != nil || n > MaxValueSize || (want >= 0 && n != want) {
		return dst, base.CorruptionErrorf("heap: compressed value of %d bytes decodes to %d bytes (want %d): %v", len(src), n, want, err)
	}
	dst = growLen(dst, n)
	if _, err := s2.Decode(dst[len(dst)-n:], src); err != nil {
		return dst[:len(dst)-n], base.CorruptionErrorf("heap: compressed value: %v", err)
	}
	return dst, nil
}

// growLen returns dst extended by n bytes (contents unspecified).
func growLen(dst []byte, n int) []byte {
	if cap(dst)-len(dst) >= n {
		return dst[:len(dst)+n]
	}
	out := make([]byte, len(dst)+n, len(dst)+n)
	copy(out, dst)
	return out
}

// writeToast stores ext (the value's stored bytes) as chunks written by
// xid and returns the pointer. rawLen is the value's own length.
func (h *Heap) writeToast(xid base.XID, ext []byte, rawLen int) (toastPointer, error) {
	ptr := toastPointer{
		rawLen:  uint32(rawLen),
		extLen:  uint32(len(ext)),
		nchunks: uint32((len(ext) + chunkData - 1) / chunkData),
		crc:     crc32.Checksum(ext, castagnoli),
		last:    base.InvalidTID,
	}
	var strategy *pagecache.Strategy
	if ptr.nchunks >= bulkChunks {
		strategy = h.pool.NewStrategy(pagecache.BulkWrite)
	}
	buf := pagePool.Get().(*[pagecache.BlockSize]byte)
	defer pagePool.Put(buf)
	var key [4]byte
	for off := 0; off < len(ext); off += chunkData {
		piece := ext[off:min(off+chunkData, len(ext))]
		binary.LittleEndian.PutUint32(key[:], uint32(off))
		op := appendTuple(buf[:4], xid, maskChunk, ptr.last, key[:], piece)
		tid, err := h.place(xid, op, true, strategy)
		if err != nil {
			return ptr, err
		}
		ptr.last = tid
		h.stats.toastChunks.Add(1)
	}
	return ptr, nil
}

// chunkAt returns the chunk of the value owned by xmin at tid on page p:
// its offset within the stored bytes, its bytes (pointing into p) and the
// TID of the chunk before it. Anything else at tid is damage: a TOAST
// pointer's chunks live as long as the row version that points at them.
func chunkAt(p pagecache.Page, tid base.TID, xmin base.XID) (off int, data []byte, prev base.TID, err error) {
	if p.IsNew() {
		return 0, nil, prev, base.CorruptionErrorf("heap: TOAST chunk %v is on a new page", tid)
	}
	if err := checkHeader(p); err != nil {
		return 0, nil, prev, err
	}
	if !isToastPage(p) {
		return 0, nil, prev, base.CorruptionErrorf("heap: TOAST chunk %v is not on a TOAST page", tid)
	}
	toff, n, ok, err := tupleAt(p, int(tid.Offset))
	if err != nil {
		return 0, nil, prev, err
	}
	if !ok {
		return 0, nil, prev, base.CorruptionErrorf("heap: TOAST chunk %v is missing", tid)
	}
	hdr, err := readTupleHdr(p, toff, n)
	if err != nil {
		return 0, nil, prev, err
	}
	if !hdr.isChunk() || hdr.xmin != xmin {
		return 0, nil, prev, base.CorruptionErrorf("heap: tuple %v is not a TOAST chunk of a value of xid %d", tid, xmin)
	}
	kv := p[toff+tupleHeaderSize : toff+n]
	return int(binary.LittleEndian.Uint32(kv)), kv[4:], hdr.prev, nil
}

// detoast reassembles the value ptr points at, owned by xmin, and appends
// it to dst.
func (h *Heap) detoast(ptr toastPointer, xmin base.XID, compressed bool, dst []byte) ([]byte, error) {
	base0 := len(dst)
	var ext []byte
	if compressed {
		ext = make([]byte, ptr.extLen)
	} else {
		if ptr.rawLen != ptr.extLen {
			return dst, base.CorruptionErrorf("heap: uncompressed TOAST value with lengths %d/%d", ptr.rawLen, ptr.extLen)
		}
		dst = growLen(dst, int(ptr.extLen))
		ext = dst[base0:]
	}
	var strategy *pagecache.Strategy
	if ptr.nchunks >= bulkChunks {
		strategy = h.pool.NewStrategy(pagecache.BulkRead)
	}
	end := int(ptr.extLen)
	tid := ptr.last
	var count uint32
	for tid.Valid() {
		if count++; count > ptr.nchunks {
			return dst[:base0], base.CorruptionErrorf("heap: relation %d: TOAST value at %v has more than %d chunks", h.rel, ptr.last, ptr.nchunks)
		}
		b, err := h.pool.ReadBuffer(h.rel, tid.Block, pagecache.ReadNormal, strategy)
		if err != nil {
			return dst[:base0], fmt.Errorf("heap: relation %d: read TOAST chunk %v: %w", h.rel, tid, err)
		}
		b.LockShare()
		off, data, prev, err := chunkAt(b.Page(), tid, xmin)
		if err == nil && (off+len(data) != end || len(data) == 0 || (count > 1 && len(data) != chunkData)) {
			err = base.CorruptionErrorf("heap: TOAST chunk at offset %d of %d bytes, want it to end at %d", off, len(data), end)
		}
		if err == nil {
			copy(ext[off:], data)
		}
		b.UnlockShare()
		b.Release()
		if err != nil {
			return dst[:base0], fmt.Errorf("heap: relation %d block %d offset %d: %w", h.rel, tid.Block, tid.Offset, err)
		}
		end, tid = off, prev
	}
	if end != 0 || count != ptr.nchunks {
		return dst[:base0], base.CorruptionErrorf("heap: relation %d: TOAST value at %v ends after %d of %d chunks, %d bytes short", h.rel, ptr.last, count, ptr.nchunks, end)
	}
	if crc32.Checksum(ext, castagnoli) != ptr.crc {
		return dst[:base0], base.CorruptionErrorf("heap: relation %d: TOAST value at %v fails its CRC", h.rel, ptr.last)
	}
	if compressed {
		return decompress(dst, ext, int(ptr.rawLen))
	}
	return dst, nil
}
