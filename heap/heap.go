package heap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"strconv"
	"sync/atomic"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/vfs"
	"github.com/heapkv/heapkv/pagecache"
	"github.com/heapkv/heapkv/txn"
	"github.com/heapkv/heapkv/xlog"
)

// maxChainHops bounds a walk down a version chain; a longer one can only
// be a loop in damaged links.
const maxChainHops = 1 << 24

// Config says which relation a Heap is and what it works with.
type Config struct {
	// Pool is the shared buffer pool. Required.
	Pool *pagecache.Pool
	// WAL logs every page change. Nil: the relation is unlogged (a
	// temporary keyspace); nothing is logged and no hint image is taken.
	WAL *xlog.Log
	// FS and Dir locate the free space map's file, Dir/base/<Rel>_fsm.
	// FS nil: the map is kept in memory only.
	FS  vfs.FS
	Dir string
	// Rel is the relation. Its file is created if it does not exist.
	Rel base.RelFileNode
	// Status answers visibility's questions about transactions (the CLOG).
	// Required.
	Status txn.StatusSource
	// Logger receives the map's save failures. Default: discard.
	Logger *slog.Logger
}

// Heap is one heap relation: row versions on slotted pages, their TOAST
// chunks, and the free space map. A Heap may be used by many goroutines at
// once. See doc.go for its rules.
type Heap struct {
	pool    *pagecache.Pool
	wal     *xlog.Log
	rel     base.RelFileNode
	status  txn.StatusSource
	fs      vfs.FS
	fsmPath string
	fsm     *fsm
	logger  *slog.Logger
	stats   counters
	closed  atomic.Bool
}

type counters struct {
	inserts, toasted, compressed, toastChunks atomic.Uint64
	extends, fsmVisits, fsmMisses             atomic.Uint64
	hints, hintImages, hintsInMemory          atomic.Uint64
	pruned, stubs, chunksFreed, pruneBusy     atomic.Uint64
	fsmSaves, fsmSaveErrors                   atomic.Uint64
}

// Stats counts what a Heap did since Open.
type Stats struct {
	Inserts          uint64 // row versions inserted
	ToastedValues    uint64 // values stored out of line
	CompressedValues uint64 // values stored compressed, inline or out of line
	ToastChunks      uint64 // TOAST chunks written
	Extends          uint64 // pages added to the relation
	FSMVisits        uint64 // pages the free space map offered to an insert
	FSMMisses        uint64 // of those, pages that turned out not to have room
	HintsSet         uint64 // hint-bit changes made under a share lock
	HintImages       uint64 // full-page images logged before a first hint
	HintsInMemory    uint64 // hints set on a clean page without dirtying it
	PrunedTuples     uint64 // tuples of aborted inserts freed (dead or stub)
	PrunedStubs      uint64 // of those, kept as stubs for their chain link
	ChunksFreed      uint64 // TOAST chunks of aborted inserts freed
	PruneBusy        uint64 // prunes skipped: no cleanup lock
	FSMSaves         uint64 // free space map files written
	FSMSaveErrors    uint64 // and failures to write one
	FSMPages         int    // pages the free space map knows
	FSMIndexed       int    // of those, in its index (some free space)
	FSMBytes         int    // memory of the free space map, estimated
}

