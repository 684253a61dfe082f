package exec

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/sortspill"
	"github.com/heapkv/heapkv/table"
)

// ScanMethod is how a plan reads its range.
type ScanMethod int

const (
	// ScanAuto lets the planner choose from the keyspace's statistics.
	ScanAuto ScanMethod = iota
	// ScanIndex walks the index and fetches each key's row: key order, no
	// memory, one heap page access per row.
	ScanIndex
	// ScanBitmap collects the range's TIDs from the index, sorts them by
	// heap block under work_mem, and reads each heap page once in physical
	// order; the rows are then sorted into the order asked for.
	ScanBitmap
)

func (m ScanMethod) String() string {
	switch m {
	case ScanAuto:
		return "auto"
	case ScanIndex:
		return "index scan"
	case ScanBitmap:
		return "bitmap heap scan"
	}
	return fmt.Sprintf("ScanMethod(%d)", int(m))
}

// Entries is a bitmap scan's first input: the index entries of the range,
// read without the heap, as kv provides them.
type Entries interface {
	Next() bool
	Key() []byte
	TID() base.TID
	Err() error
	Close() error
}

// Fetcher is its second: the version of key the scan's snapshot sees in
// the chain at tid, appended to dst, read through a bulk-read ring.
type Fetcher interface {
	Fetch(tid base.TID, key, dst []byte) (value []byte, ok bool, err error)
}

// The planner's constants, PostgreSQL's defaults.
const (
	seqPageCost       = 1.0
	randomPageCost    = 4.0
	cpuTupleCost      = 0.01
	cpuIndexTupleCost = 0.005
	cpuOperatorCost   = 0.0025
)

// estimate is what the planner works out for a range.
type estimate struct {
	rows        float64 // rows of the range
	indexCost   float64
	bitmapCost  float64
	selectivity float64
}

// estimateRange costs both ways of reading [start, end), as PostgreSQL's
// cost_index and cost_bitmap_heap_scan do, with the index's own page
// reads left out of both (they are the same). sortAfter says whether a
// bitmap scan's rows must be sorted into key order afterwards.
func estimateRange(st *table.Statistics, start, end []byte, cachePages float64, sortAfter bool) estimate {
	sel := 1.0
	if len(st.Sample) > 0 {
		in := 0
		for _, k := range st.Sample {
			if (start == nil || bytes.Compare(k, start) >= 0) && (end == nil || bytes.Compare(k, end) < 0) {
				in++
			}
		}
		sel = max(float64(in), 0.5) / float64(len(st.Sample))
	}
	T := max(float64(st.Pages), 1)
	N := max(sel*float64(st.Rows), 1)
	e := estimate{rows: N, selectivity: sel}

	// Index scan: the pages fetched for N rows in random order, between
	// the perfectly correlated case (the range's share of the pages, read
	// in order) and the uncorrelated one, weighted by correlation squared.
	maxIO := pagesFetched(N, T, cachePages) * randomPageCost
	minIO := math.Ceil(sel*T) * seqPageCost
	c2 := st.Correlation * st.Correlation
	e.indexCost = maxIO + c2*(minIO-maxIO) + N*(cpuTupleCost+cpuIndexTupleCost)

	// Bitmap heap scan: each page once, in order, at a cost per page
	// between random and sequential by the share of the table read.
	pages := math.Min(pagesFetched(N, T, cachePages), T)
	perPage := randomPageCost
	if pages >= 2 {
		perPage = randomPageCost - (randomPageCost-seqPageCost)*math.Sqrt(pages/T)
	}
	sortCost := 2 * cpuOperatorCost * N * math.Log2(N+1) // the TIDs by block
	if sortAfter {
		sortCost *= 2 // and the rows back into key order
	}
	e.bitmapCost = pages*perPage + N*(cpuTupleCost+cpuIndexTupleCost) + sortCost
	return e
}

