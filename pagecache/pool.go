package pagecache

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heapkv/heapkv/internal/base"
)

// numPartitions is the number of mapping-table partitions
// (NUM_BUFFER_PARTITIONS).
const numPartitions = 128

// numScratch is the number of private page copies used to write pages out;
// a writer waits for one when all are in use.
const numScratch = 16

// minBuffers is the smallest pool accepted (PostgreSQL's minimum is 16).
const minBuffers = 16

// Config configures a Pool. Zero fields take the defaults noted.
type Config struct {
	// SharedBuffers is the size of the buffer pool in bytes, rounded down
	// to whole pages. Default 128 MiB; at least 16 pages.
	SharedBuffers int
	// FlushWAL makes the WAL durable up to lsn. The pool calls it before it
	// writes a dirty page whose LSN is lsn (the WAL-before-data rule). Nil
	// means there is no WAL (tests, temporary relations).
	FlushWAL func(lsn base.LSN) error
	// DataChecksums is data_checksums: Off turns off writing and verifying
	// page checksums (headers are still checked). Default On.
	DataChecksums base.Toggle
	// BgWriterDelay is the background writer's sleep between rounds
	// (bgwriter_delay). Default 200 ms.
	BgWriterDelay time.Duration
	// BgWriterLRUMaxPages caps the pages written per round
	// (bgwriter_lru_maxpages). Default 100; negative disables writing.
	BgWriterLRUMaxPages int
	// BgWriterLRUMultiplier scales the expected demand for clean buffers
	// (bgwriter_lru_multiplier). Default 2.0.
	BgWriterLRUMultiplier float64
	// Logger receives background errors. Default: discard.
	Logger *slog.Logger
	// Halt is the engine's fatal state. A failed fsync of a data file
	// stops it (Storage.Sync; NewPool hands it to the Storage). Once it is
	// stopped, for any reason, the pool writes no page: the background
	// writer quits, Checkpoint, Extend and the write of a dirty victim
	// return its error, and the Storage changes nothing on disk. Reading
	// goes on: pages in the pool are served and clean victims are reused.
	// A failed page write is not fatal and does not stop it (the page stays
	// dirty and is written again later). Nil: never stops (tests).
	Halt *base.Halt
}

// Defaults of Config, each declared once: kv's settings table shows and
// checks these, and a zero Config field means the default.
const (
	DefaultSharedBuffers         = 128 << 20
	MinSharedBuffers             = minBuffers * BlockSize
	DefaultBgWriterDelay         = 200 * time.Millisecond
	DefaultBgWriterLRUMaxPages   = 100
	DefaultBgWriterLRUMultiplier = 2.0
)

