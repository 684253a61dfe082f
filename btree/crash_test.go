package btree

import (
	"encoding/binary"
	"flag"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/testutil"
	"github.com/heapkv/heapkv/internal/vfs"
)

// TestCrash inserts keys from several goroutines into a small tree with a
// small pool (so pages are evicted and written) and ~1 KiB keys (so leaves
// and internal pages split all the time), flushes the WAL at random points
// and sometimes checkpoints, and at a random moment takes a copy of the
// file system and crashes it: unsynced writes are dropped, kept or torn,
// unsynced directory operations dropped or kept. After recovery on the
// copy, Check must pass, every key whose WAL record was flushed before the
// copy must be there with its TID, every key there must be one that was
// inserted, and the tree must take more inserts (and splits) and pass
// Check again.
func TestCrash(t *testing.T) {
	def := 200
	if raceEnabled {
		def = 50
	}
	testutil.RunCrashSeeds(t, def, runCrash)
}

// crashKey makes writer w's i-th key: a class byte and a long filler shared
// by every key of the class (so separators are long and internal pages split
// too), 8 random bytes (so inserts land all over the tree), the writer and
// sequence number, and a tail up to a random length.
func crashKey(rng *rand.Rand, w, i int) []byte {
	class := rng.IntN(4)
	prefix := []int{0, 200, 600, 900}[class]
	n := prefix + 20 + rng.IntN(MaxKeySize-prefix-20+1)
	if rng.IntN(4) == 0 {
		n = prefix + 20 + rng.IntN(20)
	}
	k := make([]byte, n)
	k[0] = byte(class)
	for j := 1; j <= prefix; j++ {
		k[j] = byte(j*7 + class)
	}
	p := k[prefix+1:]
	binary.BigEndian.PutUint64(p, rng.Uint64())
	p[8] = byte(w)
	binary.BigEndian.PutUint16(p[9:], uint16(i))
	for j := 11; j < len(p); j++ {
		p[j] = byte(j * (w + 1))
	}
	return k
}

var flagCrashVerbose = flag.Bool("crash.v", false, "log what each crash seed did")

type ackedKey struct {
	key []byte
	end base.LSN // end of the insert's WAL record
}

func runCrash(t *testing.T, c testutil.CrashSeed) {
	seed := c.Seed
	rng := rand.New(rand.NewPCG(uint64(seed), 7))
	fs := vfs.NewMemFS()
	poolBytes := (48 + rng.IntN(32)) * 8192
	cfg := smallWAL()
	if rng.IntN(2) == 0 {
		cfg.WALBuffers = 1 << 20 // a long unflushed tail
	}
	flushEvery := []int{3, 20, 200}[rng.IntN(3)]
	e, err := tryOpenEnv(fs, testDir, poolBytes, cfg)
	if err != nil {
		t.Errorf("seed %d: %v", seed, err)
		return
	}
	tr, err := Create(e.pool, e.wal, testRel)
	if err == nil {
		err = e.wal.Flush(e.wal.InsertLSN())
	}
	if err != nil {
		t.Errorf("seed %d: create: %v", seed, err)
		e.close(t)
		return
	}

	writers := 2 + rng.IntN(3)
	var (
		stop  atomic.Bool
		total atomic.Int64
		mu    sync.Mutex
		acked = make([][]ackedKey, writers)
		wg    sync.WaitGroup
		fail  atomic.Bool
	)
	for w := range writers {
		wrng := rand.New(rand.NewPCG(uint64(seed), uint64(1000+w)))
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				k := crashKey(wrng, w, i)
				_, ins, end, err := tr.insert(k, tidFor(k))
				if err != nil || !ins {
					t.Errorf("seed %d: Insert: %v %v", seed, ins, err)
					fail.Store(true)
					return
				}
				mu.Lock()
				acked[w] = append(acked[w], ackedKey{k, end})
				mu.Unlock()
				total.Add(1)
				if wrng.IntN(flushEvery) == 0 {
					if err := e.wal.Flush(e.wal.InsertLSN()); err != nil {
						t.Errorf("seed %d: Flush: %v", seed, err)
						fail.Store(true)
						return
					}
				}
				if i%8 == 7 {
					runtime.Gosched()
				}
			}
		})
	}
	crashAt := int64(30 + rng.IntN(1500))
	// Checkpoints at up to two random points: pages are written and
	// fsynced, the redo point moves, and the next change of each page logs
	// a full-page image.
	var ckpts []int64
	for range rng.IntN(3) {
		ckpts = append(ckpts, int64(rng.IntN(int(crashAt))))
	}
	for total.Load() < crashAt && !fail.Load() {
		for i, at := range ckpts {
			if at >= 0 && total.Load() >= at {
				if err := e.wal.Checkpoint(); err != nil {
					t.Errorf("seed %d: Checkpoint: %v", seed, err)
				}
				ckpts[i] = -1
			}
		}
		runtime.Gosched()
	}
	// The keys whose records are durable now must survive the copy.
	flushed := e.wal.FlushedLSN()
	var durable [][]byte
	mu.Lock()
	for w := range acked {
		for _, a := range acked[w] {
			if a.end <= flushed {
				durable = append(durable, a.key)
			}
		}
	}
	mu.Unlock()
	crashed := fs.Clone()
	stop.Store(true)
	wg.Wait()
	inserted := map[string]ackedKey{}
	for w := range acked {
		for _, a := range acked[w] {
			inserted[string(a.key)] = a
		}
	}
	evictions := e.pool.Stats().Evictions
	e.close(t)
	if t.Failed() {
		return
	}

	crashed.Crash(c.Options(0))
	e, err = tryOpenEnv(crashed, testDir, poolBytes, cfg)
	if err != nil {
		t.Errorf("seed %d: reopen after crash: %v", seed, err)
		return
	}
	defer e.close(t)
	if tr, err = Open(e.pool, e.wal, testRel); err != nil {
		t.Errorf("seed %d: Open after crash: %v", seed, err)
		return
	}
	if err := Check(e.pool, testRel); err != nil {
		t.Errorf("seed %d: Check after crash: %v", seed, err)
		return
	}
	for _, k := range durable {
		if got, ok, err := tr.Lookup(k); err != nil || !ok || got != tidFor(k) {
			t.Errorf("seed %d: durable key %x lost after crash: %v %v %v (%d durable keys, flushed to %s)",
				seed, trunc(k), got, ok, err, len(durable), flushed)
			return
		}
	}
	all, err := collect(tr, nil, nil, false, 0)
	if err != nil {
		t.Errorf("seed %d: scan after crash: %v", seed, err)
		return
	}
	// Every key there was inserted, and its record was not lost: a key
	// whose record ends past the recovered end of the log can only be there
	// if a page reached the disk before its WAL (WAL before data).
	walEnd := e.recovered.End.LSN
	for _, en := range all {
		a, ok := inserted[en.key]
		if !ok || en.tid != tidFor([]byte(en.key)) {
			t.Errorf("seed %d: key %x (TID %v) after crash was never inserted", seed, trunc([]byte(en.key)), en.tid)
			return
		}
		if a.end > walEnd {
			t.Errorf("seed %d: key %x is in the tree, but its WAL record (ending at %s) is past the recovered end %s",
				seed, trunc([]byte(en.key)), a.end, walEnd)
			return
		}
	}
	if len(all) < len(durable) {
		t.Errorf("seed %d: %d keys after crash, %d were durable", seed, len(all), len(durable))
		return
	}

	if *flagCrashVerbose {
		nb, _ := e.pool.Storage().NBlocks(testRel)
		_, lvl := tr.rootInfo()
		t.Logf("seed %d: writers %d, inserted %d, durable %d, after recovery %d keys in %d blocks, root level %d, evictions before the crash %d",
			seed, writers, total.Load(), len(durable), len(all), nb, lvl, evictions)
	}
	// The recovered tree goes on: more inserts, more splits, new pages.
	for i := range 60 {
		k := crashKey(rng, 9, i)
		if _, _, err := tr.Insert(k, tidFor(k)); err != nil {
			t.Errorf("seed %d: Insert after recovery: %v", seed, err)
			return
		}
	}
	if err := Check(e.pool, testRel); err != nil {
		t.Errorf("seed %d: Check after inserts following recovery: %v", seed, err)
		return
	}
}

