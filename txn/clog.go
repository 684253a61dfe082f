package txn

import (
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/vfs"
)

// The commit log keeps two status bits per xid in 8 KiB pages, 32768 xids a
// page, 32 pages a segment file DIR/clog/XXXX (the segment number in hex, at
// least four digits). Four xids share a byte, the lowest xid in the lowest
// bits:
//
//	byte (xid % 32768) / 4 of page xid / 32768:
//	  bit 7  6 | 5  4 | 3  2 | 1  0
//	    xid+3  | xid+2| xid+1| xid    (xid a multiple of 4)
//
// Pages are cached in an SLRU of their own (PostgreSQL's transaction
// buffers), separate from shared buffers. For each group of 32 xids a slot
// remembers the highest LSN of a commit record that set a bit there; before
// a page is written the WAL is flushed to the page's highest such LSN, so a
// CLOG page never reaches disk ahead of the WAL that decided it, and
// IsDurable can tell whether a commit's record is flushed.
const (
	clogPageSize     = 8192
	xidsPerPage      = clogPageSize * 4
	pagesPerSegment  = 32
	xidsPerLSNGroup  = 32
	lsnGroupsPerPage = xidsPerPage / xidsPerLSNGroup
)

func clogPage(xid base.XID) int64 { return int64(xid / xidsPerPage) }

type slotState uint8

const (
	slotEmpty slotState = iota
	slotValid
	slotReading
	slotWriting
)

type clogSlot struct {
	pageno   int64
	state    slotState
	dirty    bool // changed since last written; a write in progress clears it at start
	lastUsed atomic.Uint64
	page     []byte
	groupLSN []base.LSN // lsnGroupsPerPage entries
}

// CLOG is the commit log. Its mutex guards the slot table and the page
// bytes; it is never held across I/O: a slot being read or written is marked
// so, and others wait on cond.
//
// A failed fsync of a segment or of the directory is fatal and sticky (the
// kernel may have dropped the pages it was to make durable, while the SLRU
// thinks them clean): from then on every page write, sync, checkpoint and
// truncation fails with that error, and the engine's Halt is stopped. So is
// every write once the Halt has stopped for another cause. Reads go on
// (a page that must evict a dirty one to come in fails, as the eviction
// cannot write); a write error that leaves the page dirty, to be retried,
// is not fatal.
type CLOG struct {
	fs       vfs.FS
	dir      string
	flushWAL func(base.LSN) error
	// halt is the engine's fatal state (nil when the CLOG is used alone);
	// set before first use.
	halt *base.Halt
	// failed is the first failed fsync, for ever.
	failed atomic.Pointer[error]

	// mu in share mode lets Status and IsDurable read a resident page;
	// everything else holds it exclusively.
	mu      sync.RWMutex
	cond    *sync.Cond  // on mu's write lock; signalled when a slot's I/O ends
	scratch chan []byte // two private page copies for writes
	slots   []clogSlot
	byPage  map[int64]int             // pageno -> slot; at most len(slots) entries
	tick    atomic.Uint64             // LRU clock
	hits    [hitStripes]paddedCounter // lookups served from a resident page, striped by xid
	written map[int64]struct{}        // segments written since the last Sync
	stats   CLOGStats
}

// hitStripes spreads the hit counter over cache lines, so that readers on
// different cores do not all write one word for every Status.
const hitStripes = 8

type paddedCounter struct {
	n atomic.Uint64
	_ [56]byte
}

// touch marks slot s most recently used. A slot that already is (the usual
// case for the page of the newest xids) is left alone, so that hits on a
// hot page only read the shared clock, as PostgreSQL's SlruRecentlyUsed
// avoids rewriting the newest page's counter.
func (c *CLOG) touch(s *clogSlot) {
	if s.lastUsed.Load() != c.tick.Load() {
		s.lastUsed.Store(c.tick.Add(1))
	}
}

// CLOGStats counts SLRU activity, like pg_stat_slru.
type CLOGStats struct {
	Hits, Reads, Writes, Zeroed, Truncates uint64
}