// pagesFetched is Mackert and Lohman's estimate of the page reads that
// fetching N rows at random from T pages takes with b pages of cache
// (PostgreSQL's index_pages_fetched).
func pagesFetched(N, T, b float64) float64 {
	b = max(b, 1)
	if T <= b {
		return min(2*T*N/(2*T+N), T)
	}
	lim := 2 * T * b / (2*T - b)
	if N <= lim {
		return 2 * T * N / (2*T + N)
	}
	return b + (N-lim)*(T-b)/T
}

// bitmapSource is a bitmap heap scan as a Source: the entries sorted by
// TID, then each chain fetched in that order.
type bitmapSource struct {
	ctx     context.Context
	env     *Env
	entries Entries
	fetch   Fetcher
	scan    *node // Bitmap Heap Scan
	index   *node // Bitmap Index Scan
	clock   *runClock

	sort    *sortspill.Sorter
	started bool
	key     []byte
	value   []byte
	blocks  int64 // distinct heap blocks read
	lastBlk uint32
	n       int64
	err     error
}

// The TID sort's records are block (4 bytes, big endian), offset (2) and
// the key, so that byte order is heap order.
func encodeTIDRecord(dst []byte, tid base.TID, key []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(tid.Block))
	dst = binary.BigEndian.AppendUint16(dst, tid.Offset)
	return append(dst, key...)
}

func decodeTIDRecord(rec []byte) (base.TID, []byte) {
	return base.TID{Block: base.BlockNum(binary.BigEndian.Uint32(rec)), Offset: binary.BigEndian.Uint16(rec[4:])}, rec[6:]
}

func (b *bitmapSource) Next() bool {
	if b.err != nil {
		return false
	}
	if !b.started {
		b.started = true
		if err := b.collect(); err != nil {
			b.err = err
			return false
		}
	}
	defer b.record()
	for b.sort.Next() {
		if err := checkCtx(b.ctx, b.n); err != nil {
			b.err = err
			return false
		}
		b.n++
		tid, key := decodeTIDRecord(b.sort.Record())
		if blk := uint32(tid.Block); b.blocks == 0 || blk != b.lastBlk {
			b.blocks++
			b.lastBlk = blk
		}
		v, ok, err := b.fetch.Fetch(tid, key, b.value[:0])
		if err != nil {
			b.err = err
			return false
		}
		if ok {
			b.key, b.value = key, v
			b.scan.note(b.scan.rows+1, b.clock.since())
			return true
		}
	}
	b.err = b.sort.Err()
	return false
}

// collect reads the range's entries into the TID sort.
func (b *bitmapSource) collect() error {
	s, err := sortspill.NewSorter(b.ctx, bytes.Compare, sortspill.SortOptions{Budget: b.env.WorkMem, Temp: b.env.Temp, Abbrev: sortspill.PrefixAbbrev})
	if err != nil {
		return err
	}
	b.sort = s
	var rec []byte
	for n := int64(0); b.entries.Next(); n++ {
		if err := checkCtx(b.ctx, n); err != nil {
			return err
		}
		rec = encodeTIDRecord(rec[:0], b.entries.TID(), b.entries.Key())
		if err := s.Add(rec); err != nil {
			return err
		}
		b.index.note(n+1, b.clock.since())
	}
	if err := b.entries.Err(); err != nil {
		return err
	}
	return s.Finish()
}

func (b *bitmapSource) Key() []byte   { return b.key }
func (b *bitmapSource) Value() []byte { return b.value }
func (b *bitmapSource) Err() error    { return b.err }

// record puts what the scan did so far in its nodes, for EXPLAIN ANALYZE.
func (b *bitmapSource) record() {
	if b.sort != nil {
		b.index.analyzed = sortLines(b.sort.Stats())
	}
	b.scan.analyzed = []string{fmt.Sprintf("Heap Blocks: exact=%d", b.blocks)}
}

// Close removes the TID sort's files and closes the entries.
func (b *bitmapSource) Close() error {
	b.record()
	var err error
	if b.sort != nil {
		err = b.sort.Close()
	}
	if cerr := b.entries.Close(); err == nil {
		err = cerr
	}
	return err
}
