package btree

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	gbtree "github.com/google/btree"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/testutil"
	"github.com/heapkv/heapkv/internal/vfs"
	"github.com/heapkv/heapkv/pagecache"
	"github.com/heapkv/heapkv/xlog"
)

// baseSeed returns the seed randomized tests start from and logs it.
func baseSeed(t testing.TB) int64 { return testutil.Seed(t) }

const (
	testDir                  = "/db"
	testRel base.RelFileNode = 16384
)

// env is a data directory opened the way the engine will open it: the WAL,
// the storage manager, the pool (whose FlushWAL is the WAL's), the B+tree's
// redo registered, recovery run.
type env struct {
	fs        vfs.FS
	pool      *pagecache.Pool
	wal       *xlog.Log
	recovered xlog.RecoveryResult
}

// smallWAL is a WAL with a 64 KiB ring and 64 KiB segments and no
// checkpoints unless asked for.
func smallWAL() xlog.Config {
	return xlog.Config{
		WALBuffers:        64 << 10,
		SegmentSize:       64 << 10,
		CheckpointTimeout: time.Hour,
		MaxWALSize:        1 << 40,
	}
}

// bigWAL is a WAL for the large tests: no checkpoint during the run.
func bigWAL() xlog.Config {
	return xlog.Config{
		WALBuffers:        16 << 20,
		CheckpointTimeout: time.Hour,
		MaxWALSize:        1 << 40,
	}
}

