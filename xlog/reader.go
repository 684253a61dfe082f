package xlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/vfs"
)

// EndReason says why a Reader stopped.
type EndReason uint8

const (
	// EndZeros: the next header is all zeros, the normal end of the log in a
	// preallocated segment.
	EndZeros EndReason = iota + 1
	// EndMissingSegment: the segment holding the next bytes does not exist.
	EndMissingSegment
	// EndBadLength: the next header's length is impossible.
	EndBadLength
	// EndBadCRC: the next record's CRC does not match (a torn write).
	EndBadCRC
	// EndBadPrev: the next record does not link back to the last good one
	// (stale bytes of a recycled segment, typically).
	EndBadPrev
)

func (r EndReason) String() string {
	switch r {
	case EndZeros:
		return "zeros"
	case EndMissingSegment:
		return "missing segment"
	case EndBadLength:
		return "invalid record length"
	case EndBadCRC:
		return "CRC mismatch"
	case EndBadPrev:
		return "wrong prev link"
	}
	return fmt.Sprintf("EndReason(%d)", uint8(r))
}

// ReadEnd describes where and why a Reader stopped.
type ReadEnd struct {
	LSN    base.LSN  // end of the last good record: where the log continues
	Prev   base.LSN  // start of the last good record (0 if none was read)
	Reason EndReason // why the record at LSN was not accepted
	// Dropped is how many bytes of a torn or invalid tail were cut off: the
	// length the bad record claimed, bounded by what exists on disk, or, if
	// its length is impossible, the bytes up to the next zero word of its
	// segment. 0 when the log simply ends in zeros or a missing segment.
	Dropped int64
}

func (e ReadEnd) String() string {
	return fmt.Sprintf("end of WAL at %s (%s, %d bytes dropped)", e.LSN, e.Reason, e.Dropped)
}

// Reader iterates over the records of a WAL directory from a start LSN. It
// stops cleanly at the first record whose length, CRC or link to the
// previous record is wrong: that is the end of the log (End says where and
// why). It stops with an error wrapping base.ErrCorrupt, naming the LSN,
// when the bad record cannot be the end: it lies below mustReach (the caller
// knows the log is durable that far), or a valid record follows it at the
// end it claims and links back to it (so the log went on after it).
//
// Usage:
//
//	r := xlog.NewReader(fs, dir, segSize, from, mustReach)
//	for r.Next() { use(r.Record()) }
//	if err := r.Err(); err != nil { ... }
//	end := r.End()
type Reader struct {
	fs        vfs.FS
	walDir    string
	segSize   int64
	next      base.LSN // start of the next record
	prev      base.LSN // start of the last good record; 0 before the first
	mustReach base.LSN

	rec  Record
	buf  []byte
	err  error
	end  ReadEnd
	done bool

	// One segment at a time is held in memory.
	segNo   int64
	segData []byte // nil: not loaded; segNo missing if segMissing
	segMiss bool
}

// NewReader returns a reader over the WAL in dir/wal (dir is the data
// directory) with segments of segSize bytes, starting at the record at from
// (which must be a record's start; its prev link is not checked).
func NewReader(fsys vfs.FS, dir string, segSize int64, from, mustReach base.LSN) *Reader {
	return &Reader{fs: fsys, walDir: path.Join(dir, "wal"), segSize: segSize, next: from, mustReach: mustReach, segNo: -1}
}

// Record returns the record Next found. It and the slices in it are valid
// until the next call of Next.
func (r *Reader) Record() *Record { return &r.rec }

// Err returns the error that stopped the reader, or nil at a clean end.
func (r *Reader) Err() error { return r.err }

// End returns where the log ends; valid once Next returned false with Err
// nil.
func (r *Reader) End() ReadEnd { return r.end }

// Next reads the next record and reports whether there is one.
func (r *Reader) Next() bool {
	if r.done {
		return false
	}
	if r.next == 0 || r.next%recAlign != 0 {
		r.fatal(fmt.Errorf("xlog: cannot read from %s: not a record boundary", r.next))
		return false
	}
	at := r.next
	var hdr [HeaderSize]byte
	n, err := r.readAt(hdr[:], at)
	if err != nil {
		r.fatal(err)
		return false
	}
	if n < HeaderSize {
		r.stop(at, EndMissingSegment, 0)
		return false
	}
	if base.IsZero(hdr[:]) {
		r.stop(at, EndZeros, 0)
		return false
	}
	totLen, err := recordLength(hdr[:])
	if err != nil {
		r.stop(at, EndBadLength, r.zeroDistance(at))
		return false
	}
	size := align8(totLen)
	if int64(cap(r.buf)) < totLen {
		r.buf = make([]byte, totLen)
	}
	r.buf = r.buf[:totLen]
	n, err = r.readAt(r.buf, at)
	if err != nil {
		r.fatal(err)
		return false
	}
	if int64(n) < totLen {
		r.stopLookAhead(at, EndMissingSegment, totLen, int64(n))
		return false
	}
	if _, err := checkRecord(r.buf); err != nil {
		r.stopLookAhead(at, EndBadCRC, totLen, size)
		return false
	}
	prev := base.LSN(binary.LittleEndian.Uint64(r.buf[16:]))
	if (r.prev != 0 && prev != r.prev) || (r.prev == 0 && prev >= at) {
		r.stopLookAhead(at, EndBadPrev, totLen, size)
		return false
	}
	if err := decodeRecordInto(&r.rec, r.buf); err != nil {
		// The CRC matched, so this is no torn write: the record was written
		// this way. Never skip it.
		r.fatal(fmt.Errorf("xlog: record at %s: %w", at, err))
		return false
	}
	r.rec.LSN = at
	r.rec.End = at + base.LSN(size)
	r.prev = at
	r.next = r.rec.End
	return true
}

