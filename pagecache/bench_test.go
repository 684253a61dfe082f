package pagecache

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/vfs"
)

const benchResident = 4096 // pages, all resident in a 4096-buffer pool

func benchPool(b *testing.B, nbuf, nblocks int) *Pool {
	b.Helper()
	bp := openPool(b, vfs.Default, b.TempDir(), nbuf, Config{})
	b.Cleanup(func() { bp.Close() })
	createRel(b, bp, 1, nblocks)
	return bp
}

// hitOnce is the hit path: pin, share lock, read a byte, unlock, release.
func hitOnce(b *testing.B, bp *Pool, blk base.BlockNum) byte {
	buf, err := bp.ReadBuffer(1, blk, ReadNormal, nil)
	if err != nil {
		b.Fatal(err)
	}
	buf.LockShare()
	c := buf.Page()[offStampPat]
	buf.UnlockShare()
	buf.Release()
	return c
}

// BenchmarkReadBufferHit measures pin + share lock + unlock + release of a
// resident page, over 4096 resident pages in a random-ish order.
func BenchmarkReadBufferHit(b *testing.B) {
	bp := benchPool(b, benchResident, benchResident)
	for blk := range base.BlockNum(benchResident) {
		hitOnce(b, bp, blk)
	}
	b.Run("serial", func(b *testing.B) {
		r := newRand(1)
		for b.Loop() {
			hitOnce(b, bp, base.BlockNum(r.Uint32()%benchResident))
		}
	})
	b.Run("parallel", func(b *testing.B) {
		var seeds atomic.Uint64
		b.RunParallel(func(pb *testing.PB) {
			r := newRand(seeds.Add(1))
			for pb.Next() {
				hitOnce(b, bp, base.BlockNum(r.Uint32()%benchResident))
			}
		})
	})
	// Each goroutine on pages of its own: what two transactions working on
	// different data see. The shared case above pays for moving descriptor
	// cache lines between cores; this one does not.
	b.Run("parallel-disjoint", func(b *testing.B) {
		var workers atomic.Uint32
		regions := uint32(runtime.GOMAXPROCS(0))
		b.RunParallel(func(pb *testing.PB) {
			w := workers.Add(1) - 1
			size := benchResident / regions
			base0 := (w % regions) * size
			r := newRand(uint64(w) + 1)
			for pb.Next() {
				hitOnce(b, bp, base.BlockNum(base0+r.Uint32()%size))
			}
		})
	})
	if st := bp.Stats(); st.Reads > benchResident {
		b.Fatalf("hit benchmark read %d pages from disk", st.Reads)
	}
}

// BenchmarkReadBufferMiss reads pages that are in the OS cache but not in the
// pool, each read evicting a clean victim.
func BenchmarkReadBufferMiss(b *testing.B) {
	const nbuf, nblocks = 256, 8192
	bp := benchPool(b, nbuf, nblocks)
	var i uint32
	for b.Loop() {
		i = i*1664525 + 1013904223
		hitOnce(b, bp, base.BlockNum(i%nblocks))
	}
	st := bp.Stats()
	b.ReportMetric(float64(st.Reads)/float64(st.Reads+st.Hits)*100, "miss%")
}

// BenchmarkMapRWMutexHit is the yardstick: the same lookup in a plain map of
// pages guarded by one RWMutex.
func BenchmarkMapRWMutexHit(b *testing.B) {
	var mu sync.RWMutex
	m := make(map[uint64][]byte, benchResident)
	for blk := range uint64(benchResident) {
		m[blk] = make([]byte, BlockSize)
	}
	get := func(blk uint64) byte {
		mu.RLock()
		c := m[blk][offStampPat]
		mu.RUnlock()
		return c
	}
	b.Run("serial", func(b *testing.B) {
		r := newRand(1)
		for b.Loop() {
			get(uint64(r.Uint32() % benchResident))
		}
	})
	b.Run("parallel", func(b *testing.B) {
		var seeds atomic.Uint64
		b.RunParallel(func(pb *testing.PB) {
			r := newRand(seeds.Add(1))
			for pb.Next() {
				get(uint64(r.Uint32() % benchResident))
			}
		})
	})
}