// OpenCLOG opens the commit log in dir with nslots page slots. flushWAL
// makes the WAL durable up to an LSN; it may be nil when no WAL exists.
func OpenCLOG(fsys vfs.FS, dir string, nslots int, flushWAL func(base.LSN) error) (*CLOG, error) {
	if nslots < MinCLOGBuffers {
		return nil, fmt.Errorf("txn: %d CLOG buffers is below the minimum of %d", nslots, MinCLOGBuffers)
	}
	if err := fsys.MkdirAll(dir); err != nil {
		return nil, fmt.Errorf("txn: create %s: %w", dir, err)
	}
	if flushWAL == nil {
		flushWAL = func(base.LSN) error { return nil }
	}
	c := &CLOG{
		fs: fsys, dir: dir, flushWAL: flushWAL,
		slots:   make([]clogSlot, nslots),
		byPage:  make(map[int64]int, nslots),
		written: make(map[int64]struct{}),
	}
	c.cond = sync.NewCond(&c.mu)
	mem := make([]byte, (nslots+2)*clogPageSize)
	c.scratch = make(chan []byte, 2)
	for i := range 2 {
		off := (nslots + i) * clogPageSize
		c.scratch <- mem[off : off+clogPageSize : off+clogPageSize]
	}
	lsns := make([]base.LSN, nslots*lsnGroupsPerPage)
	for i := range c.slots {
		c.slots[i].page = mem[i*clogPageSize : (i+1)*clogPageSize : (i+1)*clogPageSize]
		c.slots[i].groupLSN = lsns[i*lsnGroupsPerPage : (i+1)*lsnGroupsPerPage : (i+1)*lsnGroupsPerPage]
	}
	return c, nil
}

func (c *CLOG) segPath(seg int64) string { return path.Join(c.dir, segName(seg)) }

// segName is the file name of segment seg (>= 0): its number in upper-case
// hex, at least four digits.
func segName(seg int64) string {
	name := strings.ToUpper(strconv.FormatInt(seg, 16))
	if len(name) < 4 {
		name = strings.Repeat("0", 4-len(name)) + name
	}
	return name
}

// parseSegName returns the segment a file name in the CLOG directory
// names; ok is false for any name segName does not make (a file that is
// not a segment, which Truncate must leave alone).
func parseSegName(name string) (seg int64, ok bool) {
	if len(name) < 4 || len(name) > 16 || len(name) > 4 && name[0] == '0' {
		return 0, false
	}
	for i := range len(name) {
		if ch := name[i]; !('0' <= ch && ch <= '9' || 'A' <= ch && ch <= 'F') {
			return 0, false
		}
	}
	v, err := strconv.ParseInt(name, 16, 64)
	if err != nil {
		return 0, false
	}
	return v, true
}

// fatal returns the error every write and sync fails with, or nil: the
// Halt's once it has stopped, else the CLOG's own failed fsync.
func (c *CLOG) fatal() error {
	if err := c.halt.Err(); err != nil {
		return err
	}
	if p := c.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// failSync records a failed fsync, stops the Halt with it, and returns the
// error later calls get.
func (c *CLOG) failSync(err error) error {
	c.failed.CompareAndSwap(nil, &err)
	c.halt.Stop(*c.failed.Load())
	return c.fatal()
}

// Status returns xid's status.
func (c *CLOG) Status(xid base.XID) (Status, error) {
	c.mu.RLock()
	if i, ok := c.byPage[clogPage(xid)]; ok && c.slots[i].state == slotValid {
		st := pageStatus(c.slots[i].page, xid)
		c.touch(&c.slots[i])
		c.mu.RUnlock()
		c.hits[xid%hitStripes].n.Add(1)
		return st, nil
	}
	c.mu.RUnlock()

	c.mu.Lock()
	defer c.mu.Unlock()
	i, err := c.residentLocked(clogPage(xid), false)
	if err != nil {
		return 0, err
	}
	return pageStatus(c.slots[i].page, xid), nil
}

// pageStatus reads xid's two bits from its CLOG page. Every value of the
// bits is a Status, so any page bytes read from disk decode.
func pageStatus(page []byte, xid base.XID) Status {
	off := xid % xidsPerPage
	return Status(page[off/4]>>(2*(off%4))) & 3
}

// IsDurable reports whether the commit record that set xid's status has
// been flushed. A page not in memory was written, which needed its WAL
// flushed first, so everything on it is durable.
func (c *CLOG) IsDurable(xid base.XID, flushed base.LSN) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	i, ok := c.byPage[clogPage(xid)]
	if !ok || c.slots[i].state == slotEmpty {
		return true
	}
	return c.slots[i].groupLSN[(xid%xidsPerPage)/xidsPerLSNGroup] <= flushed
}

// SetStatus records st for every xid in xids at once: readers see all of
// them change or none. lsn is the end of the commit or abort record (0 when
// none needs flushing first).
func (c *CLOG) SetStatus(xids []base.XID, st Status, lsn base.LSN) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	// Bring every page in, then set the bits without letting go of the
	// lock, so the change is atomic. Loading one page may evict another we
	// loaded; then go round again (it terminates: there are at least two
	// slots and a transaction's xids rarely span more pages).
	for attempt := 0; ; attempt++ {
		all := true
		for _, x := range xids {
			i, ok := c.byPage[clogPage(x)]
			if !ok || c.slots[i].state != slotValid {
				all = false
				if _, err := c.residentLocked(clogPage(x), false); err != nil {
					return err
				}
			}
		}
		if all {
			break
		}
		if attempt > 100 {
			return fmt.Errorf("txn: cannot hold the CLOG pages of %d xids at once; raise the CLOG buffers", len(xids))
		}
	}
	for _, x := range xids {
		s := &c.slots[c.byPage[clogPage(x)]]
		off := x % xidsPerPage
		b := &s.page[off/4]
		shift := 2 * (off % 4)
		*b = *b&^(3<<shift) | byte(st)<<shift
		if g := &s.groupLSN[off/xidsPerLSNGroup]; lsn > *g {
			*g = lsn
		}
		s.dirty = true
	}
	return nil
}

