package btree

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/vfs"
	"github.com/heapkv/heapkv/pagecache"
)

func newTestTree(t *testing.T, poolPages int) (*env, *Tree) {
	t.Helper()
	e := openEnv(t, vfs.NewMemFS(), testDir, poolPages*8192, smallWAL())
	tr, err := Create(e.pool, e.wal, testRel)
	if err != nil {
		t.Fatal(err)
	}
	return e, tr
}

func TestBasic(t *testing.T) {
	e, tr := newTestTree(t, 64)
	defer e.close(t)

	tid1 := base.TID{Block: 1, Offset: 1}
	tid2 := base.TID{Block: 2, Offset: 2}
	tid3 := base.TID{Block: 3, Offset: 3}
	if _, ok, err := tr.Lookup([]byte("a")); err != nil || ok {
		t.Fatalf("Lookup in an empty tree: %v %v", ok, err)
	}
	if _, ins, err := tr.Insert([]byte("a"), tid1); err != nil || !ins {
		t.Fatalf("Insert: %v %v", ins, err)
	}
	if old, ins, err := tr.Insert([]byte("a"), tid2); err != nil || ins || old != tid1 {
		t.Fatalf("second Insert of a key: existing %v inserted %v err %v", old, ins, err)
	}
	if got, ok, err := tr.Lookup([]byte("a")); err != nil || !ok || got != tid1 {
		t.Fatalf("Lookup: %v %v %v", got, ok, err)
	}

	// Repoint is a compare-and-swap on the TID.
	if ok, err := tr.Repoint([]byte("a"), tid2, tid3); err != nil || ok {
		t.Fatalf("Repoint from a wrong TID: %v %v", ok, err)
	}
	if ok, err := tr.Repoint([]byte("b"), tid1, tid3); err != nil || ok {
		t.Fatalf("Repoint of an absent key: %v %v", ok, err)
	}
	if ok, err := tr.Repoint([]byte("a"), tid1, tid2); err != nil || !ok {
		t.Fatalf("Repoint: %v %v", ok, err)
	}
	if got, _, _ := tr.Lookup([]byte("a")); got != tid2 {
		t.Fatalf("after Repoint: %v", got)
	}
	if ok, err := tr.Repoint([]byte("a"), tid2, tid2); err != nil || !ok {
		t.Fatalf("Repoint to the same TID: %v %v", ok, err)
	}

	// Delete only if the entry still points at the TID.
	if ok, err := tr.Delete([]byte("a"), tid1); err != nil || ok {
		t.Fatalf("Delete with a stale TID: %v %v", ok, err)
	}
	if ok, err := tr.Delete([]byte("zz"), tid1); err != nil || ok {
		t.Fatalf("Delete of an absent key: %v %v", ok, err)
	}
	if ok, err := tr.Delete([]byte("a"), tid2); err != nil || !ok {
		t.Fatalf("Delete: %v %v", ok, err)
	}
	if _, ok, _ := tr.Lookup([]byte("a")); ok {
		t.Fatal("deleted key still found")
	}
	if _, ins, err := tr.Insert([]byte("a"), tid3); err != nil || !ins {
		t.Fatalf("Insert after Delete: %v %v", ins, err)
	}

	// Bad input changes nothing.
	big := bytes.Repeat([]byte("k"), MaxKeySize+1)
	if _, _, err := tr.Insert(big, tid1); !errors.Is(err, ErrKeyTooLarge) {
		t.Fatalf("Insert of a %d-byte key: %v", len(big), err)
	}
	if _, _, err := tr.Lookup(big); !errors.Is(err, ErrKeyTooLarge) {
		t.Fatalf("Lookup of a %d-byte key: %v", len(big), err)
	}
	if _, _, err := tr.Insert(nil, tid1); !errors.Is(err, ErrEmptyKey) {
		t.Fatalf("Insert of an empty key: %v", err)
	}
	if _, _, err := tr.Insert([]byte("x"), base.InvalidTID); !errors.Is(err, ErrInvalidTID) {
		t.Fatalf("Insert of an invalid TID: %v", err)
	}
	if ok, err := tr.Repoint([]byte("a"), tid3, base.TID{Block: 1}); !errors.Is(err, ErrInvalidTID) || ok {
		t.Fatalf("Repoint to an invalid TID: %v %v", ok, err)
	}
	if _, err := Create(e.pool, e.wal, testRel); !errors.Is(err, ErrRelationExists) {
		t.Fatalf("Create over an existing tree: %v", err)
	}
	if err := Check(e.pool, testRel); err != nil {
		t.Fatal(err)
	}
}

