package heap

import (
	"encoding/binary"
	"math/bits"
	"sync/atomic"
	"unsafe"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/txn"
)

// The heap tuple. Everything is little-endian. A tuple starts at an offset
// that is a multiple of 8 (MAXALIGN), so the infomask at offset 16 is an
// aligned 32-bit word that hint bits can be ORed into atomically under a
// share lock.
//
//	 0               8               16      20  22  24      28      32
//	+---------------+---------------+-------+---+---+-------+-------+~~~~~~~~~+~~~~~~~~~~~+
//	|     xmin      |     xmax      |infomsk|kln|pof| prevblk|vallen | key ... | value ... |
//	+---------------+---------------+-------+---+---+-------+-------+~~~~~~~~~+~~~~~~~~~~~+
//
//	xmin     u64  transaction that inserted this version
//	xmax     u64  transaction that deleted or locked it; 0 if none
//	infomask u32  bits 0-7 belong to txn (hint bits, lock-only), 8-11 to the
//	              heap (below), 12-31 are zero
//	kln      u16  key length: 1..1024 for a row version, 4 for a TOAST chunk
//	pof      u16  offset of the previous (older) version's TID, 0 if none
//	prevblk  u32  block of the previous version's TID (0xFFFFFFFF if none)
//	vallen   u32  length of the value field as stored: the value itself, its
//	              s2 compression, or a 24-byte TOAST pointer
//
// The line pointer's length is exactly 32 + kln + vallen; the tuple
// occupies that rounded up to 8.
const (
	tupleHeaderSize = 32

	offXmin    = 0
	offXmax    = 8
	offMask    = 16
	offKeyLen  = 20
	offPrevOff = 22
	offPrevBlk = 24
	offValLen  = 28
)

// Infomask bits owned by the heap. txn owns bits 0-7 (txn.Infomask).
const (
	// maskTxn selects the bits txn defines and reads (hint bits and
	// lock-only); bits 5-7 are reserved to it.
	maskTxn uint32 = 0x00FF
	// maskCompressed: the value field (inline), or the bytes the TOAST
	// chunks hold (external), are the value compressed with s2.
	maskCompressed uint32 = 1 << 8
	// maskExternal: the value field is a TOAST pointer.
	maskExternal uint32 = 1 << 9
	// maskChunk: the tuple is a TOAST chunk, not a row version. Its key is
	// the 4-byte offset of its bytes within the stored value.
	maskChunk uint32 = 1 << 10
	// maskStub: pruning removed the value of this aborted version but kept
	// its header and key, so that the chain through its prev link stays
	// walkable (see doc.go, "Pruning").
	maskStub uint32 = 1 << 11

	maskKnown = maskTxn | maskCompressed | maskExternal | maskChunk | maskStub

	xminInvalid  = txn.XMinInvalid
	xmaxLockOnly = txn.XMaxLockOnly
	// xmaxHintBits are reset whenever xmax is set anew.
	xmaxHintBits = txn.XMaxCommitted | txn.XMaxInvalid | txn.XMaxLockOnly
)

// Limits.
const (
	// MaxKeySize is the largest key, in bytes (the engine's key limit).
	MaxKeySize = base.MaxKeySize
	// MaxValueSize is the largest value, in bytes (64 MiB).
	MaxValueSize = base.MaxValueSize
)

func align8(n int) int { return (n + 7) &^ 7 }

// tupleHdr is a decoded tuple header.
type tupleHdr struct {
	xmin, xmax base.XID
	mask       uint32
	klen       int
	vlen       int
	prev       base.TID
}

func (t *tupleHdr) isChunk() bool { return t.mask&maskChunk != 0 }

// version returns what visibility needs of the tuple.
func (t *tupleHdr) version() txn.Version {
	return txn.Version{XMin: t.xmin, XMax: t.xmax, Mask: txn.Infomask(t.mask & maskTxn)}
}

// appendTuple appends a tuple with the given header fields, key and value
// field to dst.
func appendTuple(dst []byte, xmin base.XID, mask uint32, prev base.TID, key, val []byte) []byte {
	var h [tupleHeaderSize]byte
	binary.LittleEndian.PutUint64(h[offXmin:], uint64(xmin))
	binary.LittleEndian.PutUint32(h[offMask:], mask)
	binary.LittleEndian.PutUint16(h[offKeyLen:], uint16(len(key)))
	binary.LittleEndian.PutUint16(h[offPrevOff:], prev.Offset)
	binary.LittleEndian.PutUint32(h[offPrevBlk:], uint32(prev.Block))
	binary.LittleEndian.PutUint32(h[offValLen:], uint32(len(val)))
	dst = append(dst, h[:]...)
	dst = append(dst, key...)
	return append(dst, val...)
}

