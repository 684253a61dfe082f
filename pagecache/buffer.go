package pagecache

import "github.com/heapkv/heapkv/internal/base"

// Buffer is a pinned buffer: a handle returned by ReadBuffer or Extend. The
// pin keeps the page in the pool; the content latch (LockShare /
// LockExclusive) guards its bytes. The zero Buffer is invalid.
//
// A Buffer is a value; copying it does not add a pin. Release it exactly
// once, after unlocking.
type Buffer struct {
	bp *Pool
	id int32
}

// Valid reports whether b refers to a buffer.
func (b Buffer) Valid() bool { return b.bp != nil }

// ID returns the buffer's index in the pool.
func (b Buffer) ID() int { return int(b.id) }

// Tag returns the page the buffer holds. It is stable while pinned.
func (b Buffer) Tag() Tag { return b.bp.descs[b.id].tag }

// Rel returns the buffer's relation.
func (b Buffer) Rel() base.RelFileNode { return b.Tag().Rel }

// BlockNum returns the buffer's block number.
func (b Buffer) BlockNum() base.BlockNum { return b.Tag().Blk }

// Page returns the page's bytes. Read them only under a share or exclusive
// lock; change them only under an exclusive lock, then MarkDirty.
func (b Buffer) Page() Page { return b.bp.page(b.id) }

// LockShare takes the content latch in share mode.
func (b Buffer) LockShare() { b.bp.descs[b.id].content.RLock() }

// UnlockShare releases a share lock.
func (b Buffer) UnlockShare() { b.bp.descs[b.id].content.RUnlock() }

// LockExclusive takes the content latch in exclusive mode.
func (b Buffer) LockExclusive() { b.bp.descs[b.id].content.Lock() }

// TryLockExclusive takes the exclusive latch if it is free.
func (b Buffer) TryLockExclusive() bool { return b.bp.descs[b.id].content.TryLock() }

// UnlockExclusive releases an exclusive lock.
func (b Buffer) UnlockExclusive() { b.bp.descs[b.id].content.Unlock() }

// TryLockForCleanup takes the exclusive latch if nobody else holds a pin
// (PostgreSQL's conditional cleanup lock): then no other goroutine holds a
// pointer into the page, so tuples may be moved. The caller holds one pin.
func (b Buffer) TryLockForCleanup() bool {
	d := &b.bp.descs[b.id]
	if !d.content.TryLock() {
		return false
	}
	if refcount(d.state.Load()) != 1 {
		d.content.Unlock()
		return false
	}
	return true
}

// MarkDirty records that the page changed. The caller holds the exclusive
// latch and calls it before inserting the change's WAL record (rule 1 of
// the package documentation), then stamps the page with the record's LSN.
func (b Buffer) MarkDirty() {
	d := &b.bp.descs[b.id]
	for {
		old := d.waitHdrUnlocked()
		if invariants && refcount(old) == 0 {
			panic("pagecache: MarkDirty of an unpinned buffer")
		}
		if old&flagDirty != 0 && old&flagJustDirtied != 0 {
			return
		}
		if d.state.CompareAndSwap(old, old|flagDirty|flagJustDirtied) {
			if old&flagDirty == 0 {
				b.bp.stats.dirtied.Add(1)
			}
			return
		}
	}
}

// IsDirty reports whether the page has changes not yet written. Under a
// share lock the answer can change from dirty to clean (a write finishing)
// but, for a page whose LSN is at or before the redo point, not from clean
// to dirty: every change that dirties such a page needs the exclusive lock
// (a WAL-logged change, or a hint's full-page image).
func (b Buffer) IsDirty() bool { return b.bp.descs[b.id].state.Load()&flagDirty != 0 }

// Release drops the pin. The buffer must not be used afterwards.
func (b Buffer) Release() { b.bp.descs[b.id].unpin() }

// MarkDirtyHint records a change that needs no WAL record of its own, made
// under a share lock: hint bits, set with atomic operations on the page. A
// torn write of such a change would fail the checksum, so the caller first
// logs a full-page image when the page has not been logged since the last
// redo point (PostgreSQL's MarkBufferDirtyHint with wal_log_hints).
func (b Buffer) MarkDirtyHint() { b.MarkDirty() }
