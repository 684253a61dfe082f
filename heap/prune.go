package heap

import (
	"fmt"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/pagecache"
	"github.com/heapkv/heapkv/txn"
)

// PruneResult says what Prune did to one page.
type PruneResult struct {
	// Busy: another goroutine held a pin on the page, so no cleanup lock
	// could be had and nothing was done (try later).
	Busy bool
	// Dead counts aborted first versions freed whole; their line pointers
	// stay dead (an index entry may still carry their TID).
	Dead int
	// Stubs counts aborted versions cut down to header and key, kept for
	// their link to the previous version.
	Stubs int
	// Freed is the growth of the page's free space, in bytes.
	Freed int
	// Chunks counts the TOAST chunks of the freed versions released on
	// other pages; ChunksBusy counts chains left (orphaned) because a chunk
	// page could not be cleanup-locked.
	Chunks     int
	ChunksBusy int
}

// Prune frees the tuples of aborted inserts on block blk of the heap
// (PostgreSQL's heap_page_prune, for the one kind of garbage that needs no
// removal horizon). It needs a cleanup lock and does nothing if it cannot
// get one at once. An aborted version with no previous version is freed
// whole and its line pointer left dead; one with a previous version
// becomes a stub that keeps its key and prev link, so chains through it
// still lead to the older versions. The page is compacted, the change
// logged, and the free space map updated. Then the TOAST chunks of the
// freed versions are released, page by page, each under its own cleanup
// lock. TOAST pages themselves are not pruned: their chunks are freed
// through the version that owns them. See doc.go, "Pruning".
func (h *Heap) Prune(blk base.BlockNum) (PruneResult, error) {
	var res PruneResult
	b, err := h.pool.ReadBuffer(h.rel, blk, pagecache.ReadNormal, nil)
	if err != nil {
		return res, fmt.Errorf("heap: relation %d: prune: %w", h.rel, err)
	}
	if !b.TryLockForCleanup() {
		b.Release()
		h.stats.pruneBusy.Add(1)
		res.Busy = true
		return res, nil
	}
	unlock := func() {
		b.UnlockExclusive()
		b.Release()
	}
	p := b.Page()
	if p.IsNew() {
		unlock()
		return res, nil
	}
	if err := checkHeader(p); err != nil {
		unlock()
		return res, fmt.Errorf("heap: relation %d block %d: %w", h.rel, blk, err)
	}
	if isToastPage(p) {
		h.fsm.set(blk, true, freeSpace(p))
		unlock()
		return res, nil
	}

	type owned struct {
		ptr  toastPointer
		xmin base.XID
	}
	var acts []pruneAction
	var chains []owned
	for i := 1; i <= numLP(p); i++ {
		off, n, ok, err := tupleAt(p, i)
		if err == nil && ok {
			var hdr tupleHdr
			hdr, err = decodeTupleHdr(p[off : off+n])
			if err == nil && hdr.mask&maskStub == 0 {
				var aborted bool
				aborted, err = h.insertAborted(&hdr)
				if err == nil && aborted {
					if hdr.mask&maskExternal != 0 {
						var ptr toastPointer
						start := off + tupleHeaderSize + hdr.klen
						ptr, err = decodeToastPointer(p[start : start+hdr.vlen])
						chains = append(chains, owned{ptr, hdr.xmin})
					}
					if hdr.prev.Valid() {
						acts = append(acts, pruneAction{i, pruneStub})
						res.Stubs++
					} else {
						acts = append(acts, pruneAction{i, pruneDead})
						res.Dead++
					}
				}
			}
		}
		if err != nil {
			unlock()
			return PruneResult{}, fmt.Errorf("heap: relation %d block %d offset %d: %w", h.rel, blk, i, err)
		}
	}
	before := freeSpace(p)
	if len(acts) == 0 {
		h.fsm.set(blk, false, before)
		unlock()
		return res, nil
	}
	c := h.begin(b)
	if err := applyPrune(p, acts); err != nil {
		c.abort()
		unlock()
		return PruneResult{}, fmt.Errorf("heap: relation %d block %d: %w", h.rel, blk, err)
	}
	err = c.commit(infoPrune, base.InvalidXID, encodePrune(nil, acts))
	after := freeSpace(p)
	if err == nil {
		h.fsm.set(blk, false, after)
	}
	unlock()
	if err != nil {
		return PruneResult{}, err
	}
	res.Freed = after - before
	h.stats.pruned.Add(uint64(res.Dead + res.Stubs))
	h.stats.stubs.Add(uint64(res.Stubs))

	for _, ch := range chains {
		n, busy, err := h.freeChunks(ch.ptr, ch.xmin)
		res.Chunks += n
		if busy {
			res.ChunksBusy++
		}
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

// insertAborted reports whether the transaction that inserted the tuple
// aborted, from its hint bits or else the commit log.
func (h *Heap) insertAborted(hdr *tupleHdr) (bool, error) {
	switch {
	case hdr.mask&uint32(txn.XMinInvalid) != 0:
		return true, nil
	case hdr.mask&uint32(txn.XMinCommitted) != 0, hdr.xmin == txn.FrozenXID:
		return false, nil
	}
	st, err := h.status.Status(hdr.xmin)
	if err != nil {
		return false, err
	}
	return st == txn.Aborted, nil
}

// freeChunks releases the chunks of the value ptr points at, owned by the
// aborted xmin, from the last back: each chunk's line pointer becomes
// unused (no index entry ever names a chunk) and its page is compacted. It
// stops, leaving the rest orphaned, at a page it cannot cleanup-lock
// (busy). It returns how many chunks it freed.
func (h *Heap) freeChunks(ptr toastPointer, xmin base.XID) (freed int, busy bool, err error) {
	end := int(ptr.extLen)
	tid := ptr.last
	for tid.Valid() && freed < int(ptr.nchunks) {
		b, err := h.pool.ReadBuffer(h.rel, tid.Block, pagecache.ReadNormal, nil)
		if err != nil {
			return freed, false, fmt.Errorf("heap: relation %d: free TOAST chunk %v: %w", h.rel, tid, err)
		}
		if !b.TryLockForCleanup() {
			b.Release()
			h.stats.pruneBusy.Add(1)
			return freed, true, nil
		}
		p := b.Page()
		off, data, prev, err := chunkAt(p, tid, xmin)
		if err == nil && off+len(data) != end {
			err = base.CorruptionErrorf("heap: TOAST chunk at offset %d of %d bytes, want it to end at %d", off, len(data), end)
		}
		if err == nil {
			c := h.begin(b)
			acts := []pruneAction{{int(tid.Offset), pruneUnused}}
			if err = applyPrune(p, acts); err != nil {
				c.abort()
			} else {
				err = c.commit(infoPrune, base.InvalidXID, encodePrune(nil, acts))
			}
		}
		if err == nil {
			h.fsm.set(tid.Block, true, freeSpace(p))
		}
		b.UnlockExclusive()
		b.Release()
		if err != nil {
			return freed, false, fmt.Errorf("heap: relation %d block %d offset %d: %w", h.rel, tid.Block, tid.Offset, err)
		}
		h.stats.chunksFreed.Add(1)
		freed++
		end, tid = off, prev
	}
	return freed, false, nil
}