func openEnv(t testing.TB, fs vfs.FS, dir string, poolBytes int, cfg xlog.Config) *env {
	t.Helper()
	e, err := tryOpenEnv(fs, dir, poolBytes, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func tryOpenEnv(fs vfs.FS, dir string, poolBytes int, cfg xlog.Config) (*env, error) {
	wal, err := xlog.Open(fs, dir, cfg)
	if err != nil {
		return nil, fmt.Errorf("xlog.Open: %w", err)
	}
	smgr, err := pagecache.OpenStorage(fs, dir)
	if err != nil {
		wal.Close()
		return nil, fmt.Errorf("OpenStorage: %w", err)
	}
	pool, err := pagecache.NewPool(smgr, pagecache.Config{SharedBuffers: poolBytes, FlushWAL: wal.Flush})
	if err != nil {
		wal.Close()
		return nil, fmt.Errorf("NewPool: %w", err)
	}
	if err := RegisterRedo(wal); err != nil {
		return nil, err
	}
	res, err := wal.Recover(pool)
	if err != nil {
		wal.Close()
		pool.Close()
		return nil, fmt.Errorf("Recover: %w", err)
	}
	return &env{fs: fs, pool: pool, wal: wal, recovered: res}, nil
}

// close shuts down cleanly: the WAL's shutdown checkpoint writes the pool.
func (e *env) close(t testing.TB) {
	t.Helper()
	if err := e.wal.Close(); err != nil {
		t.Errorf("wal.Close: %v", err)
	}
	if err := e.pool.Close(); err != nil {
		t.Errorf("pool.Close: %v", err)
	}
}

// tidFor is the TID the tests map key to: any inserter of a key inserts
// this, so the content is a function of the key set.
func tidFor(key []byte) base.TID {
	h := fnv.New64a()
	h.Write(key)
	s := h.Sum64()
	return base.TID{Block: base.BlockNum(s>>32) & 0x7fffffff, Offset: uint16(s%4000) + 1}
}

// entry is a model entry.
type entry struct {
	key string
	tid base.TID
}

func newModel() *gbtree.BTreeG[entry] {
	return gbtree.NewG(32, func(a, b entry) bool { return a.key < b.key })
}

// modelRange returns the model's entries in [start, end), descending if
// reverse, at most limit of them (limit <= 0: all).
func modelRange(m *gbtree.BTreeG[entry], start, end []byte, reverse bool, limit int) []entry {
	var out []entry
	take := func(e entry) bool {
		if limit > 0 && len(out) >= limit {
			return false
		}
		out = append(out, e)
		return true
	}
	if !reverse {
		visit := func(e entry) bool {
			if end != nil && e.key >= string(end) {
				return false
			}
			return take(e)
		}
		if start == nil {
			m.Ascend(visit)
		} else {
			m.AscendGreaterOrEqual(entry{key: string(start)}, visit)
		}
		return out
	}
	visit := func(e entry) bool {
		if end != nil && e.key >= string(end) {
			return true
		}
		if start != nil && e.key < string(start) {
			return false
		}
		return take(e)
	}
	if end == nil {
		m.Descend(visit)
	} else {
		m.DescendLessOrEqual(entry{key: string(end)}, visit)
	}
	return out
}

// collect runs a scan and returns at most limit entries (limit <= 0: all).
func collect(tr *Tree, start, end []byte, reverse bool, limit int) ([]entry, error) {
	it := tr.Scan(start, end, reverse)
	defer it.Close()
	var out []entry
	for (limit <= 0 || len(out) < limit) && it.Next() {
		out = append(out, entry{key: string(it.Key()), tid: it.TID()})
	}
	return out, it.Err()
}

// diffEntries describes the first difference of two entry lists.
func diffEntries(want, got []entry) string {
	for i := range min(len(want), len(got)) {
		if want[i] != got[i] {
			return fmt.Sprintf("entry %d: want %x %v, got %x %v", i, trunc([]byte(want[i].key)), want[i].tid, trunc([]byte(got[i].key)), got[i].tid)
		}
	}
	if len(want) != len(got) {
		return fmt.Sprintf("want %d entries, got %d", len(want), len(got))
	}
	return ""
}

// randKey returns a key of 1..maxLen random bytes, drawn from a small
// alphabet now and then so that keys share prefixes.
func randKey(rng *rand.Rand, maxLen int) []byte {
	n := 1 + rng.IntN(maxLen)
	k := make([]byte, n)
	if rng.IntN(4) == 0 {
		for i := range k {
			k[i] = 'a' + byte(rng.IntN(3))
		}
		return k
	}
	for i := range k {
		k[i] = byte(rng.Uint32())
	}
	return k
}

// randBound returns a random scan bound: nil sometimes, else a random key
// or a key of the model.
func randBound(rng *rand.Rand, keys [][]byte, maxLen int) []byte {
	switch rng.IntN(4) {
	case 0:
		return nil
	case 1:
		return randKey(rng, maxLen)
	default:
		if len(keys) == 0 {
			return randKey(rng, maxLen)
		}
		return bytes.Clone(keys[rng.IntN(len(keys))])
	}
}

// checkAgainstModel compares the whole tree and random ranges of it with
// the model, and runs Check.
func checkAgainstModel(t testing.TB, tr *Tree, pool *pagecache.Pool, m *gbtree.BTreeG[entry], rng *rand.Rand, ranges, maxLen int) {
	t.Helper()
	if err := Check(pool, tr.Rel()); err != nil {
		t.Fatalf("Check: %v", err)
	}
	got, err := collect(tr, nil, nil, false, 0)
	if err != nil {
		t.Fatalf("full scan: %v", err)
	}
	if d := diffEntries(modelRange(m, nil, nil, false, 0), got); d != "" {
		t.Fatalf("full forward scan differs from the model: %s", d)
	}
	got, err = collect(tr, nil, nil, true, 0)
	if err != nil {
		t.Fatalf("full backward scan: %v", err)
	}
	if d := diffEntries(modelRange(m, nil, nil, true, 0), got); d != "" {
		t.Fatalf("full backward scan differs from the model: %s", d)
	}
	var keys [][]byte
	m.Ascend(func(e entry) bool {
		if rng.IntN(max(1, m.Len()/1000)) == 0 {
			keys = append(keys, []byte(e.key))
		}
		return true
	})
	for i := range ranges {
		start, end := randBound(rng, keys, maxLen), randBound(rng, keys, maxLen)
		reverse := i%2 == 1
		limit := 2000
		got, err := collect(tr, start, end, reverse, limit)
		if err != nil {
			t.Fatalf("scan [%x, %x) reverse %v: %v", trunc(start), trunc(end), reverse, err)
		}
		if d := diffEntries(modelRange(m, start, end, reverse, limit), got); d != "" {
			t.Fatalf("scan [%x, %x) reverse %v differs from the model: %s", trunc(start), trunc(end), reverse, d)
		}
	}
}

// newRand returns a generator seeded from the base seed.
func newRand(t testing.TB) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(baseSeed(t)), 0))
}

func sortKeys(keys [][]byte) { slices.SortFunc(keys, bytes.Compare) }