func (r *Reader) fatal(err error) {
	r.err = err
	r.done = true
}

// stop ends the iteration at the bad record at lsn, unless lsn is below
// mustReach, which makes the bad record corruption.
func (r *Reader) stop(lsn base.LSN, why EndReason, dropped int64) {
	r.done = true
	if lsn < r.mustReach {
		r.err = base.CorruptionErrorf("xlog: invalid WAL record at %s (%s), but the log is known to be durable up to %s", lsn, why, r.mustReach)
		return
	}
	r.end = ReadEnd{LSN: lsn, Prev: r.prev, Reason: why, Dropped: dropped}
}

// stopLookAhead is stop for a record whose length is plausible: it first
// looks at the record the bad one claims to be followed by. If that one is
// valid and links back to lsn, the log went on past the bad record, which is
// therefore damage in the middle of the log, not a torn tail.
func (r *Reader) stopLookAhead(lsn base.LSN, why EndReason, totLen, present int64) {
	next := lsn + base.LSN(align8(totLen))
	if r.validRecordAt(next, lsn) {
		r.done = true
		r.err = base.CorruptionErrorf("xlog: invalid WAL record at %s (%s) is followed by a valid record at %s that links back to it", lsn, why, next)
		return
	}
	r.stop(lsn, why, min(present, align8(totLen)))
}

// validRecordAt reports whether a record with a correct CRC and prev link
// starts at lsn.
func (r *Reader) validRecordAt(lsn, prev base.LSN) bool {
	var hdr [HeaderSize]byte
	if n, err := r.readAt(hdr[:], lsn); err != nil || n < HeaderSize {
		return false
	}
	totLen, err := recordLength(hdr[:])
	if err != nil || base.LSN(binary.LittleEndian.Uint64(hdr[16:])) != prev {
		return false
	}
	buf := make([]byte, totLen)
	if n, err := r.readAt(buf, lsn); err != nil || int64(n) < totLen {
		return false
	}
	_, err = checkRecord(buf)
	return err == nil
}

// zeroDistance returns the bytes from lsn to the next all-zero 8-byte word
// in lsn's segment.
func (r *Reader) zeroDistance(lsn base.LSN) int64 {
	segEnd := (int64(lsn)/r.segSize + 1) * r.segSize
	var w [8]byte
	for at := int64(lsn); at < segEnd; at += 8 {
		if n, err := r.readAt(w[:], base.LSN(at)); err != nil || n < 8 || base.IsZero(w[:]) {
			return at - int64(lsn)
		}
	}
	return segEnd - int64(lsn)
}

// readAt reads len(p) bytes of the stream at lsn, crossing segments, and
// returns how many it could read before a missing segment.
func (r *Reader) readAt(p []byte, lsn base.LSN) (int, error) {
	done := 0
	for done < len(p) {
		pos := int64(lsn) + int64(done)
		seg := pos / r.segSize
		if err := r.loadSegment(seg); err != nil {
			return done, err
		}
		if r.segMiss {
			return done, nil
		}
		done += copy(p[done:], r.segData[pos-seg*r.segSize:])
	}
	return done, nil
}

func (r *Reader) loadSegment(seg int64) error {
	if r.segNo == seg {
		return nil
	}
	r.segNo, r.segMiss = seg, false
	p := path.Join(r.walDir, segmentName(seg))
	f, err := r.fs.Open(p)
	if vfs.IsNotExist(err) {
		r.segMiss = true
		return nil
	}
	if err != nil {
		r.segNo = -1
		return fmt.Errorf("xlog: open WAL segment %s: %w", p, err)
	}
	defer f.Close()
	if r.segData == nil {
		r.segData = make([]byte, r.segSize)
	}
	n, err := f.ReadAt(r.segData, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		r.segNo = -1
		return fmt.Errorf("xlog: read WAL segment %s: %w", p, err)
	}
	// A short segment (only possible if something outside xlog truncated
	// it) reads as zeros beyond its end.
	clear(r.segData[n:])
	return nil
}
