package heap

import (
	"bytes"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/google/btree"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/vfs"
	"github.com/heapkv/heapkv/txn"
	"github.com/heapkv/heapkv/xlog"
)

const benchRows = 10000

type benchRow struct {
	key []byte
	tid base.TID
}

// benchHeap is a heap of benchRows committed rows of 100-byte values, all
// cached and hinted.
func benchHeap(b *testing.B) (*env, []benchRow) {
	b.Helper()
	e := openEnv(b, vfs.NewMemFS(), envConfig{poolPages: 2048, wal: xlog.Config{SegmentSize: 16 << 20, WALBuffers: 4 << 20}})
	b.Cleanup(func() { e.close() })
	xid := e.clog.newXID()
	rng := newRand(1)
	rows := make([]benchRow, benchRows)
	for i := range rows {
		rows[i].key = []byte(fmt.Sprintf("user%010d", i))
		tid, err := e.h.Insert(xid, rows[i].key, randBytes(rng, 100), base.InvalidTID)
		if err != nil {
			b.Fatal(err)
		}
		rows[i].tid = tid
	}
	e.clog.set(xid, txn.Committed, true)
	for _, r := range rows { // sets the hint bits
		if _, ok, err := e.h.Get(r.tid, r.key, snapAll(), nil); !ok || err != nil {
			b.Fatal("row not visible")
		}
	}
	return e, rows
}

// BenchmarkHeapFetch fetches the visible version of a cached row: pin,
// share lock, key check, visibility (hinted), copy of a 100-byte value,
// unlock, unpin. The rows are visited in a scattered order.
func BenchmarkHeapFetch(b *testing.B) {
	e, rows := benchHeap(b)
	snap := &txn.Snapshot{XMin: 1 << 40, XMax: 1 << 40}
	b.Run("serial", func(b *testing.B) {
		dst := make([]byte, 0, 256)
		i := 0
		for b.Loop() {
			r := &rows[(i*7919)%benchRows]
			i++
			f, ok, err := e.h.Get(r.tid, r.key, snap, dst[:0])
			if !ok || err != nil || len(f.Value) != 100 {
				b.Fatal("miss")
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		var seq atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			dst := make([]byte, 0, 256)
			i := int(seq.Add(1)) * 1000
			for pb.Next() {
				r := &rows[(i*7919)%benchRows]
				i++
				f, ok, err := e.h.Get(r.tid, r.key, snap, dst[:0])
				if !ok || err != nil || len(f.Value) != 100 {
					b.Fatal("miss")
				}
			}
		})
	})
}

// BenchmarkHeapFetchChain fetches through a chain: the row's newest
// version is invisible to the snapshot (its writer runs), so the walk
// judges it and moves to the previous version on the same page.
func BenchmarkHeapFetchChain(b *testing.B) {
	e, rows := benchHeap(b)
	writer := e.clog.newXID()
	r := rows[0]
	tid, err := e.h.Insert(writer, r.key, bytes.Repeat([]byte{1}, 100), r.tid)
	if err != nil {
		b.Fatal(err)
	}
	snap := &txn.Snapshot{XMin: writer, XMax: writer}
	dst := make([]byte, 0, 256)
	for b.Loop() {
		if _, ok, err := e.h.Get(tid, r.key, snap, dst[:0]); !ok || err != nil {
			b.Fatal("miss")
		}
	}
}

// BenchmarkHeapInsert inserts rows of 100-byte values into a heap on an
// in-memory file system (WAL records included, no commit flush).
func BenchmarkHeapInsert(b *testing.B) {
	for _, par := range []bool{false, true} {
		name := "serial"
		if par {
			name = "parallel"
		}
		b.Run(name, func(b *testing.B) {
			e := openEnv(b, vfs.NewMemFS(), envConfig{poolPages: 4096, wal: xlog.Config{SegmentSize: 64 << 20, WALBuffers: 16 << 20}})
			defer e.close()
			value := randBytes(newRand(2), 100)
			var seq atomic.Int64
			xid := e.clog.newXID()
			ins := func() {
				n := seq.Add(1)
				key := fmt.Appendf(nil, "user%010d", n)
				if _, err := e.h.Insert(xid, key, value, base.InvalidTID); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			if par {
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						ins()
					}
				})
			} else {
				for b.Loop() {
					ins()
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "inserts/s")
		})
	}
}

// BenchmarkBTreeGet is the yardstick for the cached fetch: a google/btree
// (degree 32) of the same keys, mapping each to its TID, searched in the
// same order. It is what an in-memory ordered index costs per lookup.
func BenchmarkBTreeGet(b *testing.B) {
	type item struct {
		key []byte
		tid base.TID
	}
	tr := btree.NewG(32, func(a, b item) bool { return bytes.Compare(a.key, b.key) < 0 })
	keys := make([][]byte, benchRows)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("user%010d", i))
		tr.ReplaceOrInsert(item{key: keys[i], tid: base.TID{Block: base.BlockNum(i / 50), Offset: uint16(i%50 + 1)}})
	}
	i := 0
	for b.Loop() {
		if _, ok := tr.Get(item{key: keys[(i*7919)%benchRows]}); !ok {
			b.Fatal("miss")
		}
		i++
	}
}
