package xlog

import (
	"fmt"
	"path"
	"slices"
	"strconv"

	"github.com/heapkv/heapkv/internal/vfs"
)

// Segments. The WAL stream is cut into files of SegmentSize bytes; segment n
// holds LSNs [n*SegmentSize, (n+1)*SegmentSize) and is named by n as 16
// upper-case hex digits. The stream starts at segment 1, so LSN 0 stays
// invalid.
//
// A segment is created whole before it is written to: filled with zeros
// under a temporary name, fsynced, renamed into place and the directory
// fsynced (PostgreSQL's XLogFileInit), so that writing the WAL never extends
// a file and an fsync of a segment never has to make metadata durable.
// After a checkpoint, segments wholly below the redo point are recycled:
// renamed to the next unused future number (up to what max_wal_size asks
// for) and removed beyond that.

const tempSegmentName = "segment.tmp"

func segmentName(seg int64) string { return fmt.Sprintf("%016X", seg) }

func parseSegmentName(name string) (int64, bool) {
	if len(name) != 16 {
		return 0, false
	}
	n, err := strconv.ParseUint(name, 16, 63)
	if err != nil || segmentName(int64(n)) != name {
		return 0, false
	}
	return int64(n), true
}

func (l *Log) segmentPath(seg int64) string { return path.Join(l.walDir, segmentName(seg)) }

// segmentForWriteLocked returns the open file of segment seg, creating the
// segment if it does not exist, and closes the previous one (every write is
// synced at once, so it has nothing pending). The caller holds writeMu.
func (l *Log) segmentForWriteLocked(seg int64) (vfs.File, error) {
	w := &l.writeMu
	if w.cur != nil && w.curSeg == seg {
		return w.cur, nil
	}
	if w.cur != nil {
		err := w.cur.Close()
		w.cur = nil
		if err != nil {
			return nil, err
		}
	}
	if err := l.ensureSegment(seg); err != nil {
		return nil, err
	}
	f, err := l.fs.Open(l.segmentPath(seg))
	if err != nil {
		return nil, err
	}
	w.cur, w.curSeg = f, seg
	// Ask the WAL writer to prepare the next one, and the checkpointer to
	// run if the WAL since the redo point passed its share of max_wal_size.
	select {
	case l.precreate <- seg + 1:
	default:
	}
	if seg*l.segSize-int64(l.redoLSN.Load()) >= l.ckptDistance {
		l.requestCheckpoint()
	}
	return f, nil
}

// ensureSegment creates segment seg, zero-filled and durable, unless it
// exists already.
func (l *Log) ensureSegment(seg int64) error {
	l.segMu.Lock()
	defer l.segMu.Unlock()
	return l.ensureSegmentLocked(seg)
}

// ensureSegmentAhead creates segment seg for the WAL writer, unless the
// write position has reached it already: then the writer has made it
// itself, or it may even be below a checkpoint's redo point and recycled,
// and creating it again would leave a useless zero file behind. The check
// is made under segMu, which recycling also holds.
func (l *Log) ensureSegmentAhead(seg int64) error {
	l.segMu.Lock()
	defer l.segMu.Unlock()
	if seg <= int64(l.written.Load())/l.segSize {
		return nil
	}
	return l.ensureSegmentLocked(seg)
}

func (l *Log) ensureSegmentLocked(seg int64) error {
	p := l.segmentPath(seg)
	size, err := l.fs.Stat(p)
	if err == nil {
		if size != l.segSize {
			return fmt.Errorf("xlog: segment %s is %d bytes, want %d", segmentName(seg), size, l.segSize)
		}
		return nil
	}
	if !vfs.IsNotExist(err) {
		return err
	}
	tmp := path.Join(l.walDir, tempSegmentName)
	err = vfs.CreateAtomic(l.fs, tmp, p, func(f vfs.File) error { return writeZeros(f, 0, l.segSize) })
	if err != nil {
		return err
	}
	return l.fs.SyncDir(l.walDir)
}

var zeroChunk = make([]byte, 64<<10)

func writeZeros(f vfs.File, off, end int64) error {
	for off < end {
		n := min(int64(len(zeroChunk)), end-off)
		if _, err := f.WriteAt(zeroChunk[:n], off); err != nil {
			return err
		}
		off += n
	}
	return nil
}

// listSegments returns the numbers of the segment files in the WAL
// directory, ascending.
func listSegments(fsys vfs.FS, walDir string) ([]int64, error) {
	names, err := fsys.List(walDir)
	if err != nil {
		return nil, err
	}
	var segs []int64
	for _, name := range names {
		if n, ok := parseSegmentName(name); ok {
			segs = append(segs, n)
		}
	}
	slices.Sort(segs)
	return segs, nil
}

// recycleSegments renames or removes every segment wholly below the segment
// holding redo. Recycled files keep their old bytes: the prev link and CRC of
// every record make stale bytes from another address stop the reader. At
// most keep future segments (counted from the one being written) are kept
// ready; the rest are removed.
func (l *Log) recycleSegments(redoSeg, writingSeg int64, keep int) (recycled, removed int, err error) {
	l.segMu.Lock()
	defer l.segMu.Unlock()
	segs, err := listSegments(l.fs, l.walDir)
	if err != nil {
		return 0, 0, err
	}
	future := 0
	last := writingSeg
	for _, s := range segs {
		if s > writingSeg {
			future++
		}
		last = max(last, s)
	}
	for _, s := range segs {
		if s >= redoSeg {
			break
		}
		if future < keep {
			last++
			if err := l.fs.Rename(l.segmentPath(s), l.segmentPath(last)); err != nil {
				return recycled, removed, err
			}
			future++
			recycled++
			continue
		}
		if err := l.fs.Remove(l.segmentPath(s)); err != nil {
			return recycled, removed, err
		}
		removed++
	}
	if recycled+removed > 0 {
		err = l.fs.SyncDir(l.walDir)
	}
	return recycled, removed, err
}