// Open opens heap relation cfg.Rel, creating its file if needed, and loads
// its free space map. It reads no page. Run it after WAL recovery: it makes
// the relation's file as long as the pages recovery left in the pool, and
// registers a checkpoint hook (if cfg.WAL and cfg.FS are set) that saves
// the free space map.
func Open(cfg Config) (*Heap, error) {
	if cfg.Pool == nil || cfg.Status == nil {
		return nil, fmt.Errorf("heap: Open needs a Pool and a Status source: %w", ErrBadConfig)
	}
	h := &Heap{
		pool:   cfg.Pool,
		wal:    cfg.WAL,
		rel:    cfg.Rel,
		status: cfg.Status,
		fs:     cfg.FS,
		fsm:    newFSM(),
		logger: cfg.Logger,
	}
	if h.logger == nil {
		h.logger = slog.New(slog.DiscardHandler)
	}
	smgr := h.pool.Storage()
	if !smgr.Exists(h.rel) {
		if err := smgr.Create(h.rel); err != nil {
			return nil, fmt.Errorf("heap: create relation %d: %w", h.rel, err)
		}
	}
	// The file covers every page, even ones only redo has rebuilt:
	// pagecache.LockForRedo grows it first.
	nblocks, err := smgr.NBlocks(h.rel)
	if err != nil {
		return nil, err
	}
	var img []byte
	if h.fs != nil {
		h.fsmPath = path.Join(cfg.Dir, "base", strconv.FormatUint(uint64(h.rel), 10)+"_fsm")
		img, err = vfs.ReadFile(h.fs, h.fsmPath)
		if err != nil && !vfs.IsNotExist(err) {
			return nil, fmt.Errorf("heap: read free space map of relation %d: %w", h.rel, err)
		}
	}
	if !h.fsm.load(img, nblocks) && img != nil {
		h.logger.Warn("heap: free space map file is damaged; starting from unknown entries", "rel", h.rel, "file", h.fsmPath)
	}
	if h.wal != nil && h.fs != nil {
		h.wal.RegisterCheckpointHook(h.hookName(), func(base.LSN, *xlog.CheckpointData) error {
			h.saveFSMQuietly()
			return nil
		})
	}
	return h, nil
}

// SaveFSM writes the free space map to its file. The checkpoint hook calls
// it; so may the caller, at checkpoint or shutdown.
func (h *Heap) SaveFSM() error {
	if h.fs == nil || h.closed.Load() {
		return nil
	}
	if err := saveFSM(h.fs, h.fsmPath, h.fsm); err != nil {
		h.stats.fsmSaveErrors.Add(1)
		return fmt.Errorf("heap: save free space map of relation %d: %w", h.rel, err)
	}
	h.stats.fsmSaves.Add(1)
	return nil
}

// saveFSMQuietly saves the map and logs a failure: the map is a hint, and
// failing a checkpoint over it would hold back WAL recycling.
func (h *Heap) saveFSMQuietly() {
	if err := h.SaveFSM(); err != nil {
		h.logger.Warn("heap: could not save free space map", "rel", h.rel, "err", err)
	}
}

// Rel returns the relation.
func (h *Heap) Rel() base.RelFileNode { return h.rel }

func (h *Heap) hookName() string { return "heap.fsm." + strconv.FormatUint(uint64(h.rel), 10) }

// Close detaches the heap from the WAL's checkpoints (its free space map is
// no longer saved), as before its relation is dropped. The Heap must not be
// used afterwards.
func (h *Heap) Close() {
	if h.closed.CompareAndSwap(false, true) && h.wal != nil {
		h.wal.UnregisterCheckpointHook(h.hookName())
	}
}

// Stats returns the counters.
func (h *Heap) Stats() Stats {
	c := &h.stats
	pages, indexed, bytes := h.fsm.stats()
	return Stats{
		Inserts:          c.inserts.Load(),
		ToastedValues:    c.toasted.Load(),
		CompressedValues: c.compressed.Load(),
		ToastChunks:      c.toastChunks.Load(),
		Extends:          c.extends.Load(),
		FSMVisits:        c.fsmVisits.Load(),
		FSMMisses:        c.fsmMisses.Load(),
		HintsSet:         c.hints.Load(),
		HintImages:       c.hintImages.Load(),
		HintsInMemory:    c.hintsInMemory.Load(),
		PrunedTuples:     c.pruned.Load(),
		PrunedStubs:      c.stubs.Load(),
		ChunksFreed:      c.chunksFreed.Load(),
		PruneBusy:        c.pruneBusy.Load(),
		FSMSaves:         c.fsmSaves.Load(),
		FSMSaveErrors:    c.fsmSaveErrors.Load(),
		FSMPages:         pages,
		FSMIndexed:       indexed,
		FSMBytes:         bytes,
	}
}

func checkKey(key []byte) error {
	switch {
	case len(key) == 0:
		return ErrEmptyKey
	case len(key) > MaxKeySize:
		return fmt.Errorf("heap: key of %d bytes: %w", len(key), ErrKeyTooLarge)
	}
	return nil
}

