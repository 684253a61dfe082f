package xlog

import (
	"encoding/binary"

	"github.com/heapkv/heapkv/internal/base"
)

// A generic page delta lists the byte ranges of a page that changed, with
// their new contents:
//
//	+-------+-------+-------+------------+-------+-------+------------+~~~
//	| nruns | off 0 | len 0 | len 0 bytes| off 1 | len 1 | len 1 bytes|
//	+-------+-------+-------+------------+-------+-------+------------+~~~
//	  u16     u16     u16                  u16     u16
//
// Runs are in ascending order and do not overlap. Two changed ranges closer
// than deltaMergeGap bytes are merged into one run, since a run header costs
// deltaRunHeader bytes. The page LSN (the first 8 bytes) is never part of a
// delta: redo sets it from the record.
const (
	deltaRunHeader = 4
	deltaMergeGap  = deltaRunHeader
	deltaSkip      = 8 // the page LSN
)

// AppendDelta appends to dst the delta that turns before into after. Both
// must have the same length, at most 64 KiB.
func AppendDelta(dst, before, after []byte) []byte {
	if len(before) != len(after) || len(after) > 1<<16 {
		panic("xlog: AppendDelta of pages of different or excessive size")
	}
	countAt := len(dst)
	dst = append(dst, 0, 0)
	runs := 0
	n := len(after)
	i := min(deltaSkip, n)
	for i < n {
		// Find the next differing byte, a word at a time where possible.
		for i+8 <= n && binary.LittleEndian.Uint64(before[i:]) == binary.LittleEndian.Uint64(after[i:]) {
			i += 8
		}
		for i < n && before[i] == after[i] {
			i++
		}
		if i >= n {
			break
		}
		start := i
		end := i + 1 // one past the last differing byte of the run
		for j := end; j < n; j++ {
			if before[j] != after[j] {
				end = j + 1
			} else if j-end >= deltaMergeGap {
				break
			}
		}
		dst = binary.LittleEndian.AppendUint16(dst, uint16(start))
		dst = binary.LittleEndian.AppendUint16(dst, uint16(end-start))
		dst = append(dst, after[start:end]...)
		runs++
		i = end
	}
	binary.LittleEndian.PutUint16(dst[countAt:], uint16(runs))
	return dst
}

// ApplyDelta applies delta to page. It checks every run against the page
// bounds and the ordering rule before changing anything, and returns an error
// wrapping base.ErrCorrupt for a malformed delta; it never panics.
func ApplyDelta(page, delta []byte) error {
	if err := checkDelta(len(page), delta); err != nil {
		return err
	}
	runs := int(binary.LittleEndian.Uint16(delta))
	p := delta[2:]
	for range runs {
		off := int(binary.LittleEndian.Uint16(p))
		n := int(binary.LittleEndian.Uint16(p[2:]))
		copy(page[off:off+n], p[deltaRunHeader:deltaRunHeader+n])
		p = p[deltaRunHeader+n:]
	}
	return nil
}

func checkDelta(pageLen int, delta []byte) error {
	if len(delta) < 2 {
		return base.CorruptionErrorf("xlog: page delta of %d bytes", len(delta))
	}
	runs := int(binary.LittleEndian.Uint16(delta))
	p := delta[2:]
	next := deltaSkip // the lowest offset the next run may start at
	for r := range runs {
		if len(p) < deltaRunHeader {
			return base.CorruptionErrorf("xlog: page delta run %d truncated", r)
		}
		off := int(binary.LittleEndian.Uint16(p))
		n := int(binary.LittleEndian.Uint16(p[2:]))
		if off < next || n == 0 || off+n > pageLen {
			return base.CorruptionErrorf("xlog: page delta run %d at %d+%d out of order or beyond the %d-byte page", r, off, n, pageLen)
		}
		if len(p) < deltaRunHeader+n {
			return base.CorruptionErrorf("xlog: page delta run %d wants %d bytes, %d left", r, n, len(p)-deltaRunHeader)
		}
		p = p[deltaRunHeader+n:]
		next = off + n
	}
	if len(p) != 0 {
		return base.CorruptionErrorf("xlog: %d stray bytes after page delta", len(p))
	}
	return nil
}
