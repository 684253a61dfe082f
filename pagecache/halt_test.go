package pagecache

import (
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/vfs"
)

// dirtyPage stamps block blk of rel with version ver and leaves it dirty
// with usage count zero, so that the clock sweep and the background writer
// take it next.
func dirtyPage(t *testing.T, bp *Pool, rel base.RelFileNode, blk base.BlockNum, ver uint64) {
	t.Helper()
	if err := bp.WithPage(rel, blk, Exclusive, func(p Page) (bool, error) { stamp(p, blk, ver); return true, nil }); err != nil {
		t.Fatal(err)
	}
	d := &bp.descs[findBuffer(t, bp, rel, blk)]
	st := d.lockHdr()
	d.unlockHdr(st &^ usageMask)
}

// TestDataFsyncFailureStopsHalt: a failed fsync of a data file stops the
// engine's Halt with the cause, and from then on no page is written by any
// path, while pages in memory can still be read.
func TestDataFsyncFailureStopsHalt(t *testing.T) {
	mem := vfs.NewMemFS()
	halt := base.NewHalt()
	bp := openPool(t, mem, "/db", 16, Config{Halt: halt})
	defer bp.Close()
	createRel(t, bp, 1, 40)
	dirtyPage(t, bp, 1, 39, 2)
	mem.InjectError(vfs.Injection{Op: vfs.OpSync, Path: "/db/base/1", Nth: 1})
	err := bp.Checkpoint(nil)
	if !errors.Is(err, ErrDataSyncFailed) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("checkpoint with failing fsync: %v", err)
	}
	herr := halt.Err()
	if !errors.Is(herr, base.ErrStopped) || !errors.Is(herr, ErrDataSyncFailed) || !errors.Is(herr, syscall.EIO) {
		t.Fatalf("halt after a failed data fsync: %v, want ErrStopped wrapping ErrDataSyncFailed and EIO", herr)
	}
	mem.ClearInjections()
	checkHaltedPool(t, bp, mem, halt)
}

// TestHaltStopsPageWrites: a Halt stopped by another subsystem (a WAL fsync
// failure, say) stops the pool's writes just the same.
func TestHaltStopsPageWrites(t *testing.T) {
	mem := vfs.NewMemFS()
	halt := base.NewHalt()
	bp := openPool(t, mem, "/db", 16, Config{Halt: halt, BgWriterDelay: time.Millisecond})
	defer bp.Close()
	createRel(t, bp, 1, 40)
	bp.StartBgWriter()
	halt.Stop(errors.New("wal fsync failed"))

	// The background writer goroutine is the only member of bp.wg: it
	// must quit on its own, not only at Close.
	quit := make(chan struct{})
	go func() { bp.wg.Wait(); close(quit) }()
	select {
	case <-quit:
	case <-time.After(10 * time.Second):
		t.Fatal("background writer still running after the halt")
	}
	checkHaltedPool(t, bp, mem, halt)
}

// checkHaltedPool checks a pool whose halt has stopped: Checkpoint, the
// background writer, Extend and the write of a dirty victim refuse with the
// halt's error and write nothing; Storage changes nothing; reads of cached
// pages, and of pages that need only a clean victim, work.
func checkHaltedPool(t *testing.T, bp *Pool, mem *vfs.MemFS, halt *base.Halt) {
	t.Helper()
	isHalt := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, base.ErrStopped) {
			t.Errorf("%s after the halt: %v, want the halt's error", what, err)
		}
	}
	dirtyPage(t, bp, 1, 39, 3) // a change in memory is still possible
	before := mem.Stats()

	isHalt("checkpoint", bp.Checkpoint(nil))
	if !bp.Snapshot()[findBuffer(t, bp, 1, 39)].Dirty {
		t.Error("page marked clean by a refused checkpoint")
	}
	n, err := bp.BgWriterRound()
	isHalt("bgwriter round", err)
	if n != 0 {
		t.Errorf("bgwriter wrote %d pages after the halt", n)
	}
	_, err = bp.Extend(1, nil)
	isHalt("extend", err)
	smgr := bp.Storage()
	isHalt("storage write", smgr.Write(1, 0, make([]byte, BlockSize)))
	_, err = smgr.Extend(1)
	isHalt("storage extend", err)
	isHalt("storage truncate", smgr.Truncate(1, 1))
	isHalt("storage create", smgr.Create(2))
	isHalt("storage drop", smgr.Drop(1))
	isHalt("storage sync", smgr.Sync())

	// Reads: block 39 is cached; reading every block makes the sweep
	// reuse clean buffers and, once, try the dirty one, which must fail
	// with the halt's error rather than write it.
	if err := bp.WithPage(1, 39, Shared, func(p Page) (bool, error) { return false, checkStamp(p, 39, 3) }); err != nil {
		t.Fatalf("read of a cached page after the halt: %v", err)
	}
	sawRefusal := false
	for blk := range base.BlockNum(39) {
		err := bp.WithPage(1, blk, Shared, func(p Page) (bool, error) { return false, checkStamp(p, blk, 0) })
		switch {
		case errors.Is(err, base.ErrStopped):
			sawRefusal = true
		case err != nil:
			t.Fatalf("read of block %d after the halt: %v", blk, err)
		}
	}
	if !sawRefusal {
		t.Error("no read needed the dirty page's buffer; the test does not test eviction")
	}
	if n := bp.PinnedBuffers(); n != 0 {
		t.Fatalf("%d pins leaked", n)
	}
	if after := mem.Stats(); after.Writes != before.Writes || after.Syncs != before.Syncs || after.DirSyncs != before.DirSyncs {
		t.Fatalf("I/O after the halt: writes %d -> %d, syncs %d -> %d, dir syncs %d -> %d",
			before.Writes, after.Writes, before.Syncs, after.Syncs, before.DirSyncs, after.DirSyncs)
	}
	if _, err := mem.Stat("/db/base/1"); err != nil {
		t.Fatalf("relation file after a refused drop: %v", err)
	}
}

