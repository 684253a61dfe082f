package btree

import (
	"encoding/binary"
	"fmt"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/pagecache"
	"github.com/heapkv/heapkv/xlog"
)

// RmgrID is the B+tree's resource manager id in the WAL.
const RmgrID = xlog.RmgrBtree

// Record kinds (the info byte of a B+tree WAL record).
//
//	infoCreate   images of the metapage and the empty root leaf
//	infoInsert   one leaf, operation data: idx u16 | item
//	infoDelete   one leaf, operation data: idx u16
//	infoRepoint  one leaf, operation data: idx u16 | block u32 | offset u16
//	infoSplit    every page a split changed, as images (new pages) and
//	             generic deltas: the split pages, their new right siblings,
//	             the old right siblings (left-link), the parents that got
//	             the downlinks, and on a root split the new root and the
//	             metapage
//
// The operation records are replayed by applyOp, the same function that
// made the change, so replay produces the same bytes. Any of them carries a
// full-page image instead of its data when xlog's full-page-write rule says
// so. The payload of every record is empty.
const (
	infoCreate  uint8 = 0x10
	infoInsert  uint8 = 0x20
	infoDelete  uint8 = 0x30
	infoRepoint uint8 = 0x40
	infoSplit   uint8 = 0x50
)

// RegisterRedo registers the B+tree's redo function with l. Call it after
// xlog.Open and before Recover.
func RegisterRedo(l *xlog.Log) error {
	return l.RegisterRmgr(RmgrID, "btree", redo)
}

func redo(rec *xlog.Record, ctx *xlog.RedoContext) error {
	switch rec.Info {
	case infoCreate, infoSplit:
		for i := range rec.Blocks {
			if _, err := ctx.RedoBlock(rec, i, nil); err != nil {
				return err
			}
		}
		return nil
	case infoInsert, infoDelete, infoRepoint:
		if len(rec.Blocks) != 1 {
			return base.CorruptionErrorf("btree: record at %s (info %#x) has %d block references, want 1", rec.LSN, rec.Info, len(rec.Blocks))
		}
		_, err := ctx.RedoBlock(rec, 0, func(pg []byte, ref *xlog.BlockRef) error {
			if ref.Kind != xlog.BlockData {
				return base.CorruptionErrorf("btree: record at %s: block reference of kind %v, want data", rec.LSN, ref.Kind)
			}
			return applyOp(rec.Info, page(pg), ref.Data)
		})
		return err
	}
	return base.CorruptionErrorf("btree: record at %s: unknown info %#x", rec.LSN, rec.Info)
}

// Operation data encoders.

func insertOp(dst []byte, idx int, item []byte) []byte {
	dst = binary.LittleEndian.AppendUint16(dst, uint16(idx))
	return append(dst, item...)
}

func deleteOp(dst []byte, idx int) []byte {
	return binary.LittleEndian.AppendUint16(dst, uint16(idx))
}

func repointOp(dst []byte, idx int, tid base.TID) []byte {
	dst = binary.LittleEndian.AppendUint16(dst, uint16(idx))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(tid.Block))
	return binary.LittleEndian.AppendUint16(dst, tid.Offset)
}

// applyOp applies an insert, delete or repoint operation to a leaf. The
// normal path and redo both use it, so both produce the same page bytes.
// It checks the page and the operation first and returns an error wrapping
// base.ErrCorrupt, never panicking, for anything that does not fit.
func applyOp(info uint8, p page, op []byte) error {
	if !p.sane() {
		return base.CorruptionErrorf("btree: operation %#x on a page that is not a B+tree page", info)
	}
	if !p.isLeaf() {
		return base.CorruptionErrorf("btree: operation %#x on a page of level %d", info, p.level())
	}
	if len(op) < 2 {
		return base.CorruptionErrorf("btree: operation %#x of %d bytes", info, len(op))
	}
	idx := int(binary.LittleEndian.Uint16(op))
	n := p.nItems()
	switch info {
	case infoInsert:
		item := op[2:]
		if !validItem(item) || len(item) == itemHeaderSize {
			return base.CorruptionErrorf("btree: insert of a malformed item of %d bytes", len(item))
		}
		if idx < p.firstData() || idx > n {
			return base.CorruptionErrorf("btree: insert at line pointer %d of %d", idx, n)
		}
		if p.freeSpace() < len(item)+lpSize {
			return base.CorruptionErrorf("btree: insert of %d bytes into a page with %d free", len(item)+lpSize, p.freeSpace())
		}
		insertItem(p, idx, item)
	case infoDelete, infoRepoint:
		if idx < p.firstData() || idx >= n {
			return base.CorruptionErrorf("btree: operation %#x at line pointer %d of %d", info, idx, n)
		}
		it := p.item(idx)
		off, l := p.lp(idx)
		if it == nil || off < int(p.hdr().Upper()) {
			return base.CorruptionErrorf("btree: operation %#x on damaged item %d (offset %d, length %d)", info, idx, off, l)
		}
		if info == infoDelete {
			if len(op) != 2 {
				return base.CorruptionErrorf("btree: delete operation of %d bytes", len(op))
			}
			deleteItem(p, idx)
			return nil
		}
		if len(op) != 8 {
			return base.CorruptionErrorf("btree: repoint operation of %d bytes", len(op))
		}
		setItemTID(it, base.TID{
			Block:  base.BlockNum(binary.LittleEndian.Uint32(op[2:])),
			Offset: binary.LittleEndian.Uint16(op[6:]),
		})
	default:
		return base.CorruptionErrorf("btree: unknown operation %#x", info)
	}
	return nil
}

// logOp applies op to the leaf in b (latched exclusively), marks the page
// dirty, logs the change, stamps the page with the record's end LSN and
// returns that LSN. If the WAL insert fails the change is undone by undo,
// so the page never holds a change the log does not have.
//
// The page is marked dirty before the record is inserted (PostgreSQL's
// transam README, step 4), not after: a checkpoint that fixes its redo
// point after our record was reserved must find the page dirty when it
// collects the buffers to write, or it would neither write the change nor
// replay it after a crash (it starts replay at its redo point, past our
// record). Nobody can write the page before we stamp it: writes take the
// content latch in share mode.
func (t *Tree) logOp(b pagecache.Buffer, info uint8, op []byte, undo func(page)) (base.LSN, error) {
	p := page(b.Page())
	if err := applyOp(info, p, op); err != nil {
		return 0, t.wrap(b.BlockNum(), err)
	}
	b.MarkDirty()
	var end base.LSN
	if t.wal != nil {
		rb := xlog.NewRecord(RmgrID, info, base.InvalidXID).PageOp(t.rel, b.BlockNum(), p, op)
		var err error
		if _, end, err = t.wal.Insert(rb); err != nil {
			undo(p)
			return 0, fmt.Errorf("btree: relation %d block %d: log change: %w", t.rel, b.BlockNum(), err)
		}
		p.hdr().SetLSN(end)
	}
	return end, nil
}
