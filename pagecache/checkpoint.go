package pagecache

import (
	"cmp"
	"slices"
)

// Checkpoint writes every buffer that is dirty when it starts and then
// fsyncs every relation file written since the last checkpoint (PostgreSQL's
// BufferSync followed by the sync of pending files). Pages dirtied after it
// starts are not its business: their WAL lies after the redo point.
//
// The dirty buffers are written in (relation, block) order, so each file is
// written sequentially. progress, if not nil, is called after each write with
// the count written and the total, and may sleep to spread the writes over
// checkpoint_completion_target; the caller owns time.
//
// A failed page write returns its error and leaves the page dirty; the
// checkpoint has failed but nothing is lost, and a later one writes the page.
// A failed fsync is fatal (ErrDataSyncFailed): it stops Config.Halt, and the
// pool refuses writes from then on. Once the Halt has stopped, for whatever
// reason, Checkpoint writes no buffer and returns the Halt's error, since a
// checkpoint that completed would let the caller move the redo point past
// changes that may not be durable.
func (bp *Pool) Checkpoint(progress func(done, total int)) error {
	if bp.closed.Load() {
		return ErrClosed
	}
	bp.ckpt.Lock()
	defer bp.ckpt.Unlock()
	if err := bp.cfg.Halt.Err(); err != nil {
		return err
	}

	// Mark the buffers to write, remembering their tags.
	ids := bp.ckpt.ids[:0]
	for id := range bp.descs {
		d := &bp.descs[id]
		st := d.lockHdr()
		if st&(flagValid|flagDirty) == flagValid|flagDirty {
			st |= flagCheckpointNeeded
			ids = append(ids, ckptEntry{tag: d.tag, id: int32(id)})
		}
		d.unlockHdr(st)
	}
	slices.SortFunc(ids, func(a, b ckptEntry) int {
		if c := cmp.Compare(a.tag.Rel, b.tag.Rel); c != 0 {
			return c
		}
		return cmp.Compare(a.tag.Blk, b.tag.Blk)
	})

	for i, e := range ids {
		d := &bp.descs[e.id]
		st := d.lockHdr()
		if st&flagCheckpointNeeded == 0 || d.tag != e.tag {
			// Written (or evicted) by somebody else meanwhile.
			d.unlockHdr(st)
			continue
		}
		d.unlockHdr(st + refOne) // pin without counting a use
		d.content.RLock()
		_, err := bp.flushBuffer(e.id, &bp.stats.writesCheckpoint)
		d.content.RUnlock()
		d.unpin()
		if err != nil {
			return err
		}
		if progress != nil {
			progress(i+1, len(ids))
		}
	}
	if err := bp.smgr.Sync(); err != nil {
		return err
	}
	bp.stats.checkpoints.Add(1)
	return nil
}