func TestScanBounds(t *testing.T) {
	e, tr := newTestTree(t, 64)
	defer e.close(t)
	m := newModel()
	for i := range 3000 {
		k := []byte{byte('a' + i%26), byte(i / 26 % 256), byte(i / 26 / 256)}
		if _, ins, err := tr.Insert(k, tidFor(k)); err != nil || !ins {
			t.Fatalf("Insert %x: %v %v", k, ins, err)
		}
		m.ReplaceOrInsert(entry{string(k), tidFor(k)})
	}
	cases := []struct{ start, end string }{
		{"", ""}, {"a", "b"}, {"b", "b"}, {"c", "b"}, {"m\x05", "m\x06"}, {"zz", ""}, {"", "a"},
		{"", "a\x00\x01"}, {"q", ""}, {"z\xff\xff", ""},
	}
	for _, c := range cases {
		var start, end []byte
		if c.start != "" {
			start = []byte(c.start)
		}
		if c.end != "" {
			end = []byte(c.end)
		}
		for _, rev := range []bool{false, true} {
			got, err := collect(tr, start, end, rev, 0)
			if err != nil {
				t.Fatal(err)
			}
			if d := diffEntries(modelRange(m, start, end, rev, 0), got); d != "" {
				t.Errorf("scan [%q, %q) reverse %v: %s", c.start, c.end, rev, d)
			}
		}
	}
	// An iterator may stop early and be closed twice.
	it := tr.Scan(nil, nil, false)
	it.Next()
	it.Close()
	if it.Next() || it.Close() != nil {
		t.Fatal("iterator usable after Close")
	}
	if n := e.pool.PinnedBuffers(); n != 0 {
		t.Fatalf("%d buffers still pinned", n)
	}
}

// TestMaxKeys fills a tree with keys of the maximum size only: a page holds
// seven, so every few inserts split, and internal pages split too.
func TestMaxKeys(t *testing.T) {
	e, tr := newTestTree(t, 256)
	defer e.close(t)
	rng := rand.New(rand.NewPCG(uint64(baseSeed(t)), 1))
	m := newModel()
	n := 3000
	if testing.Short() || raceEnabled {
		n = 600
	}
	for i := range n {
		k := make([]byte, MaxKeySize)
		binary.BigEndian.PutUint64(k, rng.Uint64())
		if i%3 == 0 {
			binary.BigEndian.PutUint64(k, uint64(i)) // some ascending runs
		}
		if _, ins, err := tr.Insert(k, tidFor(k)); err != nil {
			t.Fatal(err)
		} else if ins {
			m.ReplaceOrInsert(entry{string(k), tidFor(k)})
		}
	}
	checkAgainstModel(t, tr, e.pool, m, rng, 50, 16)
}

