package xlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
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
	// EndTooLong: the next record would run past the furthest position
	// the log can have written (recovery knows it from the control file).
	EndTooLong
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
	case EndTooLong:
		return "record runs past the end of the WAL"
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
// stops at the first record whose length, CRC or link to the previous
// record is wrong. That is the end of the log (End says where and why)
// unless the failure cannot be a torn tail; then the reader stops with an
// error wrapping base.ErrCorrupt that names the LSN and the segment file:
//
//   - the bytes that make the record fail lie below mustReach, which the
//     caller knows to be durable (for a bad CRC the whole record must lie
//     below it, for anything else its first bytes); or
//   - the look-ahead finds the log going on: at some 8-aligned position
//     after the failure, in the rest of the WAL, lies a record with a
//     valid CRC whose prev link points into [failure, its own start).
//     Every record written after the failed one links back that way;
//     stale records of recycled segments link far below (they were
//     written below an older redo point) and do not count.
//
// The look-ahead reads every segment file present after the failure; the
// reader recovery uses is bounded more tightly (see Log.Recover). A record
// is never allocated before its CRC has been checked against the segment
// bytes, so no length field, however wrong, makes the reader allocate more
// than a record that was really written.
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
	// limit, if not 0, is a position at and beyond which the log cannot
	// have written anything: records running past it are impossible and
	// the look-ahead stops there. 0: the look-ahead reads every segment
	// file present.
	limit base.LSN

	rec  Record
	buf  []byte // a record that crosses segments, copied together
	err  error
	end  ReadEnd
	done bool

	// The two segments used last, so that a record crossing a boundary
	// is read once.
	segs [2]segSlot
	tick uint64
}

type segSlot struct {
	no      int64  // segment held; -1: none
	present bool   // whether its file exists
	buf     []byte // its bytes if present (zeros past a short file's end)
	used    uint64 // Reader.tick at the last use
}

// maxReaderLSN bounds the positions a Reader accepts, far beyond any real
// log, so that no arithmetic on them can overflow.
const maxReaderLSN = base.LSN(1) << 60

