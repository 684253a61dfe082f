package xlog

import (
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/testutil"
	"github.com/heapkv/heapkv/internal/vfs"
)

const crashWriters = 8

// ack is a record whose Flush returned nil.
type ack struct {
	round, seq int
	start      base.LSN
}

// TestCrash runs 8 writers that insert and flush records on a MemFS, and
// at a random moment takes a copy of the file system and crashes it (drops
// or tears unsynced writes, drops unsynced directory operations). After
// reopening the crashed copy and recovering, every record whose Flush had
// returned before the copy was taken must be there, each writer's records
// in order, in a chain the reader accepted (CRCs and prev links). Each seed
// runs three crash/recover rounds on the same lineage, so new records
// overwrite a recovered tail, and some seeds checkpoint in between.
func TestCrash(t *testing.T) {
	testutil.RunCrashSeeds(t, defaultCrashSeeds, runCrash)
}

func runCrash(t *testing.T, cs testutil.CrashSeed) {
	seed := cs.Seed
	rng := rand.New(rand.NewPCG(uint64(seed), 99))
	fs := vfs.NewMemFS()
	cfg := smallConfig()
	if rng.IntN(2) == 0 {
		cfg.WALBuffers = 128 << 10
	}
	cfg.WALCompression = Compression(rng.IntN(3))
	checkpoints := rng.IntN(3) == 0

	var acked [crashWriters][]ack // everything acknowledged, over all rounds
	for round := range 3 {
		l, c, res := openLogCrash(t, fs, cfg)
		if l == nil {
			return
		}
		if !verifyCrash(t, seed, round, c, res, &acked) {
			l.Close()
			return
		}

		// Writers insert and flush until told to stop.
		var (
			stop    atomic.Bool
			mu      sync.Mutex
			wg      sync.WaitGroup
			count   atomic.Int64
			pending [crashWriters][]ack
		)
		for w := range crashWriters {
			wrng := rand.New(rand.NewPCG(uint64(seed), uint64(round*100+w)))
			wg.Go(func() {
				for seq := 0; !stop.Load(); seq++ {
					fill := wrng.IntN(300)
					if wrng.IntN(20) == 0 {
						fill = wrng.IntN(100_000) // wraps the ring, crosses segments
					}
					start, end, err := l.Insert(NewRecord(rmgrTest, 0, base.XID(w+1)).SetPayload(taggedPayload(w, round, seq, fill)))
					if err != nil {
						t.Errorf("seed %d: Insert: %v", seed, err)
						return
					}
					count.Add(1)
					if wrng.IntN(4) == 0 {
						continue // not every record is flushed on its own
					}
					if err := l.Flush(end); err != nil {
						t.Errorf("seed %d: Flush: %v", seed, err)
						return
					}
					mu.Lock()
					pending[w] = append(pending[w], ack{round, seq, start})
					mu.Unlock()
				}
			})
		}
		target := int64(20 + rng.IntN(200))
		ckptAt := int64(-1)
		if checkpoints {
			ckptAt = target / 2
		}
		for count.Load() < target {
			if ckptAt >= 0 && count.Load() >= ckptAt {
				if err := l.Checkpoint(); err != nil {
					t.Errorf("seed %d: Checkpoint: %v", seed, err)
				}
				ckptAt = -1
			}
			runtime.Gosched()
		}
		// What was acknowledged before the copy must survive it.
		mu.Lock()
		var snap [crashWriters][]ack
		for w := range pending {
			snap[w] = append([]ack(nil), pending[w]...)
		}
		mu.Unlock()
		crashed := fs.Clone()
		stop.Store(true)
		wg.Wait()
		l.Close()
		if t.Failed() {
			return
		}
		for w := range snap {
			acked[w] = append(acked[w], snap[w]...)
		}
		crashed.Crash(cs.Options(round))
		fs = crashed
	}
	l, c, res := openLogCrash(t, fs, cfg)
	if l == nil {
		return
	}
	defer l.Close()
	verifyCrash(t, seed, 3, c, res, &acked)
}

func openLogCrash(t *testing.T, fs vfs.FS, cfg Config) (*Log, *collector, RecoveryResult) {
	l, err := Open(fs, testDir, cfg)
	if err != nil {
		t.Errorf("Open: %v", err)
		return nil, nil, RecoveryResult{}
	}
	c := &collector{}
	l.RegisterRmgr(rmgrTest, "test", c.redo)
	res, err := l.Recover(nil)
	if err != nil {
		t.Errorf("Recover: %v", err)
		l.Close()
		return nil, nil, RecoveryResult{}
	}
	return l, c, res
}

