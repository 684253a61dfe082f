package pagecache

import (
	"github.com/heapkv/heapkv/internal/base"
)

// LockForRedo returns block blk of rel pinned and locked exclusively for WAL
// replay (PostgreSQL's XLogReadBufferExtended). A missing relation file is
// created and a block past the end is supplied as a zero page, because the
// WAL may describe pages whose writes never reached the disk; only a file
// known to be missing is created (Storage.Create). mode is ReadNormal or
// ReadZeroAndLock; with ReadZeroAndLock the page is not read at all and
// comes back zeroed: a full-page image will overwrite it, which is also how
// a torn page is repaired. done unlocks and releases the buffer, marking it
// dirty first if dirty.
func (bp *Pool) LockForRedo(rel base.RelFileNode, blk base.BlockNum, mode ReadMode) (page []byte, done func(dirty bool), err error) {
	if err := bp.smgr.Create(rel); err != nil {
		return nil, nil, err
	}
	// Extend the file with zero pages up to blk, as PostgreSQL's
	// XLogReadBufferExtended does: the relation's size then covers every
	// page redo touches (so Extend never hands out a block the pool holds),
	// and a page that redo rebuilt earlier in this recovery, and that
	// still sits dirty in the pool, is found there and not zeroed again.
	for {
		nblocks, err := bp.smgr.NBlocks(rel)
		if err != nil {
			return nil, nil, err
		}
		if nblocks > blk {
			break
		}
		if _, err := bp.smgr.Extend(rel); err != nil {
			return nil, nil, err
		}
	}
	var b Buffer
	if mode == ReadZeroAndLock {
		b, err = bp.ReadBuffer(rel, blk, ReadZeroAndLock, nil)
		if err != nil {
			return nil, nil, err
		}
	} else {
		b, err = bp.ReadBuffer(rel, blk, ReadNormal, nil)
		if err != nil {
			return nil, nil, err
		}
		b.LockExclusive()
	}
	return b.Page(), func(dirty bool) {
		if dirty {
			b.MarkDirty()
		}
		b.UnlockExclusive()
		b.Release()
	}, nil
}