// decodeTupleHdr decodes and checks the tuple t, which is exactly as long
// as its line pointer says. It reads the infomask plainly: use it on private
// copies or under an exclusive lock; readTupleHdr is for shared pages. It
// never panics; damage is an error wrapping base.ErrCorrupt.
func decodeTupleHdr(t []byte) (tupleHdr, error) {
	if len(t) < tupleHeaderSize {
		return tupleHdr{}, base.CorruptionErrorf("heap: tuple of %d bytes is shorter than its header", len(t))
	}
	return finishHdr(t, binary.LittleEndian.Uint32(t[offMask:]))
}

func finishHdr(t []byte, mask uint32) (tupleHdr, error) {
	h := tupleHdr{
		xmin: base.XID(binary.LittleEndian.Uint64(t[offXmin:])),
		xmax: base.XID(binary.LittleEndian.Uint64(t[offXmax:])),
		mask: mask,
		klen: int(binary.LittleEndian.Uint16(t[offKeyLen:])),
		vlen: int(binary.LittleEndian.Uint32(t[offValLen:])),
		prev: base.TID{
			Block:  base.BlockNum(binary.LittleEndian.Uint32(t[offPrevBlk:])),
			Offset: binary.LittleEndian.Uint16(t[offPrevOff:]),
		},
	}
	if h.mask&^maskKnown != 0 {
		return h, base.CorruptionErrorf("heap: tuple infomask %#x has unknown bits", h.mask)
	}
	if tupleHeaderSize+h.klen+h.vlen != len(t) {
		return h, base.CorruptionErrorf("heap: tuple of %d bytes claims key %d and value %d bytes", len(t), h.klen, h.vlen)
	}
	if h.isChunk() {
		if h.klen != 4 || h.mask&(maskExternal|maskCompressed|maskStub) != 0 || h.vlen == 0 {
			return h, base.CorruptionErrorf("heap: TOAST chunk with key length %d, value length %d, infomask %#x", h.klen, h.vlen, h.mask)
		}
		return h, nil
	}
	if h.klen < 1 || h.klen > MaxKeySize {
		return h, base.CorruptionErrorf("heap: tuple key length %d out of range", h.klen)
	}
	if h.mask&maskStub != 0 {
		if h.vlen != 0 || h.mask&(maskExternal|maskCompressed) != 0 || h.mask&uint32(txn.XMinInvalid) == 0 {
			return h, base.CorruptionErrorf("heap: pruned stub with value length %d, infomask %#x", h.vlen, h.mask)
		}
	}
	if h.mask&maskExternal != 0 && h.vlen != toastPointerSize {
		return h, base.CorruptionErrorf("heap: TOAST pointer of %d bytes, want %d", h.vlen, toastPointerSize)
	}
	return h, nil
}

// Infomask access on shared pages. A page in the buffer pool may be read by
// several goroutines under share locks while some of them OR hint bits into
// a tuple's infomask, so every read of the word under a share lock is an
// atomic load and every hint is an atomic OR. The word is stored
// little-endian; on a big-endian machine the value is byte-swapped on its
// way through the native-order atomic operations.

var nativeLittle = func() bool {
	var x uint16 = 1
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

func toNative(v uint32) uint32 {
	if nativeLittle {
		return v
	}
	return bits.ReverseBytes32(v)
}

// maskWord returns the infomask word of the tuple at page offset off. off
// must be a multiple of 8 within the page (tupleAt checks that), so the
// word is 4-aligned.
func maskWord(page []byte, off int) *uint32 {
	return (*uint32)(unsafe.Pointer(&page[off+offMask]))
}

// loadMask reads the infomask of the tuple at off atomically.
func loadMask(page []byte, off int) uint32 {
	return toNative(atomic.LoadUint32(maskWord(page, off)))
}

// orMask ORs bits into the infomask of the tuple at off atomically.
func orMask(page []byte, off int, bits uint32) {
	atomic.OrUint32(maskWord(page, off), toNative(bits))
}

// readTupleHdr decodes the header of the tuple at off (length n) of a
// shared page, loading the infomask atomically.
func readTupleHdr(page []byte, off, n int) (tupleHdr, error) {
	if n < tupleHeaderSize {
		return tupleHdr{}, base.CorruptionErrorf("heap: tuple of %d bytes is shorter than its header", n)
	}
	return finishHdr(page[off:off+n], loadMask(page, off))
}