// verifyCrash checks the replayed records against the acknowledged ones:
// every acknowledged record at or after the redo point is there, and each
// writer's records come in (round, seq) order.
func verifyCrash(t *testing.T, seed int64, round int, c *collector, res RecoveryResult, acked *[crashWriters][]ack) bool {
	redo := res.Control.Redo
	type key struct{ w, round, seq int }
	found := map[key]base.LSN{}
	last := [crashWriters][2]int{}
	for i := range last {
		last[i] = [2]int{-1, -1}
	}
	for _, r := range c.recs {
		w, rd, seq, ok := parseTagged(r.payload)
		if !ok || w >= crashWriters || r.xid != base.XID(w+1) {
			t.Errorf("seed %d round %d: record at %s has a damaged payload", seed, round, r.lsn)
			return false
		}
		if p := last[w]; rd < p[0] || (rd == p[0] && seq <= p[1]) {
			t.Errorf("seed %d round %d: writer %d: record (%d,%d) at %s after (%d,%d)", seed, round, w, rd, seq, r.lsn, p[0], p[1])
			return false
		}
		last[w] = [2]int{rd, seq}
		found[key{w, rd, seq}] = r.lsn
	}
	for w := range acked {
		for _, a := range acked[w] {
			if a.start < redo {
				continue
			}
			lsn, ok := found[key{w, a.round, a.seq}]
			if !ok {
				t.Errorf("seed %d round %d: acknowledged record of writer %d (round %d seq %d at %s) lost; log ends %v",
					seed, round, w, a.round, a.seq, a.start, res.End)
				return false
			}
			if lsn != a.start {
				t.Errorf("seed %d round %d: record (%d,%d,%d) at %s, was inserted at %s", seed, round, w, a.round, a.seq, lsn, a.start)
				return false
			}
		}
	}
	return true
}

// TestWALSyncFailure injects EIO into the fsync of a segment: the Flush
// fails with ErrWALSyncFailed, and so does everything after it.
func TestWALSyncFailure(t *testing.T) {
	for _, op := range []vfs.Op{vfs.OpSync, vfs.OpWrite} {
		fs := vfs.NewMemFS()
		l, _, _ := openLog(t, fs, smallConfig(), nil)
		_, end := insertPayload(t, l, 1, []byte("durable"))
		if err := l.Flush(end); err != nil {
			t.Fatal(err)
		}
		// Aim at the segment being written: the WAL writer may be creating
		// the next one concurrently, and must not use up the injection.
		seg := int64(end) / l.SegmentSize()
		fs.InjectError(vfs.Injection{Op: op, Path: testDir + "/wal/" + segmentName(seg)})
		_, end = insertPayload(t, l, 1, []byte("lost"))
		if int64(end-1)/l.SegmentSize() != seg {
			t.Fatal("record crossed into the next segment")
		}
		want := ErrWALSyncFailed
		if op == vfs.OpWrite {
			want = ErrWALWriteFailed
		}
		err := l.Flush(end)
		if !errors.Is(err, want) || !errors.Is(err, vfs.ErrInjected) {
			t.Fatalf("%v: Flush: %v", op, err)
		}
		fs.ClearInjections() // the disk "works" again: the log must not
		if _, _, err := l.Insert(NewRecord(rmgrTest, 0, 1)); !errors.Is(err, want) {
			t.Fatalf("%v: Insert after failure: %v", op, err)
		}
		if err := l.Flush(end); !errors.Is(err, want) {
			t.Fatalf("%v: Flush retry: %v", op, err)
		}
		if err := l.FlushCommit(end); !errors.Is(err, want) {
			t.Fatalf("%v: FlushCommit: %v", op, err)
		}
		if err := l.Checkpoint(); !errors.Is(err, want) {
			t.Fatalf("%v: Checkpoint: %v", op, err)
		}
		l.Close()
		// Restart and recovery get the log going again from what is on disk.
		fs.Crash(vfs.CrashOptions{Seed: 1})
		l2, c, _ := openLog(t, fs, Config{}, nil)
		if len(c.recs) != 1 || string(c.recs[0].payload) != "durable" {
			t.Fatalf("%v: recovered %d records", op, len(c.recs))
		}
		_, end = insertPayload(t, l2, 1, []byte("again"))
		if err := l2.Flush(end); err != nil {
			t.Fatalf("%v: Flush after recovery: %v", op, err)
		}
		l2.Close()
	}
}

func TestSyncFailureWhileRingFull(t *testing.T) {
	fs := vfs.NewMemFS()
	l, _, _ := openLog(t, fs, smallConfig(), nil)
	defer l.Close()
	fs.InjectError(vfs.Injection{Op: vfs.OpSync, Path: testDir + "/wal/", Persistent: true})
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, _, err = l.Insert(NewRecord(rmgrTest, 0, 1).SetPayload(make([]byte, 10_000)))
	}
	if !errors.Is(err, ErrWALSyncFailed) {
		t.Fatalf("inserting past a full ring with failing fsync: %v", err)
	}
}
