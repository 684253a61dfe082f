package heap

import (
	"bytes"
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

// XmaxMode says what SetXmax records in a version's xmax.
type XmaxMode int8

const (
	// XmaxDelete marks the version deleted, or replaced by an update.
	XmaxDelete XmaxMode = iota
	// XmaxLockOnly marks the version locked (a row lock): it stays
	// current, and the xmax only makes writers wait (XMaxLockOnly).
	XmaxLockOnly
)

func (m XmaxMode) String() string {
	switch m {
	case XmaxDelete:
		return "delete"
	case XmaxLockOnly:
		return "lock only"
	}
	return "XmaxMode(" + strconv.Itoa(int(m)) + ")"
}

// SetXmax marks the version of key at tid deleted by xid, or, with
// XmaxLockOnly, locked by it (a row lock: the version stays current). expect
// is the Version the caller judged (txn.CheckWrite on the Version from
// Newest): if the tuple's xmax or its lock-only bit is no longer that, another
// writer got there first and SetXmax returns ErrXmaxChanged without
// changing anything. The check and the change happen under the page's
// exclusive lock, so two writers cannot both succeed.
func (h *Heap) SetXmax(tid base.TID, key []byte, expect txn.Version, xid base.XID, mode XmaxMode) error {
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
	lockOnly := mode == XmaxLockOnly
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