func (c *Config) fill() {
	if c.SharedBuffers == 0 {
		c.SharedBuffers = DefaultSharedBuffers
	}
	if c.BgWriterDelay == 0 {
		c.BgWriterDelay = DefaultBgWriterDelay
	}
	if c.BgWriterLRUMaxPages == 0 {
		c.BgWriterLRUMaxPages = DefaultBgWriterLRUMaxPages
	}
	if c.BgWriterLRUMultiplier == 0 {
		c.BgWriterLRUMultiplier = DefaultBgWriterLRUMultiplier
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Pool is the shared buffer pool. See the package documentation for its
// rules and lock order.
type Pool struct {
	cfg   Config
	smgr  *Storage
	nbuf  int
	slab  []byte       // nbuf pages, then numScratch write copies
	descs []bufferDesc // one per buffer
	parts [numPartitions]partition

	// hand is the clock hand: the number of ticks so far; the buffer it
	// points at is hand % nbuf.
	hand atomic.Uint64

	// scratch holds the private page copies that writes checksum and
	// write, so that the shared page may keep changing its hint bits.
	scratch chan []byte

	ckpt struct {
		sync.Mutex
		ids []ckptEntry // preallocated, nbuf long; guarded by the mutex
	}
	bgw   bgWriterState
	stats counters

	closed atomic.Bool
	stop   chan struct{}
	wg     sync.WaitGroup
}

type ckptEntry struct {
	tag Tag
	id  int32
}

// NewPool creates a buffer pool over smgr. The pool does not own smgr's
// files' durability: Checkpoint fsyncs them, Close only closes.
func NewPool(smgr *Storage, cfg Config) (*Pool, error) {
	cfg.fill()
	if !cfg.DataChecksums.Valid() {
		return nil, fmt.Errorf("pagecache: data_checksums %v", cfg.DataChecksums)
	}
	nbuf := cfg.SharedBuffers / BlockSize
	if nbuf < minBuffers {
		return nil, fmt.Errorf("pagecache: shared_buffers %d bytes is below the minimum of %d pages", cfg.SharedBuffers, minBuffers)
	}
	slab, err := allocSlab((nbuf + numScratch) * BlockSize)
	if err != nil {
		return nil, err
	}
	bp := &Pool{
		cfg:     cfg,
		smgr:    smgr,
		nbuf:    nbuf,
		slab:    slab,
		descs:   make([]bufferDesc, nbuf),
		scratch: make(chan []byte, numScratch),
		stop:    make(chan struct{}),
	}
	perPart := nbuf/numPartitions + 16 // some room for an uneven hash
	for i := range bp.parts {
		bp.parts[i].tab.Store(newMapTable(perPart))
	}
	for i := range numScratch {
		off := (nbuf + i) * BlockSize
		bp.scratch <- slab[off : off+BlockSize : off+BlockSize]
	}
	bp.ckpt.ids = make([]ckptEntry, nbuf)
	smgr.setHalt(cfg.Halt)
	return bp, nil
}

// NBuffers returns the number of buffers.
func (bp *Pool) NBuffers() int { return bp.nbuf }

// Storage returns the storage manager under the pool.
func (bp *Pool) Storage() *Storage { return bp.smgr }

func (bp *Pool) page(id int32) Page {
	off := int(id) * BlockSize
	return Page(bp.slab[off : off+BlockSize : off+BlockSize])
}

func partitionOf(key uint64) int {
	return int((key * 0x9E3779B97F4A7C15) >> (64 - 7))
}

// ReadMode says how ReadBuffer gets a page's contents.
type ReadMode int

const (
	// ReadNormal reads the page from disk if it is not cached.
	ReadNormal ReadMode = iota
	// ReadZeroAndLock does not read: the page comes back zeroed and
	// locked exclusively, for a caller that will initialise it (a new page,
	// or a full-page image in redo). The block may lie past the end of the
	// file; writing it out extends the file.
	ReadZeroAndLock
)

// ReadBuffer returns block blk of rel pinned. With strategy non-nil the
// buffer is taken from and returned to the strategy's ring. On error no pin
// is held. The caller must Release the buffer exactly once. After the Halt
// has stopped, reads still work (rule 11): only a miss whose victim is dirty
// fails, with the Halt's error, since that page may not be written.
func (bp *Pool) ReadBuffer(rel base.RelFileNode, blk base.BlockNum, mode ReadMode, strategy *Strategy) (Buffer, error) {
	if bp.closed.Load() {
		return Buffer{}, ErrClosed
	}
	tag := Tag{Rel: rel, Blk: blk}
	id, valid, err := bp.alloc(tag, strategy)
	if err != nil {
		return Buffer{}, err
	}
	b := Buffer{bp: bp, id: id}
	d := &bp.descs[id]
	if mode == ReadZeroAndLock {
		if !valid && bp.startIO(d, true) {
			clear(bp.page(id))
			bp.terminateIO(d, false, flagValid, false)
		}
		d.content.Lock()
		clear(bp.page(id))
		return b, nil
	}
	if valid {
		d.hits.Add(1)
		return b, nil
	}
	if !bp.startIO(d, true) {
		// Another goroutine read it in while we waited.
		d.hits.Add(1)
		return b, nil
	}
	page := bp.page(id)
	if err := bp.smgr.Read(rel, blk, page); err != nil {
		bp.terminateIO(d, false, 0, true)
		d.unpin()
		return Buffer{}, err
	}
	if !page.Verify(blk, bp.cfg.DataChecksums == base.On) {
		bp.terminateIO(d, false, 0, true)
		d.unpin()
		bp.stats.checksumFailures.Add(1)
		return Buffer{}, base.CorruptionErrorf("pagecache: invalid page in block %d of relation %d: checksum or header mismatch", blk, rel)
	}
	bp.stats.reads.Add(1)
	bp.terminateIO(d, false, flagValid, false)
	return b, nil
}

// Extend adds a block to rel and returns it pinned, zeroed and locked
// exclusively. The caller initialises the page and marks it dirty. After the
// Halt has stopped it fails with the Halt's error.
func (bp *Pool) Extend(rel base.RelFileNode, strategy *Strategy) (Buffer, error) {
	if bp.closed.Load() {
		return Buffer{}, ErrClosed
	}
	if err := bp.cfg.Halt.Err(); err != nil {
		return Buffer{}, err
	}
	blk, err := bp.smgr.Extend(rel)
	if err != nil {
		return Buffer{}, err
	}
	bp.stats.extends.Add(1)
	return bp.ReadBuffer(rel, blk, ReadZeroAndLock, strategy)
}

// LockMode says how WithPage locks a page's content latch.
type LockMode int8

const (
	// Shared takes the latch in share mode: fn only reads the page, and
	// what it says about dirtying is ignored.
	Shared LockMode = iota
	// Exclusive takes the latch exclusively: fn may change the page.
	Exclusive
)

// WithPage pins block blk of rel, locks it in mode, calls fn, marks the
// page dirty if fn says so (Exclusive only), unlocks and releases, whatever
// fn returns. It is the way to touch a page that cannot leak a pin. Since it
// marks the page dirty after fn, fn must not WAL-log its change (rule 1).
func (bp *Pool) WithPage(rel base.RelFileNode, blk base.BlockNum, mode LockMode, fn func(Page) (dirty bool, err error)) error {
	b, err := bp.ReadBuffer(rel, blk, ReadNormal, nil)
	if err != nil {
		return err
	}
	defer b.Release()
	if mode == Shared {
		b.LockShare()
		defer b.UnlockShare()
		_, err := fn(b.Page())
		return err
	}
	b.LockExclusive()
	defer b.UnlockExclusive()
	dirty, err := fn(b.Page())
	if dirty {
		b.MarkDirty()
	}
	return err
}

// alloc finds the buffer for tag, or assigns one, and returns it pinned.
// valid reports whether the buffer already holds the page. This is
// PostgreSQL's BufferAlloc; see rules 3-5 of the package documentation.
func (bp *Pool) alloc(tag Tag, strategy *Strategy) (id int32, valid bool, err error) {
	key := tag.key()
	newIdx := partitionOf(key)
	newPart := &bp.parts[newIdx]

	// Fast path: a lock-free lookup, then pin and check the tag.
	if id := newPart.lookup(key); id >= 0 {
		d := &bp.descs[id]
		valid := d.pin(strategy != nil)
		if d.state.Load()&flagTagValid != 0 && d.tag == tag {
			return id, valid, nil
		}
		d.unpin()
	}

	for {
		victim, st, fromRing, err := bp.getVictim(strategy)
		if err != nil {
			return 0, false, err
		}
		d := &bp.descs[victim]
		// Pin the victim while its header is locked, so nobody else can
		// take it, then let go of the header.
		st += refOne
		d.unlockHdr(st)

		if st&flagDirty != 0 {
			if fromRing && strategy.kind == BulkRead {
				// A bulk read would have to write this page (and maybe
				// flush WAL) to reuse it; cheaper to take a fresh one.
				strategy.reject()
				d.unpin()
				continue
			}
			// Write it out. Skip it if somebody holds it exclusively:
			// waiting could deadlock with a holder that waits for us.
			if !d.content.TryRLock() {
				d.unpin()
				continue
			}
			_, err := bp.flushBuffer(victim, &bp.stats.writesBackend)
			d.content.RUnlock()
			if err != nil {
				d.unpin()
				return 0, false, err
			}
		}

		// Lock the old and the new mapping partitions, in partition order.
		oldTagValid := st&flagTagValid != 0
		oldKey := d.tag.key()
		oldIdx := -1
		if oldTagValid {
			oldIdx = partitionOf(oldKey)
		}
		unlock := bp.lockPartitions(newIdx, oldIdx)
		oldPart := newPart
		if oldIdx >= 0 {
			oldPart = &bp.parts[oldIdx]
		}

		if existing := newPart.lookup(key); existing >= 0 {
			// The page is (or came) in already: use that buffer. Under
			// the partition mutex the lookup is exact.
			valid := bp.descs[existing].pin(strategy != nil)
			unlock()
			d.unpin()
			return existing, valid, nil
		}

		st = d.lockHdr()
		if refcount(st) != 1 || st&(flagDirty|flagIOInProgress) != 0 {
			// Somebody pinned or dirtied the victim meanwhile; try another.
			d.unlockHdr(st)
			unlock()
			d.unpin()
			continue
		}
		if oldTagValid {
			oldPart.deleteLocked(oldKey)
			if st&flagValid != 0 {
				bp.stats.evictions.Add(1)
			}
		}
		newPart.insertLocked(key, victim)
		d.tag = tag
		st &^= flagValid | flagDirty | flagJustDirtied | flagCheckpointNeeded | flagIOError | usageMask
		st |= flagTagValid | usageOne
		d.unlockHdr(st)
		unlock()
		bp.stats.allocs.Add(1)
		return victim, false, nil
	}
}

// lockPartitions locks partition i (and j, if j >= 0 and different)
// exclusively, lower number first, and returns the unlock.
func (bp *Pool) lockPartitions(i, j int) (unlock func()) {
	if j < 0 || i == j {
		bp.parts[i].mu.Lock()
		return bp.parts[i].mu.Unlock
	}
	lo, hi := &bp.parts[min(i, j)], &bp.parts[max(i, j)]
	lo.mu.Lock()
	hi.mu.Lock()
	return func() { hi.mu.Unlock(); lo.mu.Unlock() }
}

// getVictim returns an unpinned buffer with usage count zero and its header
// locked: from the strategy's ring if it has a reusable one, else by clock
// sweep.
func (bp *Pool) getVictim(strategy *Strategy) (id int32, st uint64, fromRing bool, err error) {
	if strategy != nil {
		if id, st, ok := strategy.next(); ok {
			bp.stats.ringReuses.Add(1)
			return id, st, true, nil
		}
	}
	id, st, err = bp.clockSweep()
	if err != nil {
		return 0, 0, false, err
	}
	if strategy != nil {
		strategy.add(id)
	}
	return id, st, false, nil
}

// clockSweep advances the clock hand, decrementing usage counts, until it
// finds an unpinned buffer whose count is zero, and returns it with its
// header locked. After a full circle over nothing but pinned buffers it gives
// up with ErrNoUnpinnedBuffers.
func (bp *Pool) clockSweep() (int32, uint64, error) {
	n := uint64(bp.nbuf)
	tries := bp.nbuf
	for {
		id := int32((bp.hand.Add(1) - 1) % n)
		d := &bp.descs[id]
		st := d.state.Load()
		switch {
		case refcount(st) > 0 || st&flagLocked != 0:
			tries--
			if tries <= 0 {
				return 0, 0, ErrNoUnpinnedBuffers
			}
		case usage(st) > 0:
			d.state.CompareAndSwap(st, st-usageOne) // losing a race is fine
			tries = bp.nbuf
		default:
			st = d.lockHdr()
			if refcount(st) == 0 && usage(st) == 0 {
				return id, st, nil
			}
			d.unlockHdr(st)
		}
	}
}

// startIO claims the right to do I/O on d: a read if forInput, else a write.
// It returns false if the I/O is no longer needed (the page became valid, or
// clean). On true the caller holds d.io and must call terminateIO.
func (bp *Pool) startIO(d *bufferDesc, forInput bool) bool {
	d.io.Lock() // waits for an I/O in progress
	st := d.lockHdr()
	if (forInput && st&flagValid != 0) || (!forInput && st&flagDirty == 0) {
		d.unlockHdr(st)
		d.io.Unlock()
		return false
	}
	st |= flagIOInProgress
	if !forInput {
		st &^= flagJustDirtied
	}
	d.unlockHdr(st)
	return true
}

// terminateIO ends the I/O begun by startIO. cleaned says a write succeeded:
// the buffer is clean unless it was dirtied again during the write.
func (bp *Pool) terminateIO(d *bufferDesc, cleaned bool, set uint64, failed bool) {
	st := d.lockHdr()
	st &^= flagIOInProgress | flagIOError
	if cleaned && st&flagJustDirtied == 0 {
		st &^= flagDirty | flagCheckpointNeeded
	}
	st |= set
	if failed {
		st |= flagIOError
	}
	d.unlockHdr(st)
	d.io.Unlock()
}

// flushBuffer writes buffer id if it is dirty and reports whether it wrote.
// The caller holds a pin and the content latch in share mode, so the page
// cannot change under the copy. The WAL is flushed up to the page's LSN
// first (rule 6). counter counts the write by its source.
//
// A failed write leaves the buffer dirty (and flagIOError set), to be
// written again by whoever next needs it clean; it is not fatal. After the
// Halt has stopped, flushBuffer writes nothing and returns the Halt's error,
// leaving the buffer as it is.
func (bp *Pool) flushBuffer(id int32, counter *atomic.Uint64) (bool, error) {
	d := &bp.descs[id]
	if err := bp.cfg.Halt.Err(); err != nil {
		return false, err
	}
	if !bp.startIO(d, false) {
		return false, nil
	}
	page := bp.page(id)
	tag := d.tag
	if lsn := page.LSN(); bp.cfg.FlushWAL != nil && lsn != base.InvalidLSN {
		if err := bp.cfg.FlushWAL(lsn); err != nil {
			bp.terminateIO(d, false, 0, true)
			return false, fmt.Errorf("pagecache: flush WAL to %s before writing block %d of relation %d: %w", lsn, tag.Blk, tag.Rel, err)
		}
	}
	buf := <-bp.scratch
	copy(buf, page)
	if bp.cfg.DataChecksums == base.On && !Page(buf).IsNew() {
		Page(buf).SetChecksum(tag.Blk)
	}
	err := bp.smgr.Write(tag.Rel, tag.Blk, buf)
	bp.scratch <- buf
	bp.terminateIO(d, err == nil, 0, err != nil)
	if err != nil {
		return false, err
	}
	counter.Add(1)
	return true, nil
}

// DropRelation forgets every buffer of rel without writing it, as before the
// relation's file is removed or truncated to zero. No buffer of rel may be
// pinned.
func (bp *Pool) DropRelation(rel base.RelFileNode) error {
	for id := range bp.descs {
		d := &bp.descs[id]
		st := d.lockHdr()
		tag := d.tag
		d.unlockHdr(st)
		if st&flagTagValid == 0 || tag.Rel != rel {
			continue
		}
		part := &bp.parts[partitionOf(tag.key())]
		part.mu.Lock()
		st = d.lockHdr()
		if st&flagTagValid == 0 || d.tag != tag {
			d.unlockHdr(st)
			part.mu.Unlock()
			continue
		}
		if refcount(st) != 0 {
			d.unlockHdr(st)
			part.mu.Unlock()
			return fmt.Errorf("pagecache: drop relation %d: block %d is pinned", rel, tag.Blk)
		}
		part.deleteLocked(tag.key())
		st &^= flagTagValid | flagValid | flagDirty | flagJustDirtied | flagCheckpointNeeded | flagIOError | usageMask
		d.unlockHdr(st)
		part.mu.Unlock()
	}
	return nil
}

// PinnedBuffers returns how many buffers are pinned now; tests use it to
// prove that no pin leaks.
func (bp *Pool) PinnedBuffers() int {
	n := 0
	for id := range bp.descs {
		if refcount(bp.descs[id].state.Load()) > 0 {
			n++
		}
	}
	return n
}

// Close stops the background writer and releases the pool's memory and
// files. It does not write dirty pages: call Checkpoint first for that. It
// refuses (and leaks the slab rather than risk a fault) if a buffer is still
// pinned.
func (bp *Pool) Close() error {
	if !bp.closed.CompareAndSwap(false, true) {
		return ErrClosed
	}
	close(bp.stop)
	bp.wg.Wait()
	if n := bp.PinnedBuffers(); n > 0 {
		return fmt.Errorf("pagecache: close with %d buffers still pinned", n)
	}
	err := bp.smgr.Close()
	if ferr := freeSlab(bp.slab); err == nil {
		err = ferr
	}
	bp.slab = nil
	return err
}