// Insert stores a new version of key, inserted by xid, whose previous
// (older) version is prev (base.InvalidTID for the first version of a
// key), and returns its TID. A value whose tuple would exceed about a
// quarter page is compressed and, if still too large, stored out of line
// in TOAST chunks, which are written before the row version. Bad input
// (ErrEmptyKey, ErrKeyTooLarge, ErrValueTooLarge) changes nothing.
func (h *Heap) Insert(xid base.XID, key, value []byte, prev base.TID) (base.TID, error) {
	if err := checkKey(key); err != nil {
		return base.InvalidTID, err
	}
	if len(value) > MaxValueSize {
		return base.InvalidTID, fmt.Errorf("heap: value of %d bytes: %w", len(value), ErrValueTooLarge)
	}
	field, mask := value, uint32(0)
	var ptrBuf [toastPointerSize]byte
	if align8(tupleHeaderSize+len(key)+len(value)) > inlineMax {
		comp := compressValue(value)
		if comp != nil && align8(tupleHeaderSize+len(key)+len(comp)) <= inlineMax {
			field, mask = comp, maskCompressed
		} else {
			ext := value
			if comp != nil && len(comp) <= len(value)-len(value)/8 {
				ext, mask = comp, maskCompressed
			}
			ptr, err := h.writeToast(xid, ext, len(value))
			if err != nil {
				return base.InvalidTID, err
			}
			field = ptr.encode(ptrBuf[:0])
			mask |= maskExternal
			h.stats.toasted.Add(1)
		}
		if mask&maskCompressed != 0 {
			h.stats.compressed.Add(1)
		}
	}
	buf := pagePool.Get().(*[pagecache.BlockSize]byte)
	defer pagePool.Put(buf)
	op := appendTuple(buf[:4], xid, mask, prev, key, field)
	tid, err := h.place(xid, op, false, nil)
	if err == nil {
		h.stats.inserts.Add(1)
	}
	return tid, err
}

// place adds the tuple op[4:] to a page of the right kind with room for
// it, found through the free space map or by extending the relation, logs
// it (op[:4] is filled in with the insert record's header) and returns its
// TID.
func (h *Heap) place(xid base.XID, op []byte, toast bool, strategy *pagecache.Strategy) (base.TID, error) {
	tup := op[4:]
	need := align8(len(tup))
	for {
		var b pagecache.Buffer
		fresh := false
		if blk, ok := h.fsm.find(toast, need); ok {
			h.stats.fsmVisits.Add(1)
			var err error
			b, err = h.pool.ReadBuffer(h.rel, blk, pagecache.ReadNormal, strategy)
			if errors.Is(err, pagecache.ErrBlockOutOfRange) {
				h.fsm.forget(blk)
				continue
			}
			if err != nil {
				return base.InvalidTID, fmt.Errorf("heap: relation %d: %w", h.rel, err)
			}
			b.LockExclusive()
			p := b.Page()
			if p.IsNew() {
				fresh = true
			} else {
				if err := checkHeader(p); err != nil {
					b.UnlockExclusive()
					b.Release()
					return base.InvalidTID, fmt.Errorf("heap: relation %d block %d: %w", h.rel, blk, err)
				}
				if isToastPage(p) != toast || freeSpace(p) < need {
					// A stale entry: correct it (under the page lock, so
					// that map updates of a page come in the order of its
					// changes) and ask again.
					h.stats.fsmMisses.Add(1)
					h.fsm.set(blk, isToastPage(p), freeSpace(p))
					b.UnlockExclusive()
					b.Release()
					continue
				}
			}
		} else {
			var err error
			b, err = h.pool.Extend(h.rel, strategy)
			if err != nil {
				return base.InvalidTID, fmt.Errorf("heap: extend relation %d: %w", h.rel, err)
			}
			h.stats.extends.Add(1)
			fresh = true
		}

		p := b.Page()
		c := h.begin(b)
		var flags byte
		if toast {
			flags |= opToastPage
		}
		if fresh {
			initPage(p, toast)
			flags |= opInitPage
		}
		blk := b.BlockNum()
		offnum := chooseOffset(p)
		if err := addItem(p, offnum, tup); err != nil {
			c.abort()
			b.UnlockExclusive()
			b.Release()
			return base.InvalidTID, fmt.Errorf("heap: relation %d block %d: %w", h.rel, blk, err)
		}
		binary.LittleEndian.PutUint16(op, uint16(offnum))
		op[2], op[3] = flags, 0
		err := c.commit(infoInsert, xid, op)
		if err == nil {
			h.fsm.set(blk, toast, freeSpace(p))
		}
		b.UnlockExclusive()
		b.Release()
		if err != nil {
			return base.InvalidTID, err
		}
		return base.TID{Block: blk, Offset: uint16(offnum)}, nil
	}
}

