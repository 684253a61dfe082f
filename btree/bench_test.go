package btree

import (
	"encoding/binary"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	gbtree "github.com/google/btree"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/vfs"
	"github.com/heapkv/heapkv/xlog"
)

// The benchmarks measure the tree against github.com/google/btree in memory
// as the yardstick. The B+tree runs on a 256 MiB pool over an in-memory FS
// with a WAL whose commits are asynchronous and which is never flushed by
// the benchmark (the ring is written out when it fills), so what is
// measured is the tree, its latches, the pool's hit path and WAL insertion.

const benchKeys = 1_000_000

func benchWAL() xlog.Config {
	return xlog.Config{
		WALBuffers:        16 << 20,
		SynchronousCommit: base.Off,
		CheckpointTimeout: time.Hour,
		MaxWALSize:        1 << 40,
	}
}

// benchKey is the i-th key of the lookup and scan fixture: 16 bytes, in
// random order of i.
func benchKey(i uint64) []byte {
	k := make([]byte, 16)
	binary.BigEndian.PutUint64(k, i*0x9E3779B97F4A7C15)
	binary.BigEndian.PutUint64(k[8:], i)
	return k
}

// fixture is a tree of benchKeys keys (and the same in google/btree),
// built once per test binary run and shared by the lookup and scan
// benchmarks.
var fixture struct {
	once  sync.Once
	e     *env
	tr    *Tree
	model *gbtree.BTreeG[entry]
	err   error
}

func benchFixture(b *testing.B) (*Tree, *gbtree.BTreeG[entry]) {
	fixture.once.Do(func() {
		e, err := tryOpenEnv(vfs.NewMemFS(), testDir, 256<<20, benchWAL())
		if err != nil {
			fixture.err = err
			return
		}
		tr, err := Create(e.pool, e.wal, testRel)
		if err != nil {
			fixture.err = err
			return
		}
		m := newModel()
		for i := range uint64(benchKeys) {
			k := benchKey(i)
			if _, _, err := tr.Insert(k, tidFor(k)); err != nil {
				fixture.err = err
				return
			}
			m.ReplaceOrInsert(entry{string(k), tidFor(k)})
		}
		fixture.e, fixture.tr, fixture.model = e, tr, m
	})
	if fixture.err != nil {
		b.Fatal(fixture.err)
	}
	return fixture.tr, fixture.model
}

// BenchmarkBtreeLookup looks up random keys of a 1M-key tree whose pages
// are all in the pool.
func BenchmarkBtreeLookup(b *testing.B) {
	tr, _ := benchFixture(b)
	rng := rand.New(rand.NewPCG(1, 2))
	keys := make([][]byte, 1<<16)
	for i := range keys {
		keys[i] = benchKey(rng.Uint64N(benchKeys))
	}
	i := 0
	for b.Loop() {
		if _, ok, err := tr.Lookup(keys[i&(len(keys)-1)]); !ok || err != nil {
			b.Fatal("lookup failed", err)
		}
		i++
	}
}

// BenchmarkBtreeLookupParallel is the same from GOMAXPROCS goroutines.
func BenchmarkBtreeLookupParallel(b *testing.B) {
	tr, _ := benchFixture(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		rng := rand.New(rand.NewPCG(rand.Uint64(), 2))
		for pb.Next() {
			if _, ok, err := tr.Lookup(benchKey(rng.Uint64N(benchKeys))); !ok || err != nil {
				b.Error("lookup failed", err)
				return
			}
		}
	})
}

func BenchmarkGoogleBtreeLookup(b *testing.B) {
	_, m := benchFixture(b)
	rng := rand.New(rand.NewPCG(1, 2))
	keys := make([]entry, 1<<16)
	for i := range keys {
		keys[i] = entry{key: string(benchKey(rng.Uint64N(benchKeys)))}
	}
	i := 0
	for b.Loop() {
		if _, ok := m.Get(keys[i&(len(keys)-1)]); !ok {
			b.Fatal("lookup failed")
		}
		i++
	}
}

// BenchmarkBtreeScanFull scans all 1M keys forward.
func BenchmarkBtreeScanFull(b *testing.B) {
	tr, _ := benchFixture(b)
	n := 0
	for b.Loop() {
		it := tr.Scan(nil, nil, false)
		for it.Next() {
			n++
		}
		if err := it.Err(); err != nil {
			b.Fatal(err)
		}
		it.Close()
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "keys/s")
}

func BenchmarkGoogleBtreeScanFull(b *testing.B) {
	_, m := benchFixture(b)
	n := 0
	for b.Loop() {
		m.Ascend(func(entry) bool { n++; return true })
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "keys/s")
}

// seqKey and randomKey are the insert benchmarks' keys: 16 bytes, ascending
// or random.
func seqKey(i uint64) []byte {
	k := make([]byte, 16)
	binary.BigEndian.PutUint64(k, i)
	return k
}

func randomKey(rng *rand.Rand) []byte {
	k := make([]byte, 16)
	binary.BigEndian.PutUint64(k, rng.Uint64())
	binary.BigEndian.PutUint64(k[8:], rng.Uint64())
	return k
}

func benchInsert(b *testing.B, key func(i uint64) []byte) {
	e, err := tryOpenEnv(vfs.NewMemFS(), testDir, 256<<20, benchWAL())
	if err != nil {
		b.Fatal(err)
	}
	defer e.close(b)
	tr, err := Create(e.pool, e.wal, testRel)
	if err != nil {
		b.Fatal(err)
	}
	var i uint64
	for b.Loop() {
		k := key(i)
		if _, _, err := tr.Insert(k, tidFor(k)); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "ops/s")
}

func BenchmarkBtreeInsertSequential(b *testing.B) {
	benchInsert(b, seqKey)
}

func BenchmarkBtreeInsertRandom(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 4))
	benchInsert(b, func(uint64) []byte { return randomKey(rng) })
}

func benchGoogleInsert(b *testing.B, key func(i uint64) []byte) {
	m := newModel()
	var i uint64
	for b.Loop() {
		k := key(i)
		m.ReplaceOrInsert(entry{string(k), tidFor(k)})
		i++
	}
	b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "ops/s")
}

func BenchmarkGoogleBtreeInsertSequential(b *testing.B) {
	benchGoogleInsert(b, seqKey)
}

func BenchmarkGoogleBtreeInsertRandom(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 4))
	benchGoogleInsert(b, func(uint64) []byte { return randomKey(rng) })
}