// TestCheckpointDuringInserts runs checkpoints back to back while
// goroutines insert, then flushes the WAL and crashes, keeping nothing that
// was not synced. Every key must be there. A change whose page was marked
// dirty only after its WAL record was inserted can fall between a
// checkpoint's redo point and its collection of dirty buffers: neither
// written by the checkpoint nor replayed after it.
func TestCheckpointDuringInserts(t *testing.T) {
	seed := baseSeed(t)
	rounds := 6
	if testing.Short() || raceEnabled {
		rounds = 2
	}
	for round := range rounds {
		fs := vfs.NewMemFS()
		e := openEnv(t, fs, testDir, 128*8192, smallWAL())
		tr, err := Create(e.pool, e.wal, testRel)
		if err != nil {
			t.Fatal(err)
		}
		var stop atomic.Bool
		var ckpts atomic.Int64
		var wg, ckptWG sync.WaitGroup
		keys := make([][][]byte, 3)
		for w := range keys {
			rng := rand.New(rand.NewPCG(uint64(seed), uint64(round*10+w)))
			wg.Go(func() {
				for i := range 1500 {
					k := randKey(rng, 200)
					if i%2 == 0 {
						k = crashKey(rng, w, i)
					}
					if _, _, err := tr.Insert(k, tidFor(k)); err != nil {
						t.Error(err)
						return
					}
					keys[w] = append(keys[w], k)
				}
			})
		}
		ckptWG.Go(func() {
			for !stop.Load() {
				if err := e.wal.Checkpoint(); err != nil {
					t.Error(err)
					return
				}
				ckpts.Add(1)
			}
		})
		wg.Wait()
		stop.Store(true)
		ckptWG.Wait()
		if err := e.wal.Flush(e.wal.InsertLSN()); err != nil {
			t.Fatal(err)
		}
		crashed := fs.Clone()
		e.close(t)
		crashed.Crash(vfs.CrashOptions{Seed: seed + int64(round)})
		e = openEnv(t, crashed, testDir, 128*8192, smallWAL())
		if tr, err = Open(e.pool, e.wal, testRel); err != nil {
			t.Fatal(err)
		}
		if err := Check(e.pool, testRel); err != nil {
			t.Fatalf("round %d (%d checkpoints): %v", round, ckpts.Load(), err)
		}
		for w := range keys {
			for _, k := range keys[w] {
				if got, ok, err := tr.Lookup(k); err != nil || !ok || got != tidFor(k) {
					t.Fatalf("round %d (%d checkpoints): key %x lost: %v %v %v", round, ckpts.Load(), trunc(k), got, ok, err)
				}
			}
		}
		e.close(t)
	}
}