// walker holds the page a chain walk is on: pinned and share-locked, one
// at a time. Hint bits that need a full-page image first wait in pending
// until the walk leaves the page.
type walker struct {
	h        *Heap
	b        pagecache.Buffer
	blk      base.BlockNum // the block of b, or of the last page visited
	pending  [4]hintWork
	npending int
}

type hintWork struct {
	off, offnum int // the tuple's page offset and line pointer
	xmin, xmax  base.XID
	bits        uint32
}

// page moves the walk to block blk and returns it share-locked. ok is false
// if the block does not exist.
func (w *walker) page(blk base.BlockNum) (p pagecache.Page, ok bool, err error) {
	if w.b.Valid() {
		if w.b.BlockNum() == blk {
			return w.b.Page(), true, nil
		}
		w.leave()
	}
	b, err := w.h.pool.ReadBuffer(w.h.rel, blk, pagecache.ReadNormal, nil)
	if err != nil {
		if errors.Is(err, pagecache.ErrBlockOutOfRange) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("heap: relation %d: %w", w.h.rel, err)
	}
	b.LockShare()
	w.b, w.blk = b, blk
	return b.Page(), true, nil
}

// leave unlocks and releases the current page, logging an image and
// setting the hints that waited for one.
func (w *walker) leave() {
	if !w.b.Valid() {
		return
	}
	w.b.UnlockShare()
	if w.npending > 0 {
		w.h.hintWithImage(w.b, w.pending[:w.npending])
		w.npending = 0
	}
	w.b.Release()
	w.b = pagecache.Buffer{}
}

// find returns the row version of key at line pointer offnum of the
// current page. ok is false if there is none (doc.go, "Safety of TIDs").
func (w *walker) find(p pagecache.Page, offnum uint16, key []byte) (off int, hdr tupleHdr, ok bool, err error) {
	if p.IsNew() {
		return 0, hdr, false, nil
	}
	if err := checkHeader(p); err != nil {
		return 0, hdr, false, w.corrupt(offnum, err)
	}
	if isToastPage(p) {
		return 0, hdr, false, nil
	}
	off, n, ok, err := tupleAt(p, int(offnum))
	if err != nil || !ok {
		return 0, hdr, false, w.corrupt(offnum, err)
	}
	hdr, err = readTupleHdr(p, off, n)
	if err != nil {
		return 0, hdr, false, w.corrupt(offnum, err)
	}
	if hdr.isChunk() || !bytes.Equal(p[off+tupleHeaderSize:off+tupleHeaderSize+hdr.klen], key) {
		return 0, hdr, false, nil
	}
	return off, hdr, true, nil
}

func (w *walker) corrupt(offnum uint16, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("heap: relation %d block %d offset %d: %w", w.h.rel, w.blk, offnum, err)
}

// hint sets hint bits on the tuple at off of the current (share-locked)
// page, following the full-page-image rule of doc.go ("Hint bits").
func (w *walker) hint(p pagecache.Page, off int, offnum uint16, hdr *tupleHdr, hints txn.Infomask) {
	bits := uint32(hints) & maskTxn
	if bits == 0 || loadMask(p, off)&bits == bits {
		return
	}
	h := w.h
	if h.wal == nil || p.LSN() > h.wal.RedoLSN() {
		orMask(p, off, bits)
		w.b.MarkDirtyHint()
		h.stats.hints.Add(1)
		// A checkpoint may have moved the redo pointer past the page
		// since the test above; then the page needs its image after all.
		if h.wal == nil || p.LSN() > h.wal.RedoLSN() {
			return
		}
	} else if !w.b.IsDirty() {
		// A clean page not logged since the redo point keeps the hint in
		// memory only (doc.go, "Hint bits"): no image, no write.
		orMask(p, off, bits)
		h.stats.hintsInMemory.Add(1)
		return
	}
	if w.npending < len(w.pending) {
		w.pending[w.npending] = hintWork{off: off, offnum: int(offnum), xmin: hdr.xmin, xmax: hdr.xmax, bits: bits}
		w.npending++
	}
}

