package heap

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/vfs"
	"github.com/heapkv/heapkv/txn"
)

// TestFreeSpaceFoundAgain fills a relation of about 40 pages in which a
// third of the rows were inserted by transactions that aborted, prunes
// every page, and checks that new rows go into the freed space before the
// relation grows: first at once, then after a checkpoint and a restart, when
// the free space map must come back from its file without pages being read
// (pool stats), and without wasted visits. Finally, without the file, the
// map starts from unknown entries and inserts still fill the relation
// before it grows, at the price of wasted visits.
func TestFreeSpaceFoundAgain(t *testing.T) {
	seed := testSeed(t)
	rng := newRand(seed)
	fs := vfs.NewMemFS()
	e := openEnv(t, fs, envConfig{poolPages: 128})
	type row struct {
		key, value []byte
		tid        base.TID
	}
	var rows []row
	seq := 0
	insert := func(e *env, abort bool) int {
		t.Helper()
		xid := e.clog.newXID()
		key := []byte(fmt.Sprintf("row-%06d", seq))
		seq++
		value := randBytes(rng, 100+rng.IntN(400))
		tid, err := e.h.Insert(xid, key, value, base.InvalidTID)
		if err != nil {
			t.Fatalf("seed %d: Insert: %v", seed, err)
		}
		if abort {
			e.clog.set(xid, txn.Aborted, true)
		} else {
			e.clog.set(xid, txn.Committed, true)
			rows = append(rows, row{key, value, tid})
		}
		return align8(tupleHeaderSize+len(key)+len(value)) + lpSize
	}
	for {
		nb, _ := e.h.NBlocks()
		if nb >= 40 {
			break
		}
		insert(e, rng.IntN(3) == 0)
	}
	nblocks, _ := e.h.NBlocks()
	freed := 0
	for blk := range nblocks {
		res, err := e.h.Prune(blk)
		if err != nil || res.Busy {
			t.Fatalf("seed %d: Prune(%d) = %+v, %v", seed, blk, res, err)
		}
		freed += res.Freed
	}
	t.Logf("seed %d: %d pages, %d bytes freed by pruning", seed, nblocks, freed)
	if freed < 40*1000 {
		t.Fatalf("seed %d: pruning freed only %d bytes", seed, freed)
	}

	fill := func(e *env, budget int, when string) {
		t.Helper()
		before := e.h.Stats()
		used := 0
		for used < budget {
			used += insert(e, false)
		}
		after := e.h.Stats()
		if nb, _ := e.h.NBlocks(); nb != nblocks || after.Extends != before.Extends {
			t.Fatalf("seed %d: %s: the relation grew from %d to %d pages with %d bytes free", seed, when, nblocks, nb, freed)
		}
		t.Logf("%s: %d bytes inserted into freed space; FSM visits %d, misses %d",
			when, used, after.FSMVisits-before.FSMVisits, after.FSMMisses-before.FSMMisses)
	}
	fill(e, freed/3, "before restart")

	// Checkpoint (its hook saves the map), shut down, start afresh.
	if err := e.wal.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	if st := e.h.Stats(); st.FSMSaves == 0 {
		t.Fatalf("seed %d: the checkpoint did not save the free space map", seed)
	}
	indexed := e.h.Stats().FSMIndexed
	e.mustClose(t)
	e = openEnv(t, fs, envConfig{poolPages: 128, clog: e.clog})
	ps := e.pool.Stats()
	st := e.h.Stats()
	if ps.Reads*10 > uint64(nblocks) {
		t.Fatalf("seed %d: opening read %d of %d pages", seed, ps.Reads, nblocks)
	}
	if st.FSMIndexed != indexed || st.FSMPages != int(nblocks) {
		t.Fatalf("seed %d: free space map after restart indexes %d of %d pages, want %d of %d", seed, st.FSMIndexed, st.FSMPages, indexed, nblocks)
	}
	t.Logf("after restart: %d page reads at open for %d pages; map of %d pages, %d indexed, %d bytes", ps.Reads, nblocks, st.FSMPages, st.FSMIndexed, st.FSMBytes)
	fill(e, freed/3, "after restart")
	if st := e.h.Stats(); st.FSMMisses > 2 {
		t.Fatalf("seed %d: %d wasted visits with a saved map", seed, st.FSMMisses)
	}

	// Without the file every page is an unknown entry; inserts still find
	// the space, after some wasted visits.
	e.mustClose(t)
	if err := fs.Remove(testDir + "/base/16384_fsm"); err != nil {
		t.Fatal(err)
	}
	e = openEnv(t, fs, envConfig{poolPages: 128, clog: e.clog})
	defer e.mustClose(t)
	if st := e.h.Stats(); st.FSMIndexed != int(nblocks) {
		t.Fatalf("seed %d: without a file the map indexes %d of %d pages", seed, st.FSMIndexed, nblocks)
	}
	fill(e, freed/6, "without a map file")
	for _, r := range rows {
		tup, err := e.h.Fetch(r.tid)
		if err != nil || !bytes.Equal(tup.Key, r.key) || !bytes.Equal(tup.Value, r.value) {
			t.Fatalf("seed %d: row %q at %v: %v", seed, r.key, r.tid, err)
		}
	}
	if err := Check(e.pool, testRel); err != nil {
		t.Fatalf("seed %d: Check: %v", seed, err)
	}
}

// TestFSMIndex checks the map against a naive scan of what it was told.
func TestFSMIndex(t *testing.T) {
	seed := testSeed(t)
	rng := newRand(seed)
	f := newFSM()
	type state struct {
		toast bool
		free  int
	}
	truth := map[base.BlockNum]state{}
	for range 20000 {
		blk := base.BlockNum(rng.IntN(500))
		switch rng.IntN(10) {
		case 0:
			f.forget(blk)
			delete(truth, blk)
		default:
			s := state{rng.IntN(4) == 0, rng.IntN(maxTupleSpace + 1)}
			f.set(blk, s.toast, s.free)
			truth[blk] = s
		}
		toast := rng.IntN(3) == 0
		need := 8 * (1 + rng.IntN(maxTupleSpace/8))
		got, ok := f.find(toast, need)
		// The naive answer: the least category that surely fits, lowest
		// block among those.
		best, bestOK := base.BlockNum(0), false
		bestCat := uint8(255)
		for b, s := range truth {
			c := category(s.free)
			if s.toast != toast || c == 0 || int(c)*fsmUnit < need {
				continue
			}
			if c < bestCat || (c == bestCat && b < best) {
				best, bestCat, bestOK = b, c, true
			}
		}
		if ok != bestOK || (ok && got != best) {
			t.Fatalf("seed %d: find(toast=%v, %d) = %d %v, want %d %v", seed, toast, need, got, ok, best, bestOK)
		}
		if ok && truth[got].free < need {
			t.Fatalf("seed %d: find offered block %d with %d free for %d", seed, got, truth[got].free, need)
		}
	}
	// A saved map loads back the same.
	g := newFSM()
	n := base.BlockNum(len(f.mu.pages))
	if !g.load(f.encode(), n) || !bytes.Equal(g.mu.pages, f.mu.pages) || g.mu.tree.Len() != f.mu.tree.Len() {
		t.Fatalf("seed %d: saved map does not load back", seed)
	}
	// A damaged one is refused and leaves unknown entries.
	img := f.encode()
	img[len(img)/2] ^= 1
	h := newFSM()
	if h.load(img, n) || h.mu.tree.Len() != int(n) {
		t.Fatalf("seed %d: damaged map accepted", seed)
	}
}
