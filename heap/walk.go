package heap

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/pagecache"
	"github.com/heapkv/heapkv/txn"
)

// maxChainHops bounds a walk down a version chain; a longer one can only
// be a loop in damaged links.
const maxChainHops = 1 << 24

// walker holds the page a chain walk is on: pinned and share-locked, one
// at a time. Hint bits that need a full-page image first wait in pending
// until the walk leaves the page.
type walker struct {
	h        *Heap
	strategy *pagecache.Strategy // the ring pages are read through; nil for none
	b        pagecache.Buffer
	blk      base.BlockNum // the block of b, or of the last page visited
	pending  [4]hintWork
	npending int
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
	b, err := w.h.pool.ReadBuffer(w.h.rel, blk, pagecache.ReadNormal, w.strategy)
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

// Found is the version of a key a reader sees, as Get returns it. It is
// kept to five words so that Get's results travel in registers.
type Found struct {
	// TID is where the version lies; base.InvalidTID when Get finds none.
	TID base.TID
	// Value is the version's value, appended to Get's dst. When Get finds
	// nothing it is dst, unchanged, so the caller keeps its buffer.
	Value []byte
}

// Current is the newest version of a key whose insert did not abort, as
// Newest returns it to a writer.
type Current struct {
	// TID is where the version lies (the prev link of the writer's new
	// version); base.InvalidTID when Newest finds none.
	TID base.TID
	// Version is what txn.CheckWrite and SetXmax's expectation need of it,
	// as read from the tuple.
	Version txn.Version
}

// Get walks the version chain of key from its newest version, newest to
// oldest through the prev links, and returns the version snap sees, with
// its value appended to dst. ok is false if snap sees no version: none was
// committed for it, or the newest it sees is deleted, or the chain ends at
// a TID that does not hold key (freed and maybe reused; see doc.go,
// "Safety of TIDs"). Hint bits learnt on the way are set. Found is
// returned by value: Get allocates nothing beyond growing dst.
func (h *Heap) Get(newest base.TID, key []byte, snap *txn.Snapshot, dst []byte) (f Found, ok bool, err error) {
	return h.GetVia(nil, newest, key, snap, dst)
}

// GetVia is Get reading the chain's pages through strategy: a bitmap heap
// scan's bulk-read ring, so that a large scan does not flush the pool.
func (h *Heap) GetVia(strategy *pagecache.Strategy, newest base.TID, key []byte, snap *txn.Snapshot, dst []byte) (f Found, ok bool, err error) {
	w := walker{h: h, strategy: strategy}
	defer w.leave()
	f.TID, f.Value = base.InvalidTID, dst
	tid := newest
	for hops := 0; tid.Valid(); hops++ {
		if hops > maxChainHops {
			return f, false, base.CorruptionErrorf("heap: relation %d: version chain from %v is longer than %d", h.rel, newest, maxChainHops)
		}
		p, ok, err := w.page(tid.Block)
		if err != nil || !ok {
			return f, false, err
		}
		off, hdr, ok, err := w.find(p, tid.Offset, key)
		if err != nil || !ok {
			return f, false, err
		}
		j, err := txn.Judge(hdr.version(), snap, h.status)
		if err != nil {
			return f, false, err
		}
		if j.Hints != 0 {
			w.hint(p, off, tid.Offset, &hdr, j.Hints)
		}
		if !j.Inserted {
			tid = hdr.prev
			continue
		}
		if j.Deleted {
			return f, false, nil
		}
		value, err := w.value(p, off, tid.Offset, &hdr, dst)
		if err != nil {
			return f, false, err
		}
		return Found{TID: tid, Value: value}, true, nil
	}
	return f, false, nil
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
// starting from newest and following prev links: its Version is what a
// writer hands to txn.CheckWrite, its TID the prev link of the version it
// writes. ok is false if there is no such version.
// It reads the commit log for versions without hint bits and marks aborted
// ones.
func (h *Heap) Newest(newest base.TID, key []byte) (c Current, ok bool, err error) {
	w := walker{h: h}
	defer w.leave()
	c.TID = base.InvalidTID
	tid := newest
	for hops := 0; tid.Valid(); hops++ {
		if hops > maxChainHops {
			return c, false, base.CorruptionErrorf("heap: relation %d: version chain from %v is longer than %d", h.rel, newest, maxChainHops)
		}
		p, ok, err := w.page(tid.Block)
		if err != nil || !ok {
			return c, false, err
		}
		off, hdr, ok, err := w.find(p, tid.Offset, key)
		if err != nil || !ok {
			return c, false, err
		}
		v := hdr.version()
		aborted := v.Mask&txn.XMinInvalid != 0
		if !aborted && v.Mask&txn.XMinCommitted == 0 && v.XMin != txn.FrozenXID {
			st, err := h.status.Status(v.XMin)
			if err != nil {
				return c, false, err
			}
			if st == txn.Aborted {
				aborted = true
				w.hint(p, off, tid.Offset, &hdr, txn.XMinInvalid)
			}
		}
		if !aborted {
			return Current{TID: tid, Version: v}, true, nil
		}
		tid = hdr.prev
	}
	return c, false, nil
}