// hintWithImage sets hint bits that need a full-page image first. The
// caller holds a pin but no lock: it takes the exclusive lock, since the
// image must be logged and the page stamped with its LSN without any other
// goroutine reading the LSN halfway (the pool reads it under a share lock
// to decide how far to flush the WAL before writing the page).
func (h *Heap) hintWithImage(b pagecache.Buffer, works []hintWork) {
	b.LockExclusive()
	defer b.UnlockExclusive()
	p := b.Page()
	var todo [len(walker{}.pending)]hintWork
	n := 0
	for _, wk := range works {
		off, ln, ok, err := tupleAt(p, wk.offnum)
		if err != nil || !ok || off != wk.off {
			continue
		}
		hdr, err := decodeTupleHdr(p[off : off+ln])
		if err != nil || hdr.xmin != wk.xmin {
			continue
		}
		if hdr.xmax != wk.xmax {
			wk.bits &^= uint32(xmaxHintBits)
		}
		if wk.bits != 0 {
			todo[n] = wk
			n++
		}
	}
	if n == 0 {
		return
	}
	if p.LSN() > h.wal.RedoLSN() {
		// Somebody logged the page since; no image needed now.
		for _, wk := range todo[:n] {
			orMask(p, wk.off, wk.bits)
		}
		b.MarkDirtyHint()
		h.stats.hints.Add(1)
		return
	}
	img := pagePool.Get().(*[pagecache.BlockSize]byte)
	defer pagePool.Put(img)
	copy(img[:], p)
	for _, wk := range todo[:n] {
		m := binary.LittleEndian.Uint32(img[wk.off+offMask:])
		binary.LittleEndian.PutUint32(img[wk.off+offMask:], m|wk.bits)
	}
	b.MarkDirty()
	rb := builderPool.Get().(*xlog.RecordBuilder)
	rb.Reset(RmgrHeap, infoHintImage, 0)
	rb.Image(h.rel, b.BlockNum(), img[:])
	_, end, err := h.wal.Insert(rb)
	rb.Reset(0, 0, 0)
	builderPool.Put(rb)
	if err != nil {
		// The hints stay unset; they are only hints.
		h.logger.Warn("heap: could not log a page image for hint bits", "rel", h.rel, "block", b.BlockNum(), "err", err)
		return
	}
	for _, wk := range todo[:n] {
		orMask(p, wk.off, wk.bits)
	}
	p.SetLSN(end)
	h.stats.hints.Add(1)
	h.stats.hintImages.Add(1)
}

// Get walks the version chain of key from its newest version, newest to
// oldest through the prev links, and returns the value of the version snap
// sees, appended to dst, with that version's TID. ok is false if snap sees
// no version: none was committed for it, or the newest it sees is deleted,
// or the chain ends at a TID that does not hold key (freed and maybe
// reused; see doc.go, "Safety of TIDs"). Hint bits learnt on the way are
// set.
func (h *Heap) Get(newest base.TID, key []byte, snap *txn.Snapshot, dst []byte) (value []byte, tid base.TID, ok bool, err error) {
	w := walker{h: h}
	defer w.leave()
	tid = newest
	for hops := 0; tid.Valid(); hops++ {
		if hops > maxChainHops {
			return dst, base.InvalidTID, false, base.CorruptionErrorf("heap: relation %d: version chain from %v is longer than %d", h.rel, newest, maxChainHops)
		}
		p, ok, err := w.page(tid.Block)
		if err != nil || !ok {
			return dst, base.InvalidTID, false, err
		}
		off, hdr, ok, err := w.find(p, tid.Offset, key)
		if err != nil || !ok {
			return dst, base.InvalidTID, false, err
		}
		inserted, deleted, hints, err := txn.Judge(hdr.version(), snap, h.status)
		if err != nil {
			return dst, base.InvalidTID, false, err
		}
		if hints != 0 {
			w.hint(p, off, tid.Offset, &hdr, hints)
		}
		if !inserted {
			tid = hdr.prev
			continue
		}
		if deleted {
			return dst, base.InvalidTID, false, nil
		}
		value, err := w.value(p, off, tid.Offset, &hdr, dst)
		if err != nil {
			return dst, base.InvalidTID, false, err
		}
		return value, tid, true, nil
	}
	return dst, base.InvalidTID, false, nil
}

