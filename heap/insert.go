package heap

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/pagecache"
)

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