// TestRandomOps applies a random mix of operations to the tree and to a
// model, single-threaded, and compares them throughout: inserts, deletes
// (down to empty leaves), repoints, lookups and scans.
func TestRandomOps(t *testing.T) {
	seed := baseSeed(t)
	for _, maxLen := range []int{16, 300, MaxKeySize} {
		rng := rand.New(rand.NewPCG(uint64(seed), uint64(maxLen)))
		e, tr := newTestTree(t, 128)
		m := newModel()
		var keys [][]byte
		ops := 20000
		if testing.Short() || raceEnabled {
			ops = 4000
		}
		for i := range ops {
			switch r := rng.IntN(100); {
			case r < 50 || len(keys) == 0:
				k := randKey(rng, maxLen)
				tid := base.TID{Block: base.BlockNum(i), Offset: 1}
				old, ins, err := tr.Insert(k, tid)
				if err != nil {
					t.Fatal(err)
				}
				cur, had := m.Get(entry{key: string(k)})
				if ins == had || (had && old != cur.tid) {
					t.Fatalf("maxLen %d op %d: Insert %x: inserted %v existing %v, model has %v %v", maxLen, i, trunc(k), ins, old, had, cur.tid)
				}
				if ins {
					m.ReplaceOrInsert(entry{string(k), tid})
					keys = append(keys, k)
				}
			case r < 70:
				j := rng.IntN(len(keys))
				k := keys[j]
				cur, had := m.Get(entry{key: string(k)})
				tid := cur.tid
				if rng.IntN(4) == 0 {
					tid.Offset++ // a stale TID: must not delete
				}
				ok, err := tr.Delete(k, tid)
				if err != nil {
					t.Fatal(err)
				}
				if ok != (had && tid == cur.tid) {
					t.Fatalf("maxLen %d op %d: Delete %x: %v, model has %v %v", maxLen, i, trunc(k), ok, had, cur.tid)
				}
				if ok {
					m.Delete(cur)
					keys[j] = keys[len(keys)-1]
					keys = keys[:len(keys)-1]
				}
			case r < 85:
				k := keys[rng.IntN(len(keys))]
				cur, _ := m.Get(entry{key: string(k)})
				old := cur.tid
				if rng.IntN(4) == 0 {
					old.Block++
				}
				nt := base.TID{Block: base.BlockNum(i), Offset: 2}
				ok, err := tr.Repoint(k, old, nt)
				if err != nil {
					t.Fatal(err)
				}
				if ok != (old == cur.tid) {
					t.Fatalf("maxLen %d op %d: Repoint %x from %v: %v, model has %v", maxLen, i, trunc(k), old, ok, cur.tid)
				}
				if ok {
					m.ReplaceOrInsert(entry{string(k), nt})
				}
			case r < 97:
				k := randKey(rng, maxLen)
				if len(keys) > 0 && rng.IntN(2) == 0 {
					k = keys[rng.IntN(len(keys))]
				}
				got, ok, err := tr.Lookup(k)
				cur, had := m.Get(entry{key: string(k)})
				if err != nil || ok != had || (had && got != cur.tid) {
					t.Fatalf("maxLen %d op %d: Lookup %x: %v %v %v, model has %v %v", maxLen, i, trunc(k), got, ok, err, had, cur.tid)
				}
			default:
				start, end := randBound(rng, keys, maxLen), randBound(rng, keys, maxLen)
				rev := rng.IntN(2) == 0
				got, err := collect(tr, start, end, rev, 100)
				if err != nil {
					t.Fatal(err)
				}
				if d := diffEntries(modelRange(m, start, end, rev, 100), got); d != "" {
					t.Fatalf("maxLen %d op %d: scan [%x, %x) reverse %v: %s", maxLen, i, trunc(start), trunc(end), rev, d)
				}
			}
		}
		checkAgainstModel(t, tr, e.pool, m, rng, 100, maxLen)
		// Delete everything: the leaves stay, empty, and the tree stays valid.
		for _, k := range keys {
			cur, _ := m.Get(entry{key: string(k)})
			if ok, err := tr.Delete(k, cur.tid); err != nil || !ok {
				t.Fatalf("Delete %x: %v %v", trunc(k), ok, err)
			}
			m.Delete(cur)
		}
		checkAgainstModel(t, tr, e.pool, m, rng, 10, maxLen)
		if n := e.pool.PinnedBuffers(); n != 0 {
			t.Fatalf("%d buffers still pinned", n)
		}
		e.close(t)
	}
}

