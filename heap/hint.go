package heap

import (
	"encoding/binary"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/pagecache"
	"github.com/heapkv/heapkv/txn"
	"github.com/heapkv/heapkv/xlog"
)

type hintWork struct {
	off, offnum int // the tuple's page offset and line pointer
	xmin, xmax  base.XID
	bits        uint32
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
