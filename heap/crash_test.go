package heap

import (
	"bytes"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/testutil"
	"github.com/heapkv/heapkv/internal/vfs"
	"github.com/heapkv/heapkv/txn"
	"github.com/heapkv/heapkv/xlog"
)

// defaultCrashSeeds is how many seeds TestCrash runs by default (about
// 3 s, or 25 s under the race detector).
const defaultCrashSeeds = 200

// inserted is an insert a crash-test writer made.
type inserted struct {
	key, value []byte
	xid        base.XID
	tid        base.TID
	aborted    bool
}

// TestCrash runs writers that insert concurrently into a heap on a MemFS
// (a pool of 16 to 31 pages, so pages are evicted and written under the
// WAL-before-data rule): small, medium, compressible and TOASTed values,
// some chaining new versions of their keys, some aborted and pruned. Each
// writer flushes the WAL at random points and remembers which of its
// inserts were flushed. Some seeds checkpoint in the middle. At a random
// moment the file system is copied and the copy crashed (unsynced writes
// dropped, kept or torn at random); recovery on the copy must give a
// relation that passes Check, with every flushed insert that did not abort
// fetchable by its TID with its key, value and xmin.
func TestCrash(t *testing.T) {
	testutil.RunCrashSeeds(t, defaultCrashSeeds, runCrash)
}

func runCrash(t *testing.T, c testutil.CrashSeed) {
	seed := c.Seed
	rng := newRand(seed)
	fs := vfs.NewMemFS()
	walCfg := xlog.Config{SegmentSize: 1 << 20, WALBuffers: 64 << 10}
	if rng.IntN(2) == 0 {
		walCfg.SegmentSize = 64 << 10
	}
	walCfg.WALCompression = xlog.Compression(rng.IntN(3))
	cfg := envConfig{poolPages: 16 + rng.IntN(16), wal: walCfg}
	e, err := tryOpenEnv(fs, cfg)
	if err != nil {
		t.Errorf("seed %d: open: %v", seed, err)
		return
	}
	nwriters := 2 + rng.IntN(3)
	var (
		mu      sync.Mutex
		recs    = make([][]inserted, nwriters)
		durable = make([]atomic.Int64, nwriters)
		total   atomic.Int64
		stop    atomic.Bool
		wg      sync.WaitGroup
		failed  atomic.Bool
	)
	for w := range nwriters {
		wrng := newRand(seed*131 + int64(w) + 1)
		wg.Go(func() {
			last := map[string]base.TID{} // newest committed version per key
			for seq := 0; !stop.Load() && seq < 80; seq++ {
				xid := e.clog.newXID()
				key := fmt.Sprintf("w%d-key%d", w, wrng.IntN(12))
				var value []byte
				switch r := wrng.IntN(20); {
				case r < 11:
					value = randBytes(wrng, wrng.IntN(200))
				case r < 16:
					value = randBytes(wrng, 200+wrng.IntN(2800))
				case r < 18:
					value = randBytes(wrng, 3000+wrng.IntN(30000))
				default:
					value = bytes.Repeat([]byte(key), 400+wrng.IntN(4000))
				}
				prev := base.InvalidTID
				if tid, ok := last[key]; ok && wrng.IntN(2) == 0 {
					prev = tid
				}
				tid, err := e.h.Insert(xid, []byte(key), value, prev)
				if err != nil {
					t.Errorf("seed %d: writer %d: Insert: %v", seed, w, err)
					failed.Store(true)
					return
				}
				rec := inserted{key: []byte(key), value: value, xid: xid, tid: tid}
				if wrng.IntN(8) == 0 {
					rec.aborted = true
					e.clog.set(xid, txn.Aborted, true)
				} else {
					e.clog.set(xid, txn.Committed, true)
					last[key] = tid
				}
				mu.Lock()
				recs[w] = append(recs[w], rec)
				n := len(recs[w])
				mu.Unlock()
				total.Add(1)
				if rec.aborted && wrng.IntN(2) == 0 {
					if _, err := e.h.Prune(tid.Block); err != nil {
						t.Errorf("seed %d: writer %d: Prune: %v", seed, w, err)
						failed.Store(true)
						return
					}
				}
				if wrng.IntN(5) == 0 {
					// Everything this writer inserted so far ends below
					// the insert position read now.
					if err := e.wal.Flush(e.wal.InsertLSN()); err != nil {
						t.Errorf("seed %d: writer %d: Flush: %v", seed, w, err)
						failed.Store(true)
						return
					}
					durable[w].Store(int64(n))
				}
			}
		})
	}
	target := int64(20 + rng.IntN(120))
	ckptAt := int64(-1)
	if rng.IntN(3) == 0 {
		ckptAt = target / 2
	}
	for total.Load() < target && !failed.Load() && int(total.Load()) < nwriters*80 {
		if ckptAt >= 0 && total.Load() >= ckptAt {
			if err := e.wal.Checkpoint(); err != nil {
				t.Errorf("seed %d: Checkpoint: %v", seed, err)
				failed.Store(true)
			}
			ckptAt = -1
		}
		runtime.Gosched()
	}
	// What was flushed before the copy must survive it.
	want := make([][]inserted, nwriters)
	for w := range nwriters {
		n := durable[w].Load()
		mu.Lock()
		want[w] = append([]inserted(nil), recs[w][:n]...)
		mu.Unlock()
	}
	crashed := fs.Clone()
	stop.Store(true)
	wg.Wait()
	if err := e.close(); err != nil {
		t.Errorf("seed %d: close: %v", seed, err)
		return
	}
	if failed.Load() {
		return
	}
	crashed.Crash(c.Options(0))

	dbg := crashed.Clone()
	r, err := tryOpenEnv(crashed, envConfig{poolPages: 16 + rng.IntN(16), wal: walCfg, clog: e.clog})
	if err != nil {
		var blk base.BlockNum
		if i := strings.Index(err.Error(), " block "); i >= 0 {
			fmt.Sscanf(err.Error()[i+7:], "%d", &blk)
		}
		dumpWAL(t, dbg, walCfg.SegmentSize, blk)
		t.Errorf("seed %d: recover: %v", seed, err)
		return
	}
	defer r.close()
	if err := Check(r.pool, testRel); err != nil {
		t.Errorf("seed %d: Check after recovery: %v", seed, err)
		return
	}
	checked := 0
	for w := range nwriters {
		for _, rec := range want[w] {
			if rec.aborted {
				continue
			}
			tup, err := r.h.Fetch(rec.tid)
			if err != nil {
				t.Errorf("seed %d: writer %d: flushed insert of %q at %v: %v", seed, w, rec.key, rec.tid, err)
				return
			}
			if !bytes.Equal(tup.Key, rec.key) || !bytes.Equal(tup.Value, rec.value) || tup.XMin != rec.xid {
				t.Errorf("seed %d: writer %d: %v holds key %q xmin %d and %d value bytes; want %q xmin %d and %d bytes",
					seed, w, rec.tid, tup.Key, tup.XMin, len(tup.Value), rec.key, rec.xid, len(rec.value))
				return
			}
			checked++
		}
	}
	if seed%50 == 0 {
		t.Logf("seed %d: %d writers, %d inserts, %d flushed and checked, recovery replayed %d records",
			seed, nwriters, total.Load(), checked, r.res.Records)
	}
}