// value appends the value of the tuple at off (line pointer offnum) of the
// current page to dst. For a TOAST pointer it leaves the page before
// reading the chunks.
func (w *walker) value(p pagecache.Page, off int, offnum uint16, hdr *tupleHdr, dst []byte) ([]byte, error) {
	start := off + tupleHeaderSize + hdr.klen
	field := p[start : start+hdr.vlen]
	switch {
	case hdr.mask&maskExternal != 0:
		ptr, err := decodeToastPointer(field)
		if err != nil {
			return dst, w.corrupt(offnum, err)
		}
		w.leave()
		return w.h.detoast(ptr, hdr.xmin, hdr.mask&maskCompressed != 0, dst)
	case hdr.mask&maskCompressed != 0:
		out, err := decompress(dst, field, -1)
		return out, w.corrupt(offnum, err)
	}
	return append(dst, field...), nil
}

// Newest returns the newest version of key whose insert did not abort,
// starting from newest and following prev links, with its TID: what a
// writer hands to txn.CheckWrite, and the prev link of the version it
// writes. ok is false if there is no such version. It reads the commit log
// for versions without hint bits and marks aborted ones.
func (h *Heap) Newest(newest base.TID, key []byte) (v txn.Version, tid base.TID, ok bool, err error) {
	w := walker{h: h}
	defer w.leave()
	tid = newest
	for hops := 0; tid.Valid(); hops++ {
		if hops > maxChainHops {
			return v, base.InvalidTID, false, base.CorruptionErrorf("heap: relation %d: version chain from %v is longer than %d", h.rel, newest, maxChainHops)
		}
		p, ok, err := w.page(tid.Block)
		if err != nil || !ok {
			return v, base.InvalidTID, false, err
		}
		off, hdr, ok, err := w.find(p, tid.Offset, key)
		if err != nil || !ok {
			return v, base.InvalidTID, false, err
		}
		v = hdr.version()
		aborted := v.Mask&txn.XMinInvalid != 0
		if !aborted && v.Mask&txn.XMinCommitted == 0 && v.XMin != txn.FrozenXID {
			st, err := h.status.Status(v.XMin)
			if err != nil {
				return v, base.InvalidTID, false, err
			}
			if st == txn.Aborted {
				aborted = true
				w.hint(p, off, tid.Offset, &hdr, txn.XMinInvalid)
			}
		}
		if !aborted {
			return v, tid, true, nil
		}
		tid = hdr.prev
	}
	return txn.Version{}, base.InvalidTID, false, nil
}

