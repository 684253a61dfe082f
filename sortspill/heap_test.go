package sortspill

import (
	"bytes"
	"context"
	"encoding/binary"
	"flag"
	"hash/maphash"
	"math/rand/v2"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/heapkv/heapkv/internal/vfs"
)

var heapTestBytes = flag.Int64("sortspill.heapbytes", 0,
	"bytes of records the Go-heap test sorts (0: 64 MiB, 16 MiB with -short; the long run is 1 GiB)")

// heapSlack is the Go heap a sort may hold beyond its budget, as the test
// measures it: live bytes at each GC, which include what was allocated
// while the GC marked (an index that doubled, s2's encoder tables, which
// its sync.Pool drops at each GC) and the runtime's own noise. Measured:
// 4.2-4.5 MB at a 4 MB budget from 64 MiB to 1 GiB of records, up to
// 5.3 MB with the CPU shared by other work; it does not grow with the data.
const heapSlack = 2 << 20

// liveHeap returns the bytes of live objects at the last GC.
func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// heapPeak samples the live heap, collecting every few milliseconds so the
// figure stays fresh, until stop is called; stop returns the highest sample.
func heapPeak() (stop func() uint64) {
	var (
		wg   sync.WaitGroup
		peak uint64
		done = make(chan struct{})
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			runtime.GC()
			peak = max(peak, liveHeap())
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	return func() uint64 {
		close(done)
		wg.Wait()
		return peak
	}
}

// TestSortGoHeapWithinBudget sorts far more than its budget (the long run:
// -sortspill.heapbytes=1073741824) and fails if the Go heap grows past the
// budget and heapSlack. Records are made on the fly from a seed, so the
// test holds none of them; the output is checked for order, count and an
// order-free checksum.
func TestSortGoHeapWithinBudget(t *testing.T) {
	const budget = 4 << 20
	total := *heapTestBytes
	if total == 0 {
		total = 64 << 20
		if testing.Short() {
			total = 16 << 20
		}
	}
	const recSize = 100
	n := total / recSize
	ts := NewTempSpace(vfs.Default, t.TempDir(), TempOptions{Limit: -1, LogAbove: -1})
	hashSeed := maphash.MakeSeed()

	runtime.GC()
	before := liveHeap()
	stop := heapPeak()
	start := time.Now()

	s, err := NewSorter(context.Background(), bytes.Compare, SortOptions{Budget: budget, Temp: ts})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rng := rand.New(rand.NewPCG(7, 11))
	var rec [recSize]byte
	var sumIn, sumOut uint64
	for range n {
		for j := 0; j < recSize; j += 8 {
			v := rng.Uint64()
			for k := 0; k < 8 && j+k < recSize; k++ {
				rec[j+k] = byte(v >> (8 * k))
			}
		}
		sumIn += maphash.Bytes(hashSeed, rec[:])
		if err := s.Add(rec[:]); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Finish(); err != nil {
		t.Fatal(err)
	}
	var prev []byte
	var got int64
	for s.Next() {
		r := s.Record()
		if prev != nil && bytes.Compare(prev, r) > 0 {
			t.Fatalf("record %d is out of order", got)
		}
		prev = append(prev[:0], r...)
		sumOut += maphash.Bytes(hashSeed, r)
		got++
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	peak := stop()
	if got != n || sumOut != sumIn {
		t.Fatalf("got %d records (checksum %x), want %d (%x)", got, sumOut, n, sumIn)
	}
	st := s.Stats()
	var grew uint64
	if peak > before {
		grew = peak - before
	}
	t.Logf("%d MiB in %d records at a 4 MiB budget: %v, %d runs, %d passes, merge order %d, disk %d MiB, %v; counted peak %d KiB; Go heap grew by %d KiB at most",
		total>>20, n, st.Method, st.Runs, st.Passes, st.MergeOrder, st.DiskBytes>>20, time.Since(start).Round(time.Millisecond), st.PeakMemory>>10, grew>>10)
	if st.PeakMemory > budget {
		t.Errorf("the sort counted %d bytes, over its budget of %d", st.PeakMemory, budget)
	}
	if grew > budget+heapSlack {
		t.Errorf("the Go heap grew by %d bytes, over the budget %d and slack %d", grew, budget, heapSlack)
	}
}

// TestHashAggGoHeapWithinBudget aggregates a million groups at a 4 MiB
// budget (count and sum) and fails if the Go heap grows past the budget
// and heapSlack.
func TestHashAggGoHeapWithinBudget(t *testing.T) {
	const budget = 4 << 20
	rows, groups := 4_000_000, 1_000_000
	if testing.Short() {
		rows, groups = 1_000_000, 250_000
	}
	ts := NewTempSpace(vfs.Default, t.TempDir(), TempOptions{Limit: NoTempFileLimit, LogAbove: NoTempFileLimit})
	runtime.GC()
	before := liveHeap()
	stop := heapPeak()
	a, err := NewHashAgg(context.Background(), countStep, HashOptions{Budget: budget, Temp: ts})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	rng := rand.New(rand.NewPCG(5, 6))
	var g, v [8]byte
	for i := range rows {
		aggRow(rng, groups, &g, &v, i)
		if err := a.Add(g[:], v[:]); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Finish(); err != nil {
		t.Fatal(err)
	}
	var n int
	var total int64
	for a.Next() {
		n++
		total += int64(binary.LittleEndian.Uint64(a.State()))
	}
	if err := a.Err(); err != nil {
		t.Fatal(err)
	}
	peak := stop()
	if total != int64(rows) {
		t.Fatalf("counts sum to %d over %d groups, want %d rows", total, n, rows)
	}
	st := a.Stats()
	var grew uint64
	if peak > before {
		grew = peak - before
	}
	t.Logf("%d rows into %d groups at a 4 MiB budget: %d batches, depth %d, disk %d MiB; counted peak %d KiB; Go heap grew by %d KiB at most",
		rows, n, st.Batches, st.Depth, st.DiskBytes>>20, st.PeakMemory>>10, grew>>10)
	if grew > budget+heapSlack {
		t.Errorf("the Go heap grew by %d bytes, over the budget %d and slack %d", grew, budget, heapSlack)
	}
}
