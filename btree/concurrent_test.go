package btree

import (
	"bytes"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heapkv/heapkv/internal/vfs"
)

// TestConcurrentInsertScan inserts random keys from 4 goroutines while 2
// more look up and scan, forward and backward, checking what they see as
// they go; then compares the tree with a sorted model and runs Check.
//
//   - small: 1,000,000 keys of 1..64 bytes (100,000 with -short or under
//     the race detector);
//   - mixed: 100,000 keys of mixed sizes up to 1 KiB, so that pages hold
//     few keys and split all the time (20,000 with -short, 15,000 under the
//     race detector).
func TestConcurrentInsertScan(t *testing.T) {
	t.Run("small", func(t *testing.T) {
		n := 1_000_000
		switch {
		case raceEnabled:
			n = 100_000
		case testing.Short():
			n = 100_000
		}
		runConcurrent(t, n, func(rng *rand.Rand) []byte { return randKey(rng, 64) })
	})
	t.Run("mixed", func(t *testing.T) {
		n := 100_000
		switch {
		case raceEnabled:
			n = 15_000
		case testing.Short():
			n = 20_000
		}
		runConcurrent(t, n, func(rng *rand.Rand) []byte {
			switch rng.IntN(3) {
			case 0:
				return randKey(rng, 64)
			case 1:
				return randKey(rng, MaxKeySize)
			}
			return randKey(rng, 400)
		})
	})
}

func runConcurrent(t *testing.T, n int, gen func(*rand.Rand) []byte) {
	const inserters, scanners = 4, 2
	seed := baseSeed(t)
	dir := t.TempDir()
	e := openEnv(t, vfs.Default, dir, 192<<20, bigWAL())
	defer e.close(t)
	tr, err := Create(e.pool, e.wal, testRel)
	if err != nil {
		t.Fatal(err)
	}

	// Each inserter's keys, generated up front; progress[g] is how many of
	// them have been inserted (their Insert returned).
	keys := make([][][]byte, inserters)
	for g := range inserters {
		rng := rand.New(rand.NewPCG(uint64(seed), uint64(g)))
		keys[g] = make([][]byte, n/inserters)
		for i := range keys[g] {
			keys[g][i] = gen(rng)
		}
	}
	var progress [inserters]atomic.Int64
	var insertedTrue atomic.Int64
	var stop atomic.Bool
	var scans, lookups atomic.Int64
	t0 := time.Now()

	var inserting, scanning sync.WaitGroup
	for g := range inserters {
		inserting.Go(func() {
			for i, k := range keys[g] {
				old, ins, err := tr.Insert(k, tidFor(k))
				if err != nil {
					t.Errorf("Insert: %v", err)
					stop.Store(true)
					return
				}
				if ins {
					insertedTrue.Add(1)
				} else if old != tidFor(k) {
					t.Errorf("Insert %x: existing TID %v, want %v", trunc(k), old, tidFor(k))
				}
				progress[g].Store(int64(i + 1))
				if stop.Load() {
					return
				}
			}
		})
	}
	for s := range scanners {
		scanning.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(seed), uint64(100+s)))
			for !stop.Load() {
				if !concurrentProbe(t, tr, rng, keys, &progress) {
					stop.Store(true)
					return
				}
				scans.Add(2)
				lookups.Add(1)
			}
		})
	}
	inserting.Wait()
	stop.Store(true)
	scanning.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("%d inserts by %d goroutines in %v, with %d scans and %d lookups alongside",
		n/inserters*inserters, inserters, time.Since(t0).Round(time.Millisecond), scans.Load(), lookups.Load())

	m := newModel()
	for g := range keys {
		for _, k := range keys[g] {
			m.ReplaceOrInsert(entry{string(k), tidFor(k)})
		}
	}
	if int64(m.Len()) != insertedTrue.Load() {
		t.Fatalf("%d distinct keys, but %d inserts reported inserted", m.Len(), insertedTrue.Load())
	}
	rng := rand.New(rand.NewPCG(uint64(seed), 999))
	checkAgainstModel(t, tr, e.pool, m, rng, 400, 64)
	for range 2000 {
		k := randKey(rng, 70)
		got, ok, err := tr.Lookup(k)
		want, had := m.Get(entry{key: string(k)})
		if err != nil || ok != had || (ok && got != want.tid) {
			t.Fatalf("Lookup %x: %v %v %v, model %v %v", k, got, ok, err, had, want.tid)
		}
	}
	if n := e.pool.PinnedBuffers(); n != 0 {
		t.Fatalf("%d buffers still pinned", n)
	}
}

// concurrentProbe picks a key whose insert has returned and checks that a
// lookup finds it, that a forward scan from it starts with it and a backward
// scan ending just above it starts with it, and that both scans return
// strictly ordered keys with their TIDs within bounds.
func concurrentProbe(t *testing.T, tr *Tree, rng *rand.Rand, keys [][][]byte, progress *[4]atomic.Int64) bool {
	g := rng.IntN(len(keys))
	done := progress[g].Load()
	if done == 0 {
		return true
	}
	k := keys[g][rng.IntN(int(done))]
	if got, ok, err := tr.Lookup(k); err != nil || !ok || got != tidFor(k) {
		t.Errorf("Lookup of inserted key %x: %v %v %v", trunc(k), got, ok, err)
		return false
	}
	var end []byte
	if rng.IntN(2) == 0 {
		end = append(bytes.Clone(k), byte(rng.Uint32()), byte(rng.Uint32()))
	}
	for _, reverse := range []bool{false, true} {
		start := k
		e := end
		if reverse {
			start, e = nil, append(bytes.Clone(k), 0)
			if rng.IntN(2) == 0 {
				start = k[:len(k)/2]
			}
		}
		it := tr.Scan(start, e, reverse)
		var prev []byte
		count := 0
		for count < 300 && it.Next() {
			key := it.Key()
			if count == 0 && !bytes.Equal(key, k) {
				t.Errorf("scan [%x, %x) reverse %v starts at %x, not at the inserted key", trunc(start), trunc(e), reverse, trunc(key))
				return false
			}
			if prev != nil && (bytes.Compare(prev, key) >= 0) != reverse {
				t.Errorf("scan reverse %v: %x after %x", reverse, trunc(key), trunc(prev))
				return false
			}
			if (start != nil && bytes.Compare(key, start) < 0) || (e != nil && bytes.Compare(key, e) >= 0) {
				t.Errorf("scan [%x, %x): key %x out of bounds", trunc(start), trunc(e), trunc(key))
				return false
			}
			if it.TID() != tidFor(key) {
				t.Errorf("scan: key %x has TID %v, want %v", trunc(key), it.TID(), tidFor(key))
				return false
			}
			prev = append(prev[:0], key...)
			count++
		}
		if err := it.Err(); err != nil {
			t.Errorf("scan: %v", err)
			return false
		}
		it.Close()
		if count == 0 {
			t.Errorf("scan [%x, %x) reverse %v is empty, but key %x was inserted", trunc(start), trunc(e), reverse, trunc(k))
			return false
		}
	}
	return true
}