// SetXmax marks the version of key at tid deleted by xid, or, with
// lockOnly, locked by it (a row lock: the version stays current). expect
// is the Version the caller judged (txn.CheckWrite on the Version from
// Newest): if the tuple's xmax or its lock-only bit is no longer that, another
// writer got there first and SetXmax returns ErrXmaxChanged without
// changing anything. The check and the change happen under the page's
// exclusive lock, so two writers cannot both succeed.
func (h *Heap) SetXmax(tid base.TID, key []byte, expect txn.Version, xid base.XID, lockOnly bool) error {
	b, err := h.pool.ReadBuffer(h.rel, tid.Block, pagecache.ReadNormal, nil)
	if errors.Is(err, pagecache.ErrBlockOutOfRange) {
		return fmt.Errorf("heap: relation %d: set xmax of %v: %w", h.rel, tid, ErrNoTuple)
	}
	if err != nil {
		return fmt.Errorf("heap: relation %d: %w", h.rel, err)
	}
	defer b.Release()
	b.LockExclusive()
	defer b.UnlockExclusive()
	w := walker{h: h, b: b, blk: tid.Block} // for find; never left: the lock is exclusive
	p := b.Page()
	off, hdr, ok, err := w.find(p, tid.Offset, key)
	if err != nil {
		return err
	}
	if !ok || hdr.mask&maskStub != 0 {
		return fmt.Errorf("heap: relation %d: set xmax of %v: %w", h.rel, tid, ErrNoTuple)
	}
	// The lock-only bit is part of the expectation: a row lock that its
	// holder turned into an update keeps the same xmax, and a writer that
	// judged the lock (gone once its holder committed) must not take the
	// row from under the update.
	lockedOnly := hdr.mask&uint32(xmaxLockOnly) != 0
	if hdr.xmax != expect.XMax || lockedOnly != (expect.Mask&txn.XMaxLockOnly != 0) {
		return fmt.Errorf("heap: relation %d: set xmax of %v to %d: found %d (lock only %v), expected %d: %w",
			h.rel, tid, xid, hdr.xmax, lockedOnly, expect.XMax, ErrXmaxChanged)
	}
	c := h.begin(b)
	setXmaxLocked(p, off, xid, lockOnly)
	return c.commit(infoSetXmax, xid, encodeSetXmax(int(tid.Offset), xid, lockOnly))
}

// Tuple is a row version as Fetch returns it. Key and Value are the
// caller's.
type Tuple struct {
	TID        base.TID
	XMin, XMax base.XID
	Mask       txn.Infomask // hint bits and lock-only, as txn defines them
	Prev       base.TID     // the previous (older) version, or invalid
	Key        []byte
	Value      []byte // reassembled and decompressed; nil for a stub
	External   bool   // the value is stored in TOAST chunks
	Compressed bool   // the value is stored compressed
	Stub       bool   // pruning removed the value of this aborted version
}

// Fetch returns the row version at tid, whatever its visibility. A TID
// without a row version gives ErrNoTuple.
func (h *Heap) Fetch(tid base.TID) (Tuple, error) {
	w := walker{h: h}
	defer w.leave()
	noTuple := func() error { return fmt.Errorf("heap: relation %d: fetch %v: %w", h.rel, tid, ErrNoTuple) }
	if !tid.Valid() {
		return Tuple{}, noTuple()
	}
	p, ok, err := w.page(tid.Block)
	if err != nil {
		return Tuple{}, err
	}
	if !ok || p.IsNew() {
		return Tuple{}, noTuple()
	}
	if err := checkHeader(p); err != nil {
		return Tuple{}, w.corrupt(tid.Offset, err)
	}
	off, n, ok, err := tupleAt(p, int(tid.Offset))
	if err != nil {
		return Tuple{}, w.corrupt(tid.Offset, err)
	}
	if !ok || isToastPage(p) {
		return Tuple{}, noTuple()
	}
	hdr, err := readTupleHdr(p, off, n)
	if err != nil {
		return Tuple{}, w.corrupt(tid.Offset, err)
	}
	if hdr.isChunk() {
		return Tuple{}, noTuple()
	}
	t := Tuple{
		TID:        tid,
		XMin:       hdr.xmin,
		XMax:       hdr.xmax,
		Mask:       txn.Infomask(hdr.mask & maskTxn),
		Prev:       hdr.prev,
		Key:        bytes.Clone(p[off+tupleHeaderSize : off+tupleHeaderSize+hdr.klen]),
		External:   hdr.mask&maskExternal != 0,
		Compressed: hdr.mask&maskCompressed != 0,
		Stub:       hdr.mask&maskStub != 0,
	}
	if !t.Stub {
		t.Value, err = w.value(p, off, tid.Offset, &hdr, []byte{})
		if err != nil {
			return Tuple{}, err
		}
	}
	return t, nil
}

// NBlocks returns the relation's length in blocks.
func (h *Heap) NBlocks() (base.BlockNum, error) {
	return h.pool.Storage().NBlocks(h.rel)
}