// NewReader returns a reader over the WAL in dir/wal (dir is the data
// directory) with segments of segSize bytes, starting at the record at from
// (which must be a record's start; its prev link is not checked). segSize
// is a multiple of 8 of at least 64 bytes; the log itself only makes powers
// of two from MinSegmentSize.
func NewReader(fsys vfs.FS, dir string, segSize int64, from, mustReach base.LSN) *Reader {
	r := &Reader{fs: fsys, walDir: path.Join(dir, "wal"), segSize: segSize, next: from, mustReach: mustReach}
	r.segs[0].no, r.segs[1].no = -1, -1
	return r
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
	at := r.next
	switch {
	case r.segSize < 2*HeaderSize || r.segSize%recAlign != 0:
		r.fatal(fmt.Errorf("xlog: reader: segment size %d unusable", r.segSize))
		return false
	case at == 0 || at%recAlign != 0 || at >= maxReaderLSN:
		r.fatal(fmt.Errorf("xlog: cannot read from %s: not a record boundary", at))
		return false
	}
	var hdr [HeaderSize]byte
	n, err := r.readAt(hdr[:], at)
	if err != nil {
		r.fatal(err)
		return false
	}
	if n < HeaderSize {
		r.reject(at, EndMissingSegment, at+base.LSN(n), 0)
		return false
	}
	if base.IsZero(hdr[:]) {
		r.reject(at, EndZeros, at, 0)
		return false
	}
	totLen, err := recordLength(hdr[:])
	if err != nil {
		r.reject(at, EndBadLength, at, r.zeroDistance(at))
		return false
	}
	end, size := at+base.LSN(totLen), align8(totLen)
	if r.limit != 0 && end > r.limit {
		// Not corruption even below mustReach: a record that began there
		// may have been cut short with the log.
		r.reject(at, EndTooLong, r.limit, r.zeroDistance(at))
		return false
	}
	miss, err := r.firstMissing(at, end)
	if err != nil {
		r.fatal(err)
		return false
	}
	if miss < end {
		r.reject(at, EndMissingSegment, miss, int64(miss-at))
		return false
	}
	stored := binary.LittleEndian.Uint32(hdr[4:])
	var b []byte
	if off := int64(at) % r.segSize; off+totLen <= r.segSize {
		// The common case: the record lies in one segment, already read.
		data, _, err := r.segment(int64(at) / r.segSize)
		if err != nil {
			r.fatal(err)
			return false
		}
		b = data[off : off+totLen]
		if recordCRC(b) != stored {
			r.reject(at, EndBadCRC, end-1, size)
			return false
		}
	} else {
		crc, ok, err := r.streamCRC(at, totLen, hdr[:])
		if err != nil {
			r.fatal(err)
			return false
		}
		if !ok || crc != stored {
			r.reject(at, EndBadCRC, end-1, size)
			return false
		}
		// The CRC matched: this record was written, and is as long as it
		// says.
		if int64(cap(r.buf)) < totLen {
			r.buf = make([]byte, totLen)
		}
		r.buf = r.buf[:totLen]
		if n, err := r.readAt(r.buf, at); err != nil || int64(n) < totLen {
			r.fatal(fmt.Errorf("xlog: record at %s: segment changed while read: %v", at, err))
			return false
		}
		b = r.buf
	}
	prev := base.LSN(binary.LittleEndian.Uint64(hdr[16:]))
	if (r.prev != 0 && prev != r.prev) || (r.prev == 0 && prev >= at) {
		r.reject(at, EndBadPrev, at, size)
		return false
	}
	if err := decodeCheckedInto(&r.rec, b); err != nil {
		// The CRC matched, so this is no torn write: the record was written
		// this way. Never skip it.
		r.fatal(fmt.Errorf("xlog: record at %s in segment %s: %w", at, r.segPath(int64(at)/r.segSize), err))
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

// reject ends the iteration at the record at lsn, which failed for reason
// why. decisive is the first position whose bytes (or absence) make it
// fail: below mustReach, the failure is corruption. Otherwise the
// look-ahead decides between corruption and the end of the log.
func (r *Reader) reject(lsn base.LSN, why EndReason, decisive base.LSN, dropped int64) {
	r.done = true
	if decisive < r.mustReach {
		r.err = r.corruption(lsn, why, decisive, fmt.Sprintf("but the log is known to be durable up to %s", r.mustReach))
		return
	}
	next, link, found, err := r.lookAhead(lsn)
	switch {
	case err != nil:
		r.err = err
	case found:
		r.err = r.corruption(lsn, why, decisive, fmt.Sprintf("but the log goes on past it: the record at %s in segment %s links back to %s",
			next, r.segPath(int64(next)/r.segSize), link))
	default:
		r.end = ReadEnd{LSN: lsn, Prev: r.prev, Reason: why, Dropped: dropped}
	}
}

func (r *Reader) corruption(lsn base.LSN, why EndReason, decisive base.LSN, because string) error {
	if why == EndMissingSegment {
		return base.CorruptionErrorf("xlog: WAL segment %s is missing (the record at %s needs it), %s",
			r.segPath(int64(decisive)/r.segSize), lsn, because)
	}
	return base.CorruptionErrorf("xlog: WAL record at %s in segment %s: %s, %s", lsn, r.segPath(int64(lsn)/r.segSize), why, because)
}

// lookAhead searches the WAL after a failed record at d for a record with
// a valid CRC whose prev link lies in [d, its own start): proof that the log
// went on past d. It returns that record's start and prev link.
//
// The cost is one pass over the bytes after d (up to limit, or over every
// segment file present), reading two words at each 8-aligned position; a
// CRC is computed only where the length is possible and the prev link lies
// in that window, which garbage, zeros and stale records almost never pass.
func (r *Reader) lookAhead(d base.LSN) (at, link base.LSN, found bool, err error) {
	first := int64(d) / r.segSize
	var segs []int64
	if r.limit != 0 {
		for no := first; no*r.segSize < int64(r.limit); no++ {
			segs = append(segs, no)
		}
	} else {
		all, err := listSegments(r.fs, r.walDir)
		if err != nil {
			return 0, 0, false, fmt.Errorf("xlog: look-ahead past %s: %w", d, err)
		}
		for _, no := range all {
			if no >= first && no*r.segSize < int64(maxReaderLSN) {
				segs = append(segs, no)
			}
		}
	}
	for _, no := range segs {
		segStart := no * r.segSize
		from, to := max(int64(d)+recAlign, segStart), segStart+r.segSize
		if r.limit != 0 {
			to = min(to, int64(r.limit))
		}
		data, ok, err := r.segment(no)
		if err != nil {
			return 0, 0, false, err
		}
		if !ok {
			continue
		}
		for p := from; p < to; p += recAlign {
			var totLen int64
			var prev base.LSN
			if off := p - segStart; off+HeaderSize <= r.segSize {
				totLen = int64(binary.LittleEndian.Uint32(data[off:]))
				if totLen < HeaderSize || totLen > MaxRecordSize {
					continue
				}
				prev = base.LSN(binary.LittleEndian.Uint64(data[off+16:]))
			} else {
				var hdr [HeaderSize]byte
				n, err := r.readAt(hdr[:], base.LSN(p))
				if err != nil {
					return 0, 0, false, err
				}
				if n < HeaderSize {
					continue
				}
				totLen = int64(binary.LittleEndian.Uint32(hdr[0:]))
				prev = base.LSN(binary.LittleEndian.Uint64(hdr[16:]))
			}
			if prev < d || prev >= base.LSN(p) || prev%recAlign != 0 || totLen < HeaderSize || totLen > MaxRecordSize ||
				(r.limit != 0 && p+totLen > int64(r.limit)) {
				continue
			}
			valid, err := r.validAt(base.LSN(p), totLen)
			if err != nil {
				return 0, 0, false, err
			}
			if valid {
				return base.LSN(p), prev, true, nil
			}
			// validAt may have read other segments over this one's slot.
			if data, _, err = r.segment(no); err != nil {
				return 0, 0, false, err
			}
		}
	}
	return 0, 0, false, nil
}

// validAt reports whether the totLen bytes at lsn are present and carry a
// matching CRC.
func (r *Reader) validAt(lsn base.LSN, totLen int64) (bool, error) {
	end := lsn + base.LSN(totLen)
	if miss, err := r.firstMissing(lsn, end); err != nil || miss < end {
		return false, err
	}
	var hdr [HeaderSize]byte
	if n, err := r.readAt(hdr[:], lsn); err != nil || n < HeaderSize {
		return false, err
	}
	crc, ok, err := r.streamCRC(lsn, totLen, hdr[:])
	return ok && crc == binary.LittleEndian.Uint32(hdr[4:]), err
}

// streamCRC computes the CRC of the totLen-byte record at lsn, whose header
// is hdr, segment by segment, without copying it. ok is false if a segment
// it needs is missing.
func (r *Reader) streamCRC(lsn base.LSN, totLen int64, hdr []byte) (crc uint32, ok bool, err error) {
	pos, end := int64(lsn)+HeaderSize, int64(lsn)+totLen
	for pos < end {
		no := pos / r.segSize
		data, present, err := r.segment(no)
		if err != nil || !present {
			return 0, false, err
		}
		off := pos - no*r.segSize
		n := min(end-pos, r.segSize-off)
		crc = crc32.Update(crc, castagnoli, data[off:off+n])
		pos += n
	}
	crc = crc32.Update(crc, castagnoli, hdr[0:4])
	return crc32.Update(crc, castagnoli, hdr[8:HeaderSize]), true, nil
}

// firstMissing returns the first position in [from, end) that lies in a
// segment whose file does not exist, or end if there is none. It stops at
// the first missing segment, and asks the file system only about segments
// it has not read.
func (r *Reader) firstMissing(from, end base.LSN) (base.LSN, error) {
	for no := int64(from) / r.segSize; no*r.segSize < int64(end); no++ {
		ok, err := r.exists(no)
		if err != nil {
			return 0, err
		}
		if !ok {
			return max(from, base.LSN(no*r.segSize)), nil
		}
	}
	return end, nil
}

func (r *Reader) exists(no int64) (bool, error) {
	for i := range r.segs {
		if r.segs[i].no == no {
			return r.segs[i].present, nil
		}
	}
	_, err := r.fs.Stat(r.segPath(no))
	switch {
	case err == nil:
		return true, nil
	case vfs.IsNotExist(err):
		return false, nil
	}
	return false, fmt.Errorf("xlog: stat WAL segment %s: %w", r.segPath(no), err)
}

// zeroDistance returns the bytes from lsn to the next all-zero 8-byte word
// in lsn's segment.
func (r *Reader) zeroDistance(lsn base.LSN) int64 {
	no := int64(lsn) / r.segSize
	data, ok, err := r.segment(no)
	if err != nil || !ok {
		return 0
	}
	start := int64(lsn) - no*r.segSize
	for off := start; off+8 <= r.segSize; off += 8 {
		if binary.LittleEndian.Uint64(data[off:]) == 0 {
			return off - start
		}
	}
	return r.segSize - start
}

// readAt reads len(p) bytes of the stream at lsn, crossing segments, and
// returns how many it could read before a missing segment.
func (r *Reader) readAt(p []byte, lsn base.LSN) (int, error) {
	done := 0
	for done < len(p) {
		pos := int64(lsn) + int64(done)
		no := pos / r.segSize
		data, ok, err := r.segment(no)
		if err != nil {
			return done, err
		}
		if !ok {
			return done, nil
		}
		done += copy(p[done:], data[pos-no*r.segSize:])
	}
	return done, nil
}

func (r *Reader) segPath(no int64) string { return path.Join(r.walDir, segmentName(no)) }

// segment returns the bytes of segment no, reading its file unless it is
// one of the two held, and whether the file exists. The bytes stay valid
// until the next call that reads another segment.
func (r *Reader) segment(no int64) ([]byte, bool, error) {
	r.tick++
	for i := range r.segs {
		if s := &r.segs[i]; s.no == no {
			s.used = r.tick
			if !s.present {
				return nil, false, nil
			}
			return s.buf, true, nil
		}
	}
	s := &r.segs[0]
	if r.segs[1].used < s.used {
		s = &r.segs[1]
	}
	s.no, s.present, s.used = -1, false, r.tick
	p := r.segPath(no)
	f, err := r.fs.Open(p)
	if vfs.IsNotExist(err) {
		s.no = no
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("xlog: open WAL segment %s: %w", p, err)
	}
	defer f.Close()
	if s.buf == nil {
		s.buf = make([]byte, r.segSize)
	}
	n, err := f.ReadAt(s.buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, false, fmt.Errorf("xlog: read WAL segment %s: %w", p, err)
	}
	// A short segment (only possible if something outside xlog truncated
	// it) reads as zeros beyond its end.
	clear(s.buf[n:])
	s.no, s.present = no, true
	return s.buf, true, nil
}
