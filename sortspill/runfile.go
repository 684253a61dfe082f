package sortspill

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/klauspost/compress/s2"

	"github.com/heapkv/heapkv/internal/base"
)

// A run file is a sequence of blocks and nothing else:
//
//	block  := header payload
//	header := crc uint32 | payloadLen uint32 | rawLen uint32 | count uint32  (little endian)
//	payload: rawLen bytes compressed as one s2 block
//	raw    := count × (uvarint(len) record)
//
// crc is CRC-32C over the header's last 12 bytes and the payload. The writer
// remembers how many records and bytes a run holds, and the reader checks
// that the file ends on a block boundary with exactly that many records.

const (
	blockHeaderSize = 16
	// MaxRecordSize is the longest record a sort or hash accepts: a key and
	// a value of the engine's largest sizes with room to spare.
	MaxRecordSize = 128 << 20
	// minBlockSize and maxBlockSize bound a block's uncompressed target size;
	// a budget's block size lies between them (blockSizeFor).
	minBlockSize = 4 << 10
	maxBlockSize = 256 << 10
	// maxBlockRaw is the most uncompressed bytes one block may claim: a full
	// target block plus one record of the largest size that ended it.
	maxBlockRaw = maxBlockSize + MaxRecordSize + binary.MaxVarintLen64
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// blockSizeFor returns the block size of streams under a budget: 1/32 of it
// within [minBlockSize, maxBlockSize], so a 4 MB budget has 128 KiB blocks
// and room for about fifteen merge inputs, as PostgreSQL's merge order.
func blockSizeFor(budget int64) int {
	return int(min(max(budget/32, minBlockSize), maxBlockSize))
}

// A stream's buffers are made with room for a block that ends past its
// target by a record of up to 1/16 of the target, so a reader or writer
// allocates them once and not again for each slightly larger block.
func rawCap(blockSize int) int { return blockSize + blockSize/16 }

func blockCap(blockSize int) int { return blockHeaderSize + s2.MaxEncodedLen(rawCap(blockSize)) }

// streamCost is the memory one run reader or writer holds: an uncompressed
// and a compressed block buffer.
func streamCost(blockSize int) int64 {
	return int64(rawCap(blockSize)) + int64(blockCap(blockSize))
}

// run is a finished run file.
type run struct {
	tf      *tempFile
	records int64
	level   int // merge passes its records have been through
}

// bufPool keeps the slabs of one sort or hash for reuse. A slab is
// streamCost bytes: one stream's raw buffer (rawCap) and block buffer
// (blockCap) side by side, and also the size of a sort's load chunk. A
// merge's readers take the slabs the load or the last merge gave back,
// instead of allocating new ones while the old wait for the collector, so
// the Go heap holds what is in use, not that and its garbage. The pool never
// holds more slabs than were in use at once. A nil pool allocates every time
// (tests, the fuzz target).
type bufPool struct {
	size  int
	slabs [][]byte
}

func newBufPool(blockSize int) *bufPool { return &bufPool{size: int(streamCost(blockSize))} }

// get returns a slab of streamCost(blockSize) bytes.
func (p *bufPool) get(blockSize int) []byte {
	if p != nil && len(p.slabs) > 0 {
		b := p.slabs[len(p.slabs)-1]
		p.slabs = p.slabs[:len(p.slabs)-1]
		return b
	}
	return make([]byte, streamCost(blockSize))
}

// put gives a slab back.
func (p *bufPool) put(slab []byte) {
	if p != nil && cap(slab) == p.size {
		p.slabs = append(p.slabs, slab[:cap(slab)])
	}
}

// splitSlab returns a slab's raw and block buffers, empty. A buffer a large
// record outgrew is replaced by a new one and dropped after its block, so
// one big record does not keep its memory for the rest of the stream.
func splitSlab(slab []byte, blockSize int) (raw, blk []byte) {
	rc := rawCap(blockSize)
	return slab[:0:rc], slab[rc:rc:len(slab)]
}

// runWriter appends records to a run file in blocks.
type runWriter struct {
	tf        *tempFile
	pool      *bufPool
	slab      []byte // where raw and buf live unless a large record outgrew them
	blockSize int
	raw       []byte
	count     uint32
	buf       []byte // header and compressed payload of the block being written
	records   int64
}

func newRunWriter(tf *tempFile, blockSize int, pool *bufPool) *runWriter {
	w := &runWriter{tf: tf, pool: pool, slab: pool.get(blockSize), blockSize: blockSize}
	w.raw, w.buf = splitSlab(w.slab, blockSize)
	return w
}

// add appends one record; it writes a block once the block is full.
func (w *runWriter) add(rec []byte) error {
	if len(rec) > MaxRecordSize {
		return fmt.Errorf("sortspill: record of %d bytes, at most %d", len(rec), MaxRecordSize)
	}
	w.raw = binary.AppendUvarint(w.raw, uint64(len(rec)))
	w.raw = append(w.raw, rec...)
	w.count++
	w.records++
	if len(w.raw) >= w.blockSize {
		return w.flush()
	}
	return nil
}

// flush writes the records buffered so far as one block.
func (w *runWriter) flush() error {
	if w.count == 0 {
		return nil
	}
	need := blockHeaderSize + s2.MaxEncodedLen(len(w.raw))
	if cap(w.buf) < need {
		w.buf = make([]byte, need)
	}
	w.buf = w.buf[:cap(w.buf)]
	packed := s2.Encode(w.buf[blockHeaderSize:], w.raw)
	blk := w.buf[:blockHeaderSize+len(packed)]
	binary.LittleEndian.PutUint32(blk[4:], uint32(len(packed)))
	binary.LittleEndian.PutUint32(blk[8:], uint32(len(w.raw)))
	binary.LittleEndian.PutUint32(blk[12:], w.count)
	binary.LittleEndian.PutUint32(blk[0:], crc32.Checksum(blk[4:], castagnoli))
	if err := w.tf.append(blk); err != nil {
		return err
	}
	w.count = 0
	w.raw, w.buf = splitSlab(w.slab, w.blockSize)
	return nil
}

// finish writes the last block, gives the buffers back and returns the run.
func (w *runWriter) finish(level int) (*run, error) {
	if err := w.flush(); err != nil {
		return nil, err
	}
	w.pool.put(w.slab)
	w.slab, w.raw, w.buf = nil, nil, nil
	return &run{tf: w.tf, records: w.records, level: level}, nil
}

// source is what a run reader reads from: a temp file, or bytes in a test.
type source interface {
	readAt(p []byte, off int64) error
}

// runReader reads a run's records back in order.
type runReader struct {
	src   source
	name  string
	off   int64 // next block's offset
	size  int64 // the file's length
	want  int64 // records the writer wrote
	got   int64
	raw   []byte // the current block, uncompressed
	pos   int    // next record's offset in raw
	left  uint32 // records left in raw
	buf   []byte // the current block as read
	rec   []byte // the current record, a slice of raw
	usual int    // block size the buffers are kept at
	pool  *bufPool
	slab  []byte // taken at the first block, given back at the end
}

func newRunReader(src source, name string, size, records int64, blockSize int, pool *bufPool) *runReader {
	return &runReader{src: src, name: name, size: size, want: records, usual: blockSize, pool: pool}
}

func openRun(r *run, blockSize int, pool *bufPool) *runReader {
	return newRunReader(r.tf, r.tf.name, r.tf.size, r.records, blockSize, pool)
}

// next moves to the next record; it returns false at the end of the run.
func (r *runReader) next() (bool, error) {
	for r.left == 0 {
		if r.pos != len(r.raw) {
			return false, r.corrupt("%d bytes after the block's last record", len(r.raw)-r.pos)
		}
		if r.off == r.size {
			if r.got != r.want {
				return false, r.corrupt("%d records, the writer wrote %d", r.got, r.want)
			}
			r.pool.put(r.slab)
			r.slab, r.raw, r.buf, r.rec = nil, nil, nil, nil
			return false, nil
		}
		if err := r.readBlock(); err != nil {
			return false, err
		}
	}
	n, k := binary.Uvarint(r.raw[r.pos:])
	if k <= 0 || n > uint64(len(r.raw)-r.pos-k) {
		return false, r.corrupt("bad record length at block offset %d", r.pos)
	}
	r.pos += k
	r.rec = r.raw[r.pos : r.pos+int(n) : r.pos+int(n)]
	r.pos += int(n)
	r.left--
	r.got++
	if r.got > r.want {
		return false, r.corrupt("more records than the writer wrote")
	}
	return true, nil
}

// readBlock reads, checks and decompresses the block at r.off.
func (r *runReader) readBlock() error {
	if r.size-r.off < blockHeaderSize {
		return r.corrupt("%d bytes at offset %d, too short for a block header", r.size-r.off, r.off)
	}
	var hdr [blockHeaderSize]byte
	if err := r.src.readAt(hdr[:], r.off); err != nil {
		return err
	}
	plen := int64(binary.LittleEndian.Uint32(hdr[4:]))
	rawLen := int64(binary.LittleEndian.Uint32(hdr[8:]))
	count := binary.LittleEndian.Uint32(hdr[12:])
	if plen > r.size-r.off-blockHeaderSize {
		return r.corrupt("block at offset %d claims %d payload bytes, the file has %d", r.off, plen, r.size-r.off-blockHeaderSize)
	}
	if rawLen > maxBlockRaw || count == 0 || int64(count) > rawLen {
		return r.corrupt("block at offset %d claims %d bytes in %d records", r.off, rawLen, count)
	}
	total := blockHeaderSize + int(plen)
	if r.slab == nil {
		r.slab = r.pool.get(r.usual)
	}
	// The previous block's records have all been consumed: both buffers
	// go back to the slab's.
	r.raw, r.buf = splitSlab(r.slab, r.usual)
	if cap(r.buf) < total {
		r.buf = make([]byte, total)
	}
	blk := r.buf[:total]
	copy(blk, hdr[:])
	if err := r.src.readAt(blk[blockHeaderSize:], r.off+blockHeaderSize); err != nil {
		return err
	}
	if crc32.Checksum(blk[4:], castagnoli) != binary.LittleEndian.Uint32(hdr[0:]) {
		return r.corrupt("block at offset %d fails its checksum", r.off)
	}
	payload := blk[blockHeaderSize:]
	if n, err := s2.DecodedLen(payload); err != nil || int64(n) != rawLen {
		return r.corrupt("block at offset %d does not decompress to %d bytes", r.off, rawLen)
	}
	if int64(cap(r.raw)) < rawLen {
		r.raw = make([]byte, rawLen)
	}
	raw, err := s2.Decode(r.raw[:cap(r.raw)], payload)
	if err != nil {
		return r.corrupt("block at offset %d: %v", r.off, err)
	}
	r.raw, r.pos, r.left = raw, 0, count
	r.off += int64(total)
	return nil
}

func (r *runReader) corrupt(format string, args ...any) error {
	return base.CorruptionErrorf("sortspill: run file %s: "+format, append([]any{r.name}, args...)...)
}