// TestPageWriteErrorIsNotFatal: a failed page write, by any of the three
// writers, leaves the page dirty and the halt running, and a later write
// that succeeds makes the page durable.
func TestPageWriteErrorIsNotFatal(t *testing.T) {
	writers := []struct {
		name  string
		write func(t *testing.T, bp *Pool) error
	}{
		{"eviction", func(t *testing.T, bp *Pool) error {
			// Bring in other blocks until the sweep takes the dirty buffer.
			var first error
			for blk := range base.BlockNum(39) {
				if err := bp.WithPage(1, blk, Shared, func(Page) (bool, error) { return false, nil }); err != nil && first == nil {
					first = err
				}
			}
			return first
		}},
		{"bgwriter", func(t *testing.T, bp *Pool) error {
			_, _, err := bp.syncOneBuffer(int32(findBuffer(t, bp, 1, 39)))
			return err
		}},
		{"bgwriter round", func(t *testing.T, bp *Pool) error {
			// A round writes what lies ahead of the clock hand: put the
			// hand on the dirty buffer.
			bp.hand.Store(uint64(findBuffer(t, bp, 1, 39)))
			bp.bgw.started = false
			_, err := bp.BgWriterRound()
			return err
		}},
		{"checkpoint", func(t *testing.T, bp *Pool) error { return bp.Checkpoint(nil) }},
	}
	for _, w := range writers {
		t.Run(w.name, func(t *testing.T) {
			mem := vfs.NewMemFS()
			halt := base.NewHalt()
			bp := openPool(t, mem, "/db", 16, Config{Halt: halt})
			createRel(t, bp, 1, 40)
			dirtyPage(t, bp, 1, 39, 5)
			mem.InjectError(vfs.Injection{Op: vfs.OpWrite, Path: "/db/base/1", Nth: 1, Persistent: true})
			if err := w.write(t, bp); !errors.Is(err, syscall.EIO) {
				t.Fatalf("write with EIO: %v, want EIO", err)
			}
			if err := halt.Err(); err != nil {
				t.Fatalf("a failed page write stopped the engine: %v", err)
			}
			if !bp.Snapshot()[findBuffer(t, bp, 1, 39)].Dirty {
				t.Fatal("page whose write failed is marked clean")
			}
			if n := bp.PinnedBuffers(); n != 0 {
				t.Fatalf("%d pins leaked", n)
			}
			mem.ClearInjections()
			if err := bp.Checkpoint(nil); err != nil {
				t.Fatalf("checkpoint after the error cleared: %v", err)
			}
			bp.Close()
			mem.Crash(vfs.CrashOptions{})
			bp = openPool(t, mem, "/db", 16, Config{})
			defer bp.Close()
			if err := bp.WithPage(1, 39, Shared, func(p Page) (bool, error) { return false, checkStamp(p, 39, 5) }); err != nil {
				t.Fatalf("page after a failed and a good write: %v", err)
			}
		})
	}
}

// TestNoUnpinnedBuffersIsASentinel: a full pool of pinned buffers gives
// ErrNoUnpinnedBuffers itself (errors.Is), which is not the halt's error
// and does not stop it.
func TestNoUnpinnedBuffersIsASentinel(t *testing.T) {
	halt := base.NewHalt()
	bp := openPool(t, vfs.NewMemFS(), "/db", 16, Config{Halt: halt})
	defer bp.Close()
	createRel(t, bp, 1, 17)
	var held []Buffer
	for blk := range base.BlockNum(16) {
		b, err := bp.ReadBuffer(1, blk, ReadNormal, nil)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, b)
	}
	_, err := bp.ReadBuffer(1, 16, ReadNormal, nil)
	if !errors.Is(err, ErrNoUnpinnedBuffers) || errors.Is(err, base.ErrStopped) || halt.Err() != nil {
		t.Fatalf("read with every buffer pinned: %v (halt %v), want ErrNoUnpinnedBuffers only", err, halt.Err())
	}
	for _, b := range held {
		b.Release()
	}
}