// ZeroPage makes page pageno an all-in-progress page in memory, without
// reading it (its xids are about to be handed out for the first time). The
// caller WAL-logs the zeroing.
func (c *CLOG) ZeroPage(pageno int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	i, err := c.residentLocked(pageno, true)
	if err != nil {
		return err
	}
	clear(c.slots[i].page)
	clear(c.slots[i].groupLSN)
	c.slots[i].dirty = true
	c.stats.Zeroed++
	return nil
}

// residentLocked returns the slot holding pageno, reading it in (or, with
// zero, just claiming a slot) if needed. c.mu is held; it is released while
// I/O runs.
func (c *CLOG) residentLocked(pageno int64, zero bool) (int, error) {
	for {
		if i, ok := c.byPage[pageno]; ok {
			s := &c.slots[i]
			switch s.state {
			case slotReading, slotWriting:
				c.cond.Wait()
				continue
			case slotValid:
				c.touch(s)
				c.hits[0].n.Add(1)
				return i, nil
			}
		}
		i, err := c.victimLocked()
		if err != nil {
			return 0, err
		}
		if i < 0 {
			continue // a write ran; look again
		}
		s := &c.slots[i]
		if s.state == slotValid {
			delete(c.byPage, s.pageno)
		}
		s.pageno, s.dirty = pageno, false
		s.lastUsed.Store(c.tick.Add(1))
		c.byPage[pageno] = i
		if zero {
			s.state = slotValid
			return i, nil
		}
		s.state = slotReading
		c.mu.Unlock()
		err = c.readPage(pageno, s.page)
		c.mu.Lock()
		if err != nil {
			s.state = slotEmpty
			delete(c.byPage, pageno)
			c.cond.Broadcast()
			return 0, err
		}
		clear(s.groupLSN)
		s.state = slotValid
		c.stats.Reads++
		c.cond.Broadcast()
		return i, nil
	}
}

// victimLocked returns a free or clean least-recently-used slot, or -1
// after writing a dirty one out (the caller looks again, since the world
// moved while the lock was released).
func (c *CLOG) victimLocked() (int, error) {
	best, bestUsed := -1, ^uint64(0)
	for i := range c.slots {
		s := &c.slots[i]
		switch s.state {
		case slotEmpty:
			return i, nil
		case slotValid:
			if u := s.lastUsed.Load(); u < bestUsed {
				best, bestUsed = i, u
			}
		}
	}
	if best < 0 {
		c.cond.Wait() // every slot is busy with I/O
		return -1, nil
	}
	if !c.slots[best].dirty {
		return best, nil
	}
	return -1, c.writeSlotLocked(best)
}

// writeSlotLocked writes slot i, flushing the WAL first up to the highest
// LSN that decided a status on it. c.mu is held, and released during I/O.
func (c *CLOG) writeSlotLocked(i int) error {
	s := &c.slots[i]
	var maxLSN base.LSN
	for _, l := range s.groupLSN {
		maxLSN = max(maxLSN, l)
	}
	if err := c.fatal(); err != nil {
		return err // the page stays dirty; nothing is written any more
	}
	s.state, s.dirty = slotWriting, false
	pageno := s.pageno
	c.mu.Unlock()
	err := c.flushWAL(maxLSN)
	if err == nil {
		// A private copy: the bytes are read without the lock, and
		// nobody changes a page in state slotWriting, but the copy keeps
		// the write independent of that rule.
		buf := <-c.scratch
		c.mu.RLock()
		copy(buf, s.page)
		c.mu.RUnlock()
		err = c.writePage(pageno, buf)
		c.scratch <- buf
	}
	c.mu.Lock()
	s.state = slotValid
	if err != nil {
		s.dirty = true
	} else {
		c.stats.Writes++
		c.written[pageno/pagesPerSegment] = struct{}{}
	}
	c.cond.Broadcast()
	return err
}