// TestReopen closes a tree cleanly and, separately, abandons it after a
// WAL flush (a crash that loses only what was not durable, here nothing):
// both must come back with the same content.
func TestReopen(t *testing.T) {
	rng := rand.New(rand.NewPCG(uint64(baseSeed(t)), 3))
	fs := vfs.NewMemFS()
	e := openEnv(t, fs, testDir, 64*8192, smallWAL())
	tr, err := Create(e.pool, e.wal, testRel)
	if err != nil {
		t.Fatal(err)
	}
	m := newModel()
	var keys [][]byte
	step := func(n int) {
		for range n {
			k := randKey(rng, 400)
			if _, ins, err := tr.Insert(k, tidFor(k)); err != nil {
				t.Fatal(err)
			} else if ins {
				m.ReplaceOrInsert(entry{string(k), tidFor(k)})
				keys = append(keys, k)
			}
			if rng.IntN(10) == 0 && len(keys) > 0 {
				k := keys[rng.IntN(len(keys))]
				cur, ok := m.Get(entry{key: string(k)})
				if !ok {
					continue
				}
				if rng.IntN(2) == 0 {
					nt := base.TID{Block: cur.tid.Block + 1, Offset: cur.tid.Offset}
					if ok, err := tr.Repoint(k, cur.tid, nt); err != nil || !ok {
						t.Fatal(ok, err)
					}
					m.ReplaceOrInsert(entry{string(k), nt})
				} else {
					if ok, err := tr.Delete(k, cur.tid); err != nil || !ok {
						t.Fatal(ok, err)
					}
					m.Delete(cur)
				}
			}
		}
	}
	step(2000)
	e.close(t)

	// Clean restart.
	e = openEnv(t, fs, testDir, 64*8192, smallWAL())
	if tr, err = Open(e.pool, e.wal, testRel); err != nil {
		t.Fatal(err)
	}
	checkAgainstModel(t, tr, e.pool, m, rng, 20, 400)
	step(2000)
	if err := e.wal.Flush(e.wal.InsertLSN()); err != nil {
		t.Fatal(err)
	}
	// Crash: everything up to the flush is durable; nothing else is kept.
	crashed := fs.Clone()
	e.close(t)
	crashed.Crash(vfs.CrashOptions{Seed: 1})
	e = openEnv(t, crashed, testDir, 64*8192, smallWAL())
	defer e.close(t)
	if tr, err = Open(e.pool, e.wal, testRel); err != nil {
		t.Fatal(err)
	}
	checkAgainstModel(t, tr, e.pool, m, rng, 20, 400)
	// The recovered tree takes new splits (new pages past the recovered
	// end of the relation).
	step(1000)
	checkAgainstModel(t, tr, e.pool, m, rng, 20, 400)
}

