package pagecache

import (
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/vfs"
)

func TestReadWriteAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	bp := openPool(t, vfs.Default, dir, 16, Config{})
	createRel(t, bp, 1, 40)
	for blk := range base.BlockNum(40) {
		err := bp.WithPage(1, blk, Exclusive, func(p Page) (bool, error) {
			stamp(p, blk, 1)
			return true, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := bp.Checkpoint(nil); err != nil {
		t.Fatal(err)
	}
	if err := bp.Close(); err != nil {
		t.Fatal(err)
	}

	bp = openPool(t, vfs.Default, dir, 16, Config{})
	defer bp.Close()
	if n, err := bp.Storage().NBlocks(1); err != nil || n != 40 {
		t.Fatalf("NBlocks = %d, %v; want 40", n, err)
	}
	for blk := range base.BlockNum(40) {
		err := bp.WithPage(1, blk, Shared, func(p Page) (bool, error) {
			return false, checkStamp(p, blk, 1)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := bp.ReadBuffer(1, 40, ReadNormal, nil); !errors.Is(err, ErrBlockOutOfRange) {
		t.Fatalf("read past end: %v, want ErrBlockOutOfRange", err)
	}
	if _, err := bp.ReadBuffer(99, 0, ReadNormal, nil); !errors.Is(err, ErrNoRelation) {
		t.Fatalf("read of missing relation: %v, want ErrNoRelation", err)
	}
	if n := bp.PinnedBuffers(); n != 0 {
		t.Fatalf("%d buffers left pinned", n)
	}
}

// TestConcurrentStress has 8 goroutines read and modify random pages of a
// relation ten times larger than the pool. Every page carries its block
// number and a version; readers check what they see against the versions
// the writers published, and at the end every page is checked in memory and
// again from disk after a checkpoint and reopen.
func TestConcurrentStress(t *testing.T) {
	const nbuf, nblocks, workers = 32, 320, 8
	ops := 3000
	if testing.Short() {
		ops = 500
	}
	seed := testSeed(t)
	dir := t.TempDir()
	bp := openPool(t, vfs.Default, dir, nbuf, Config{})
	createRel(t, bp, 7, nblocks)
	bp.StartBgWriter()

	versions := make([]atomic.Uint64, nblocks)
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			r := newRand(seed + uint64(w))
			for range ops {
				blk := base.BlockNum(r.IntN(nblocks))
				b, err := bp.ReadBuffer(7, blk, ReadNormal, nil)
				if err != nil {
					errc <- err
					return
				}
				if r.IntN(3) == 0 {
					b.LockExclusive()
					v := versions[blk].Load() + 1
					stamp(b.Page(), blk, v)
					b.MarkDirty()
					versions[blk].Store(v)
					b.UnlockExclusive()
				} else {
					b.LockShare()
					err = checkStamp(b.Page(), blk, versions[blk].Load())
					b.UnlockShare()
				}
				b.Release()
				if err != nil {
					errc <- err
					return
				}
				if r.IntN(500) == 0 {
					if err := bp.Checkpoint(nil); err != nil {
						errc <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	verify := func(bp *Pool) {
		t.Helper()
		for blk := range base.BlockNum(nblocks) {
			err := bp.WithPage(7, blk, Shared, func(p Page) (bool, error) {
				return false, checkStamp(p, blk, versions[blk].Load())
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	verify(bp)
	if n := bp.PinnedBuffers(); n != 0 {
		t.Fatalf("%d buffers left pinned", n)
	}
	st := bp.Stats()
	if st.Evictions == 0 || st.WritesBackend+st.WritesBgWriter == 0 {
		t.Fatalf("stress did not evict dirty pages: %+v", st)
	}
	if err := bp.Checkpoint(nil); err != nil {
		t.Fatal(err)
	}
	if err := bp.Close(); err != nil {
		t.Fatal(err)
	}
	bp = openPool(t, vfs.Default, dir, nbuf, Config{})
	defer bp.Close()
	verify(bp)
}

func TestPinnedBufferNeverEvicted(t *testing.T) {
	const nbuf = 16
	bp := openPool(t, vfs.Default, t.TempDir(), nbuf, Config{})
	defer bp.Close()
	createRel(t, bp, 1, 200)

	// Pin 15 buffers, changing their pages without writing them.
	var held []Buffer
	for blk := range base.BlockNum(nbuf - 1) {
		b, err := bp.ReadBuffer(1, blk, ReadNormal, nil)
		if err != nil {
			t.Fatal(err)
		}
		b.LockExclusive()
		stamp(b.Page(), blk, 42)
		b.UnlockExclusive()
		held = append(held, b)
	}
	// Stream the rest of the relation through the one free buffer.
	for blk := base.BlockNum(nbuf); blk < 200; blk++ {
		if err := bp.WithPage(1, blk, Shared, func(p Page) (bool, error) { return false, checkStamp(p, blk, 0) }); err != nil {
			t.Fatal(err)
		}
	}
	for i, b := range held {
		if b.BlockNum() != base.BlockNum(i) {
			t.Fatalf("pinned buffer now holds block %d, want %d", b.BlockNum(), i)
		}
		if err := checkStamp(b.Page(), base.BlockNum(i), 42); err != nil {
			t.Fatalf("pinned page changed: %v", err)
		}
	}

	// Pin the last buffer too: a read of another page must fail at once.
	last, err := bp.ReadBuffer(1, 150, ReadNormal, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := bp.ReadBuffer(1, 151, ReadNormal, nil)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrNoUnpinnedBuffers) {
			t.Fatalf("read with every buffer pinned: %v, want ErrNoUnpinnedBuffers", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("read with every buffer pinned hangs")
	}
	last.Release()
	if err := bp.WithPage(1, 151, Shared, func(Page) (bool, error) { return false, nil }); err != nil {
		t.Fatalf("read after a pin was released: %v", err)
	}
	for _, b := range held {
		b.Release()
	}
	if n := bp.PinnedBuffers(); n != 0 {
		t.Fatalf("%d buffers left pinned", n)
	}
}

// TestWALBeforeData watches every page write and checks that the WAL was
// flushed up to the page's LSN before it.
func TestWALBeforeData(t *testing.T) {
	seed := testSeed(t)
	var flushed, nextLSN atomic.Uint64
	var flushCalls, writes, violations atomic.Int64
	hfs := &hookFS{FS: vfs.Default}
	hfs.onWrite = func(name string, p []byte, off int64) {
		if len(p) != BlockSize || Page(p).IsNew() {
			return
		}
		writes.Add(1)
		if lsn := uint64(Page(p).LSN()); lsn > flushed.Load() {
			violations.Add(1)
			t.Errorf("%s block %d written with LSN %d while WAL is flushed to %d", name, off/BlockSize, lsn, flushed.Load())
		}
	}
	flushWAL := func(lsn base.LSN) error {
		flushCalls.Add(1)
		for {
			cur := flushed.Load()
			if uint64(lsn) <= cur || flushed.CompareAndSwap(cur, uint64(lsn)) {
				return nil
			}
		}
	}
	bp := openPool(t, hfs, t.TempDir(), 16, Config{FlushWAL: flushWAL})
	defer bp.Close()
	createRel(t, bp, 3, 100) // LSN 0 pages: nothing to flush

	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			r := newRand(seed + uint64(w))
			for range 500 {
				blk := base.BlockNum(r.IntN(100))
				err := bp.WithPage(3, blk, Exclusive, func(p Page) (bool, error) {
					stamp(p, blk, 1)
					p.SetLSN(base.LSN(nextLSN.Add(1)))
					return true, nil
				})
				if err != nil {
					t.Error(err)
					return
				}
				if r.IntN(50) == 0 {
					if _, err := bp.BgWriterRound(); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	if err := bp.Checkpoint(nil); err != nil {
		t.Fatal(err)
	}
	if writes.Load() == 0 || flushCalls.Load() == 0 {
		t.Fatalf("no page with an LSN was written (%d writes, %d WAL flushes)", writes.Load(), flushCalls.Load())
	}
	if violations.Load() > 0 {
		t.Fatalf("%d pages written ahead of their WAL", violations.Load())
	}
}

func TestFlushWALFailureKeepsPageDirty(t *testing.T) {
	fail := errors.New("wal is gone")
	bp := openPool(t, vfs.Default, t.TempDir(), 16, Config{FlushWAL: func(base.LSN) error { return fail }})
	defer bp.Close()
	createRel(t, bp, 1, 1)
	if err := bp.WithPage(1, 0, Exclusive, func(p Page) (bool, error) { p.SetLSN(10); return true, nil }); err != nil {
		t.Fatal(err)
	}
	if err := bp.Checkpoint(nil); !errors.Is(err, fail) {
		t.Fatalf("checkpoint with failing WAL flush: %v", err)
	}
	if info := bp.Snapshot()[findBuffer(t, bp, 1, 0)]; !info.Dirty {
		t.Fatal("page not written but marked clean")
	}
}

func findBuffer(t *testing.T, bp *Pool, rel base.RelFileNode, blk base.BlockNum) int {
	t.Helper()
	for _, info := range bp.Snapshot() {
		if info.Valid && info.Tag == (Tag{rel, blk}) {
			return info.ID
		}
	}
	t.Fatalf("block %d of relation %d is not in the pool", blk, rel)
	return -1
}

// TestRingKeepsHotSet reads a hot set, then makes a sequential pass over a
// relation ten times the pool. Through a bulk-read ring the hot set stays;
// without one it is flushed out (which shows the test can tell).
func TestRingKeepsHotSet(t *testing.T) {
	const nbuf, hot = 256, 128
	for _, useRing := range []bool{true, false} {
		t.Run(map[bool]string{true: "ring", false: "no-ring"}[useRing], func(t *testing.T) {
			dir := t.TempDir()
			bp := openPool(t, vfs.Default, dir, nbuf, Config{})
			createRel(t, bp, 1, hot)           // the hot relation
			createRel(t, bp, 2, nbuf*10)       // the big one
			if err := bp.Close(); err != nil { // start cold
				t.Fatal(err)
			}
			bp = openPool(t, vfs.Default, dir, nbuf, Config{})
			defer bp.Close()
			for range 3 {
				for blk := range base.BlockNum(hot) {
					if err := bp.WithPage(1, blk, Shared, func(Page) (bool, error) { return false, nil }); err != nil {
						t.Fatal(err)
					}
				}
			}
			var s *Strategy
			if useRing {
				s = bp.NewStrategy(BulkRead)
			}
			for blk := range base.BlockNum(nbuf * 10) {
				b, err := bp.ReadBuffer(2, blk, ReadNormal, s)
				if err != nil {
					t.Fatal(err)
				}
				b.LockShare()
				err = checkStamp(b.Page(), blk, 0)
				b.UnlockShare()
				b.Release()
				if err != nil {
					t.Fatal(err)
				}
			}
			resident := 0
			for _, info := range bp.Snapshot() {
				if info.Valid && info.Tag.Rel == 1 {
					resident++
				}
			}
			t.Logf("hot pages resident: %d of %d; ring reuses %d", resident, hot, bp.Stats().RingReuses)
			if useRing && resident < hot*9/10 {
				t.Fatalf("only %d of %d hot pages survived a ring scan", resident, hot)
			}
			if !useRing && resident >= hot*9/10 {
				t.Fatalf("%d of %d hot pages survived a scan without a ring: the test cannot tell", resident, hot)
			}
		})
	}
}

func TestChecksumFailureNamesRelationAndBlock(t *testing.T) {
	dir := t.TempDir()
	bp := openPool(t, vfs.Default, dir, 16, Config{})
	createRel(t, bp, 12, 8)
	if err := bp.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := vfs.Default.Open(dir + "/base/12")
	if err != nil {
		t.Fatal(err)
	}
	b := []byte{0}
	off := int64(5*BlockSize + 3000)
	f.ReadAt(b, off)
	b[0] ^= 0x10
	f.WriteAt(b, off)
	f.Close()

	bp = openPool(t, vfs.Default, dir, 16, Config{})
	defer bp.Close()
	_, err = bp.ReadBuffer(12, 5, ReadNormal, nil)
	if !errors.Is(err, base.ErrCorrupt) || !strings.Contains(err.Error(), "block 5 of relation 12") {
		t.Fatalf("read of flipped page: %v; want ErrCorrupt naming block 5 of relation 12", err)
	}
	if bp.Stats().ChecksumFailures != 1 || bp.PinnedBuffers() != 0 {
		t.Fatalf("stats %+v, pinned %d", bp.Stats(), bp.PinnedBuffers())
	}
	// The neighbours are fine, and the failure is reported again, not cached.
	if err := bp.WithPage(12, 4, Shared, func(p Page) (bool, error) { return false, checkStamp(p, 4, 0) }); err != nil {
		t.Fatal(err)
	}
	if _, err := bp.ReadBuffer(12, 5, ReadNormal, nil); !errors.Is(err, base.ErrCorrupt) {
		t.Fatalf("second read of flipped page: %v", err)
	}
}

// TestGoHeapStaysSmall checks that the slab lives outside the Go heap: with
// 1 GiB of shared buffers, all in use, the heap stays under 64 MiB.
func TestGoHeapStaysSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("touches 1 GiB of memory")
	}
	const size = 1 << 30
	smgr, err := OpenStorage(vfs.Default, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	bp, err := NewPool(smgr, Config{SharedBuffers: size})
	if err != nil {
		t.Fatal(err)
	}
	defer bp.Close()
	if err := smgr.Create(1); err != nil {
		t.Fatal(err)
	}
	for blk := range base.BlockNum(bp.NBuffers()) {
		b, err := bp.ReadBuffer(1, blk, ReadZeroAndLock, nil)
		if err != nil {
			t.Fatal(err)
		}
		stamp(b.Page(), blk, 1)
		b.UnlockExclusive()
		b.Release()
	}
	for blk := range base.BlockNum(1000) {
		if err := bp.WithPage(1, blk*100, Shared, func(p Page) (bool, error) { return false, checkStamp(p, blk*100, 1) }); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	t.Logf("shared buffers %d MiB, %d buffers; Go HeapAlloc %.1f MiB", size>>20, bp.NBuffers(), float64(ms.HeapAlloc)/(1<<20))
	if ms.HeapAlloc > 64<<20 {
		t.Fatalf("Go heap is %d MiB with 1 GiB of shared buffers in use", ms.HeapAlloc>>20)
	}
}

func TestBgWriterCleansAheadOfTheClock(t *testing.T) {
	const nbuf = 64
	for _, maxPages := range []int{100, 10} {
		bp := openPool(t, vfs.Default, t.TempDir(), nbuf, Config{BgWriterLRUMaxPages: maxPages})
		createRel(t, bp, 1, 2*nbuf)
		// Dirty a pool's worth of pages, then let them age to usage zero,
		// as a clock sweep would.
		for blk := range base.BlockNum(nbuf) {
			if err := bp.WithPage(1, blk, Exclusive, func(p Page) (bool, error) { stamp(p, blk, 1); return true, nil }); err != nil {
				t.Fatal(err)
			}
		}
		for id := range bp.descs {
			for usage(bp.descs[id].state.Load()) > 0 {
				st := bp.descs[id].lockHdr()
				bp.descs[id].unlockHdr(st - usageOne)
			}
		}
		written, err := bp.BgWriterRound()
		if err != nil {
			t.Fatal(err)
		}
		st := bp.Stats()
		if want := min(nbuf, maxPages); written != want || int(st.WritesBgWriter) != want {
			t.Fatalf("maxpages %d: bgwriter wrote %d (stats %d), want %d", maxPages, written, st.WritesBgWriter, want)
		}
		if maxPages < nbuf && st.MaxWrittenClean != 1 {
			t.Fatalf("maxwritten_clean = %d, want 1", st.MaxWrittenClean)
		}
		if maxPages >= nbuf {
			// Every victim is clean now: reading new pages costs the
			// backend no writes.
			before := bp.Stats().WritesBackend
			for blk := base.BlockNum(nbuf); blk < 2*nbuf; blk++ {
				if err := bp.WithPage(1, blk, Shared, func(Page) (bool, error) { return false, nil }); err != nil {
					t.Fatal(err)
				}
			}
			if w := bp.Stats().WritesBackend - before; w != 0 {
				t.Fatalf("backend wrote %d pages after the bgwriter cleaned them", w)
			}
		}
		bp.Close()
	}
}

// TestCheckpointWritesSortedThenSyncs records the checkpoint's I/O: dirty
// pages go out in (relation, block) order, then each file written is synced.
func TestCheckpointWritesSortedThenSyncs(t *testing.T) {
	seed := testSeed(t)
	type io struct {
		name string
		blk  int64
		sync bool
	}
	var log []io
	hfs := &hookFS{FS: vfs.Default}
	bp := openPool(t, hfs, t.TempDir(), 128, Config{})
	defer bp.Close()
	createRel(t, bp, 5, 30)
	createRel(t, bp, 4, 30)
	before := bp.Stats().WritesCheckpoint
	hfs.onWrite = func(name string, p []byte, off int64) { log = append(log, io{name: name, blk: off / BlockSize}) }
	hfs.onSync = func(name string) { log = append(log, io{name: name, sync: true}) }
	r := newRand(seed)
	for range 40 {
		rel, blk := base.RelFileNode(4+r.IntN(2)), base.BlockNum(r.IntN(30))
		if err := bp.WithPage(rel, blk, Exclusive, func(p Page) (bool, error) { stamp(p, blk, 1); return true, nil }); err != nil {
			t.Fatal(err)
		}
	}
	if err := bp.Checkpoint(nil); err != nil {
		t.Fatal(err)
	}
	var writes []io
	syncs := map[string]int{}
	for i, e := range log {
		if e.sync {
			syncs[e.name] = i
			continue
		}
		writes = append(writes, e)
		if len(syncs) > 0 {
			t.Fatalf("write of %s block %d after a sync", e.name, e.blk)
		}
	}
	for i := 1; i < len(writes); i++ {
		a, b := writes[i-1], writes[i]
		if a.name > b.name || (a.name == b.name && a.blk >= b.blk) {
			t.Fatalf("checkpoint wrote %s/%d before %s/%d", a.name, a.blk, b.name, b.blk)
		}
	}
	if len(writes) == 0 || len(syncs) != 2 {
		t.Fatalf("checkpoint wrote %d pages and synced %d files, want >0 and 2", len(writes), len(syncs))
	}
	if got := bp.Stats().WritesCheckpoint - before; got != uint64(len(writes)) {
		t.Fatalf("buffers_checkpoint grew by %d, writes seen %d", got, len(writes))
	}
	// Nothing left dirty: a second checkpoint writes nothing.
	log = nil
	if err := bp.Checkpoint(nil); err != nil {
		t.Fatal(err)
	}
	for _, e := range log {
		if !e.sync {
			t.Fatalf("second checkpoint wrote %s block %d", e.name, e.blk)
		}
	}
}

func TestDropRelation(t *testing.T) {
	bp := openPool(t, vfs.Default, t.TempDir(), 16, Config{})
	defer bp.Close()
	createRel(t, bp, 1, 8)
	if err := bp.WithPage(1, 2, Exclusive, func(p Page) (bool, error) { stamp(p, 2, 5); return true, nil }); err != nil {
		t.Fatal(err)
	}
	b, _ := bp.ReadBuffer(1, 3, ReadNormal, nil)
	if err := bp.DropRelation(1); err == nil {
		t.Fatal("dropped a relation with a pinned buffer")
	}
	b.Release()
	if err := bp.DropRelation(1); err != nil {
		t.Fatal(err)
	}
	for _, info := range bp.Snapshot() {
		if info.Valid && info.Tag.Rel == 1 {
			t.Fatalf("buffer %d still holds block %d of the dropped relation", info.ID, info.Tag.Blk)
		}
	}
	if err := bp.Storage().Drop(1); err != nil {
		t.Fatal(err)
	}
	if bp.Storage().Exists(1) {
		t.Fatal("relation file still exists")
	}
}

func TestUseAfterClose(t *testing.T) {
	bp := openPool(t, vfs.Default, t.TempDir(), 16, Config{})
	createRel(t, bp, 1, 1)
	if err := bp.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := bp.ReadBuffer(1, 0, ReadNormal, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("ReadBuffer after Close: %v", err)
	}
	if err := bp.Checkpoint(nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Checkpoint after Close: %v", err)
	}
	if err := bp.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
}

func TestPoolTooSmall(t *testing.T) {
	smgr, err := OpenStorage(vfs.Default, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewPool(smgr, Config{SharedBuffers: 8 * BlockSize}); err == nil {
		t.Fatal("pool of 8 pages accepted")
	}
}