func (c *CLOG) readPage(pageno int64, dst []byte) error {
	seg := pageno / pagesPerSegment
	f, err := c.fs.Open(c.segPath(seg))
	if err != nil {
		if vfs.IsNotExist(err) {
			// Never written: after a crash a page zeroed in WAL may be
			// missing on disk; redo of that record makes it. Outside
			// recovery the xids on it were never handed out.
			clear(dst)
			return nil
		}
		return fmt.Errorf("txn: open CLOG segment %s: %w", c.segPath(seg), err)
	}
	defer f.Close()
	n, err := f.ReadAt(dst, (pageno%pagesPerSegment)*clogPageSize)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("txn: read CLOG page %d: %w", pageno, err)
	}
	clear(dst[n:])
	return nil
}

func (c *CLOG) writePage(pageno int64, src []byte) error {
	seg := pageno / pagesPerSegment
	p := c.segPath(seg)
	f, err := c.fs.Open(p)
	created := false
	if vfs.IsNotExist(err) {
		f, err = c.fs.Create(p)
		created = true
	}
	if err != nil {
		return fmt.Errorf("txn: open CLOG segment %s: %w", p, err)
	}
	defer f.Close()
	if _, err := f.WriteAt(src, (pageno%pagesPerSegment)*clogPageSize); err != nil {
		return fmt.Errorf("txn: write CLOG page %d: %w", pageno, err)
	}
	if created {
		// The name must survive a crash as surely as the data will once
		// synced.
		if err := c.fs.SyncDir(c.dir); err != nil {
			return c.failSync(fmt.Errorf("txn: fsync of CLOG directory %s failed: %w", c.dir, err))
		}
	}
	return nil
}

// Checkpoint writes every dirty page and fsyncs every segment written since
// the last checkpoint (CheckPointCLOG). A failed fsync is fatal (see CLOG);
// a segment that could not even be opened for its sync stays in the set,
// for the next checkpoint to try again.
func (c *CLOG) Checkpoint() error {
	if err := c.fatal(); err != nil {
		return err
	}
	c.mu.Lock()
	for i := range c.slots {
		for c.slots[i].state == slotReading || c.slots[i].state == slotWriting {
			c.cond.Wait()
		}
		if c.slots[i].state == slotValid && c.slots[i].dirty {
			if err := c.writeSlotLocked(i); err != nil {
				c.mu.Unlock()
				return err
			}
		}
	}
	segs := make([]int64, 0, len(c.written))
	for seg := range c.written {
		segs = append(segs, seg)
	}
	clear(c.written)
	c.mu.Unlock()
	for i, seg := range segs {
		f, err := c.fs.Open(c.segPath(seg))
		if err != nil {
			c.mu.Lock()
			for _, s := range segs[i:] {
				c.written[s] = struct{}{}
			}
			c.mu.Unlock()
			return fmt.Errorf("txn: open CLOG segment for sync: %w", err)
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return c.failSync(fmt.Errorf("txn: fsync of CLOG segment %s failed; the engine must stop and recover from WAL: %w", c.segPath(seg), err))
		}
	}
	// The segments' names too: writePage syncs the directory when it
	// creates a file, but a create whose first write or directory sync
	// failed leaves a file that later writes find and never announce. The
	// redo point is about to move past these commits, so their segment
	// must be reachable after a power loss.
	if len(segs) > 0 {
		if err := c.fs.SyncDir(c.dir); err != nil {
			return c.failSync(fmt.Errorf("txn: fsync of CLOG directory %s failed: %w", c.dir, err))
		}
	}
	return nil
}

// Truncate removes every segment all of whose xids are below oldest. The
// caller has WAL-logged the truncation.
func (c *CLOG) Truncate(oldest base.XID) error {
	if err := c.fatal(); err != nil {
		return err
	}
	cutoff := clogPage(oldest) / pagesPerSegment // segments below this go
	c.mu.Lock()
	for page, i := range c.byPage {
		if page/pagesPerSegment < cutoff && c.slots[i].state == slotValid {
			c.slots[i].state = slotEmpty
			delete(c.byPage, page)
		}
	}
	c.mu.Unlock()
	names, err := c.fs.List(c.dir)
	if err != nil {
		return fmt.Errorf("txn: list %s: %w", c.dir, err)
	}
	removed := false
	for _, name := range names {
		seg, ok := parseSegName(name)
		if !ok || seg >= cutoff {
			continue
		}
		if err := c.fs.Remove(path.Join(c.dir, name)); err != nil {
			return fmt.Errorf("txn: remove CLOG segment %s: %w", name, err)
		}
		removed = true
	}
	if removed {
		c.mu.Lock()
		c.stats.Truncates++
		c.mu.Unlock()
		if err := c.fs.SyncDir(c.dir); err != nil {
			return c.failSync(fmt.Errorf("txn: fsync of CLOG directory %s failed: %w", c.dir, err))
		}
	}
	return nil
}

// Stats returns the SLRU counters.
func (c *CLOG) Stats() CLOGStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.stats
	for i := range c.hits {
		st.Hits += c.hits[i].n.Load()
	}
	return st
}