// TestRacingUniqueInserts has many goroutines insert the same keys, each
// with its own TIDs and in its own order: every key ends up once, exactly
// one inserter per key is told it inserted, and every other inserter is told
// the winner's TID.
func TestRacingUniqueInserts(t *testing.T) {
	seed := baseSeed(t)
	const goroutines = 8
	nkeys := 3000
	rounds := 3
	if testing.Short() || raceEnabled {
		nkeys, rounds = 800, 2
	}
	for round := range rounds {
		rng := rand.New(rand.NewPCG(uint64(seed), uint64(round)))
		e, tr := newTestTree(t, 512)
		keys := make([][]byte, nkeys)
		for i := range keys {
			maxLen := 32
			if round%2 == 1 || i%4 == 0 {
				maxLen = MaxKeySize // big keys: splits under the race
			}
			keys[i] = append(binary.BigEndian.AppendUint32(nil, uint32(i)), randKey(rng, maxLen-4)...)
		}
		winners := make([]atomic.Int32, nkeys) // goroutine+1 that inserted
		results := make([][]base.TID, goroutines)
		var wg sync.WaitGroup
		for g := range goroutines {
			order := rng.Perm(nkeys)
			results[g] = make([]base.TID, nkeys)
			wg.Go(func() {
				for _, i := range order {
					tid := base.TID{Block: base.BlockNum(g), Offset: uint16(i%60000) + 1}
					old, ins, err := tr.Insert(keys[i], tid)
					if err != nil {
						t.Error(err)
						return
					}
					if ins {
						if !winners[i].CompareAndSwap(0, int32(g+1)) {
							t.Errorf("key %d inserted by goroutines %d and %d", i, winners[i].Load()-1, g)
						}
						old = tid
					}
					results[g][i] = old
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		for i := range nkeys {
			w := int(winners[i].Load()) - 1
			if w < 0 {
				t.Fatalf("round %d: key %d inserted by nobody", round, i)
			}
			want := base.TID{Block: base.BlockNum(w), Offset: uint16(i%60000) + 1}
			for g := range goroutines {
				if results[g][i] != want {
					t.Fatalf("round %d: key %d: goroutine %d saw %v, the winner %d inserted %v", round, i, g, results[g][i], w, want)
				}
			}
			if got, ok, err := tr.Lookup(keys[i]); err != nil || !ok || got != want {
				t.Fatalf("round %d: key %d: Lookup %v %v %v, want %v", round, i, got, ok, err, want)
			}
		}
		all, err := collect(tr, nil, nil, false, 0)
		if err != nil || len(all) != nkeys {
			t.Fatalf("round %d: %d entries (%v), want %d", round, len(all), err, nkeys)
		}
		if err := Check(e.pool, testRel); err != nil {
			t.Fatal(err)
		}
		e.close(t)
	}
}

// TestRacingRepoint has goroutines race compare-and-swaps on a few keys:
// each reads the TID, then repoints it to the next one. The number of
// successful swaps per key must equal how far its TID moved, so no swap
// was lost or doubled.
func TestRacingRepoint(t *testing.T) {
	e, tr := newTestTree(t, 64)
	defer e.close(t)
	const keys, goroutines = 5, 6
	iters := 3000
	if testing.Short() || raceEnabled {
		iters = 500
	}
	for k := range keys {
		if _, _, err := tr.Insert([]byte{byte(k)}, base.TID{Block: 0, Offset: 1}); err != nil {
			t.Fatal(err)
		}
	}
	var wins [keys]int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range iters {
				k := []byte{byte((g + i) % keys)}
				cur, ok, err := tr.Lookup(k)
				if err != nil || !ok {
					t.Error(ok, err)
					return
				}
				ok, err = tr.Repoint(k, cur, base.TID{Block: cur.Block + 1, Offset: 1})
				if err != nil {
					t.Error(err)
					return
				}
				if ok {
					mu.Lock()
					wins[k[0]]++
					mu.Unlock()
				}
				// Deletes that must fail: the TID is never Offset 2.
				if ok, err := tr.Delete(k, base.TID{Block: cur.Block, Offset: 2}); err != nil || ok {
					t.Error("Delete with a wrong TID succeeded", err)
					return
				}
			}
		})
	}
	wg.Wait()
	for k := range keys {
		got, _, _ := tr.Lookup([]byte{byte(k)})
		if int64(got.Block) != wins[k] {
			t.Errorf("key %d: TID moved to %v, but %d swaps succeeded", k, got, wins[k])
		}
	}
}

// TestUnlogged runs a tree without a WAL (a temporary relation): it works
// the same and its pages carry no LSN.
func TestUnlogged(t *testing.T) {
	fs := vfs.NewMemFS()
	smgr, err := pagecache.OpenStorage(fs, testDir)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pagecache.NewPool(smgr, pagecache.Config{SharedBuffers: 64 * 8192})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	tr, err := Create(pool, nil, testRel)
	if err != nil {
		t.Fatal(err)
	}
	rng := newRand(t)
	m := newModel()
	for range 3000 {
		k := randKey(rng, 300)
		if _, ins, err := tr.Insert(k, tidFor(k)); err != nil {
			t.Fatal(err)
		} else if ins {
			m.ReplaceOrInsert(entry{string(k), tidFor(k)})
		}
	}
	checkAgainstModel(t, tr, pool, m, rng, 20, 300)
	if tr2, err := Open(pool, nil, testRel); err != nil {
		t.Fatal(err)
	} else if err := Check(pool, tr2.Rel()); err != nil {
		t.Fatal(err)
	}
}
