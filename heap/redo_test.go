package heap

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/vfs"
	"github.com/heapkv/heapkv/pagecache"
	"github.com/heapkv/heapkv/txn"
	"github.com/heapkv/heapkv/xlog"
)

// pageImages reads every page of the relation through the pool, with the
// checksum field (set only on written copies) zeroed.
func pageImages(t *testing.T, e *env) [][]byte {
	t.Helper()
	n, err := e.pool.Storage().NBlocks(testRel)
	if err != nil {
		t.Fatal(err)
	}
	imgs := make([][]byte, n)
	for blk := range n {
		if err := e.pool.WithPage(testRel, blk, pagecache.Shared, func(p pagecache.Page) (bool, error) {
			imgs[blk] = bytes.Clone(p)
			clear(imgs[blk][8:12])
			return false, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	return imgs
}

// TestRedoRebuildsPages runs inserts (inline, compressed, TOASTed), deletes,
// row locks and prunes (stubs, dead line pointers, freed chunks), with
// full-page writes on and off and checkpoints now and then, without ever
// reading through a snapshot (hint bits are not logged). Then it crashes
// dropping every data page write not synced by a checkpoint: recovery must
// rebuild every page byte for byte, LSNs included. Recovering the result
// again after a second crash that keeps a random part of what recovery
// wrote must change nothing (the LSN rule makes redo idempotent).
func TestRedoRebuildsPages(t *testing.T) {
	seed := testSeed(t)
	for round := range 6 {
		rng := newRand(seed + int64(round))
		fs := vfs.NewMemFS()
		walCfg := xlog.Config{WALCompression: xlog.Compression(round % 3)}
		if round%2 == 1 {
			walCfg.FullPageWrites = base.Off
		}
		e := openEnv(t, fs, envConfig{poolPages: 16 + rng.IntN(48), wal: walCfg})
		type row struct {
			key []byte
			tid base.TID
			xid base.XID
		}
		var live []row
		for i := range 400 {
			switch r := rng.IntN(20); {
			case r < 12 || len(live) == 0:
				xid := e.clog.newXID()
				key := []byte(fmt.Sprintf("k%d", rng.IntN(1000)))
				var v []byte
				switch rng.IntN(10) {
				case 0:
					v = randBytes(rng, 3000+rng.IntN(40000))
				case 1:
					v = bytes.Repeat(key, 1000)
				default:
					v = randBytes(rng, rng.IntN(700))
				}
				tid, err := e.h.Insert(xid, key, v, base.InvalidTID)
				if err != nil {
					t.Fatal(err)
				}
				if rng.IntN(4) == 0 {
					e.clog.set(xid, txn.Aborted, true)
				} else {
					e.clog.set(xid, txn.Committed, true)
					live = append(live, row{key, tid, xid})
				}
			case r < 16:
				j := rng.IntN(len(live))
				xid := e.clog.newXID()
				tup, err := e.h.Fetch(live[j].tid)
				if err != nil {
					t.Fatal(err)
				}
				mode := XmaxDelete
				if rng.IntN(2) == 0 {
					mode = XmaxLockOnly
				}
				if err := e.h.SetXmax(live[j].tid, live[j].key, txn.Version{XMax: tup.XMax, Mask: tup.Mask}, xid, mode); err != nil {
					t.Fatal(err)
				}
				e.clog.set(xid, txn.Committed, true)
			case r < 19:
				n, _ := e.h.NBlocks()
				if _, err := e.h.Prune(base.BlockNum(rng.IntN(int(n)))); err != nil {
					t.Fatal(err)
				}
			default:
				if i%3 == 0 {
					if err := e.wal.Checkpoint(); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		if err := e.wal.Flush(e.wal.InsertLSN()); err != nil {
			t.Fatal(err)
		}
		want := pageImages(t, e)
		if err := Check(e.pool, testRel); err != nil {
			t.Fatalf("seed %d round %d: Check before crash: %v", seed, round, err)
		}
		crashed := fs.Clone()
		e.mustClose(t)
		crashed.Crash(vfs.CrashOptions{Seed: seed})

		for pass := range 2 {
			r, err := tryOpenEnv(crashed, envConfig{poolPages: 16 + rng.IntN(48), wal: walCfg, clog: e.clog})
			if err != nil {
				t.Fatalf("seed %d round %d pass %d: recover: %v", seed, round, pass, err)
			}
			got := pageImages(t, r)
			if len(got) < len(want) {
				t.Fatalf("seed %d round %d pass %d: %d pages after recovery, want %d", seed, round, pass, len(got), len(want))
			}
			for blk := range want {
				if !bytes.Equal(got[blk], want[blk]) {
					i := commonPrefix(got[blk], want[blk])
					t.Fatalf("seed %d round %d pass %d: block %d differs at byte %d after recovery (LSN %v, want %v)",
						seed, round, pass, blk, i, pagecache.Page(got[blk]).LSN(), pagecache.Page(want[blk]).LSN())
				}
			}
			for blk := len(want); blk < len(got); blk++ {
				if !pagecache.Page(got[blk]).IsNew() {
					t.Fatalf("seed %d round %d pass %d: extra block %d is not new", seed, round, pass, blk)
				}
			}
			if err := Check(r.pool, testRel); err != nil {
				t.Fatalf("seed %d round %d pass %d: Check: %v", seed, round, pass, err)
			}
			if pass == 0 {
				// Crash again, keeping a random part of what recovery
				// and the pool wrote, and recover once more.
				next := crashed.Clone()
				r.pool.BgWriterRound()
				r.mustClose(t)
				// Torn pages need full-page writes to be repaired.
				tear := 0.3
				if walCfg.FullPageWrites == base.Off {
					tear = 0
				}
				next.Crash(vfs.CrashOptions{Seed: seed + 1, KeepUnsynced: 0.5, TearProbability: tear})
				crashed = next
				continue
			}
			r.mustClose(t)
		}
	}
}

// TestToastUsesRings checks that writing and reading a 16 MiB value goes
// through rings: the pool's other pages stay cached.
func TestToastUsesRings(t *testing.T) {
	rng := newRand(testSeed(t))
	e := openEnv(t, vfs.NewMemFS(), envConfig{poolPages: 256, wal: xlog.Config{SegmentSize: 16 << 20, WALBuffers: 1 << 20}})
	defer e.mustClose(t)
	// About 40 hot heap pages, read twice so their usage counts are up.
	var tids []base.TID
	for {
		nb, _ := e.h.NBlocks()
		if nb >= 40 {
			break
		}
		xid := e.clog.newXID()
		tid, err := e.h.Insert(xid, []byte(fmt.Sprintf("hot-%d", len(tids))), randBytes(rng, 500), base.InvalidTID)
		if err != nil {
			t.Fatal(err)
		}
		e.clog.set(xid, txn.Committed, true)
		tids = append(tids, tid)
	}
	hot, _ := e.h.NBlocks()
	for range 2 {
		for _, tid := range tids {
			if _, err := e.h.Fetch(tid); err != nil {
				t.Fatal(err)
			}
		}
	}
	cached := func() int {
		n := 0
		for _, bi := range e.pool.Snapshot() {
			if bi.Valid && bi.Tag.Rel == testRel && bi.Tag.Blk < hot {
				n++
			}
		}
		return n
	}
	if n := cached(); n != int(hot) {
		t.Fatalf("%d of %d hot pages cached before", n, hot)
	}
	xid := e.clog.newXID()
	big := randBytes(rng, 16<<20)
	tid, err := e.h.Insert(xid, []byte("big"), big, base.InvalidTID)
	if err != nil {
		t.Fatal(err)
	}
	e.clog.set(xid, txn.Committed, true)
	if n := cached(); n < int(hot)-2 {
		t.Fatalf("writing 16 MiB through a 256-page pool evicted %d of %d hot pages", int(hot)-n, hot)
	}
	f, ok, err := e.h.Get(tid, []byte("big"), snapAll(), nil)
	if err != nil || !ok || !bytes.Equal(f.Value, big) {
		t.Fatalf("Get of the 16 MiB value: ok %v err %v, %d bytes", ok, err, len(f.Value))
	}
	if n := cached(); n < int(hot)-2 {
		t.Fatalf("reading 16 MiB through a 256-page pool evicted %d of %d hot pages", int(hot)-n, hot)
	}
	t.Logf("pool stats: %+v", e.pool.Stats())
}
