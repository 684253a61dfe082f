package heap

import (
	"testing"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/vfs"
	"github.com/heapkv/heapkv/pagecache"
	"github.com/heapkv/heapkv/txn"
)

func maskOf(t *testing.T, h *Heap, tid base.TID) txn.Infomask {
	t.Helper()
	tup, err := h.Fetch(tid)
	if err != nil {
		t.Fatal(err)
	}
	return tup.Mask
}

func pageLSN(t *testing.T, e *env, blk base.BlockNum) base.LSN {
	t.Helper()
	var lsn base.LSN
	if err := e.pool.WithPage(testRel, blk, pagecache.Shared, func(p pagecache.Page) (bool, error) {
		lsn = p.LSN()
		return false, nil
	}); err != nil {
		t.Fatal(err)
	}
	return lsn
}

// bufferDirty reports whether block blk of the test relation is dirty in
// the pool.
func bufferDirty(t *testing.T, e *env, blk base.BlockNum) bool {
	t.Helper()
	b, err := e.pool.ReadBuffer(testRel, blk, pagecache.ReadNormal, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Release()
	return b.IsDirty()
}

// markDirtyUnlogged marks block blk dirty without a WAL record or a new
// LSN: the state of a page changed before the redo point whose write is
// still to come.
func markDirtyUnlogged(t *testing.T, e *env, blk base.BlockNum) {
	t.Helper()
	b, err := e.pool.ReadBuffer(testRel, blk, pagecache.ReadNormal, nil)
	if err != nil {
		t.Fatal(err)
	}
	b.LockExclusive()
	b.MarkDirty()
	b.UnlockExclusive()
	b.Release()
}

// TestHintBits checks when a read sets hint bits, and the full-page-image
// rule: XMinCommitted is set once the commit is durable and not before;
// XMinInvalid for an abort needs no durability; XMaxCommitted follows a
// durable delete; after a checkpoint moved the redo pointer past a page, a
// hint on it stays in memory while the page is clean (no image, no write),
// and the first hint once it is dirty logs an image of the page first (and
// stamps the page), while later ones do not. Then a crash and recovery
// from that WAL give the same answers.
func TestHintBits(t *testing.T) {
	fs := vfs.NewMemFS()
	e := openEnv(t, fs, envConfig{})
	c := e.clog
	ins := func(key string) (base.XID, base.TID) {
		xid := c.newXID()
		tid, err := e.h.Insert(xid, []byte(key), []byte("value of "+key), base.InvalidTID)
		if err != nil {
			t.Fatal(err)
		}
		return xid, tid
	}
	get := func(tid base.TID, key string) bool {
		_, ok, err := e.h.Get(tid, []byte(key), snapAll(), nil)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	xa, ta := ins("a")
	xb, tb := ins("b")
	xc, tc := ins("c")
	xd, td := ins("d")
	if ta.Block != td.Block {
		t.Fatalf("test rows on different pages: %v %v", ta, td)
	}
	c.set(xa, txn.Committed, true)
	c.set(xb, txn.Committed, false) // commit record not flushed yet
	c.set(xc, txn.Committed, false)
	c.set(xd, txn.Aborted, false)

	if !get(ta, "a") || !get(tb, "b") || get(td, "d") {
		t.Fatal("wrong visibility")
	}
	if m := maskOf(t, e.h, ta); m&txn.XMinCommitted == 0 {
		t.Fatalf("durable commit: mask %#x lacks XMinCommitted", m)
	}
	if m := maskOf(t, e.h, tb); m&txn.XMinCommitted != 0 {
		t.Fatalf("commit not durable: mask %#x has XMinCommitted", m)
	}
	if m := maskOf(t, e.h, td); m&txn.XMinInvalid == 0 {
		t.Fatalf("abort: mask %#x lacks XMinInvalid", m)
	}
	if st := e.h.Stats(); st.HintImages != 0 {
		t.Fatalf("%d hint images for a page logged since the redo point", st.HintImages)
	}

	// A checkpoint moves the redo pointer past the page's LSN.
	if err := e.wal.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	redo := e.wal.RedoLSN()
	if l := pageLSN(t, e, tb.Block); l > redo {
		t.Fatalf("page LSN %v above the new redo pointer %v", l, redo)
	}
	fpi := e.wal.Stats().FPI
	// The checkpoint wrote the page: it is clean, so b's hint stays in
	// memory, with no image and no write.
	c.setDurable(xb)
	if !get(tb, "b") {
		t.Fatal("b invisible")
	}
	if m := maskOf(t, e.h, tb); m&txn.XMinCommitted == 0 {
		t.Fatalf("durable now: mask %#x lacks XMinCommitted", m)
	}
	if got := e.wal.Stats().FPI; got != fpi {
		t.Fatalf("a hint on a clean page logged %d images, want none", got-fpi)
	}
	if dirty := bufferDirty(t, e, tb.Block); dirty {
		t.Fatal("a hint on a clean page dirtied it")
	}
	if st := e.h.Stats(); st.HintsInMemory != 1 || st.HintImages != 0 {
		t.Fatalf("HintsInMemory = %d, HintImages = %d; want 1, 0", st.HintsInMemory, st.HintImages)
	}
	// A page dirtied before the redo point and not yet written (as if the
	// checkpoint had started just after its change) would be written with
	// the hint, so its first hint logs an image and stamps the page.
	markDirtyUnlogged(t, e, tb.Block)
	c.setDurable(xc)
	if !get(tc, "c") {
		t.Fatal("c invisible")
	}
	if m := maskOf(t, e.h, tc); m&txn.XMinCommitted == 0 {
		t.Fatalf("mask %#x lacks XMinCommitted", m)
	}
	if got := e.wal.Stats().FPI; got != fpi+1 {
		t.Fatalf("first hint on a dirty page after the checkpoint logged %d images, want 1", got-fpi)
	}
	if l := pageLSN(t, e, tb.Block); l <= redo {
		t.Fatalf("page LSN %v not past the redo pointer %v after its hint image", l, redo)
	}
	if st := e.h.Stats(); st.HintImages != 1 {
		t.Fatalf("HintImages = %d, want 1", st.HintImages)
	}

	// XMaxCommitted after a durable delete; the deleted row is gone.
	xe := c.newXID()
	if err := e.h.SetXmax(ta, []byte("a"), txn.Version{}, xe, XmaxDelete); err != nil {
		t.Fatal(err)
	}
	c.set(xe, txn.Committed, true)
	if get(ta, "a") {
		t.Fatal("deleted row visible")
	}
	if m := maskOf(t, e.h, ta); m&txn.XMaxCommitted == 0 {
		t.Fatalf("durable delete: mask %#x lacks XMaxCommitted", m)
	}

	// Crash without any data page reaching the disk after the checkpoint:
	// recovery restores the hint image, then replays the delete.
	if err := e.wal.Flush(e.wal.InsertLSN()); err != nil {
		t.Fatal(err)
	}
	crashed := fs.Clone()
	e.mustClose(t)
	crashed.Crash(vfs.CrashOptions{Seed: 1})
	e = openEnv(t, crashed, envConfig{clog: c})
	defer e.mustClose(t)
	if get(ta, "a") || !get(tb, "b") || !get(tc, "c") || get(td, "d") {
		t.Fatal("wrong visibility after recovery")
	}
	if err := Check(e.pool, testRel); err != nil {
		t.Fatal(err)
	}
}
