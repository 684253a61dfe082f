package table

import (
	"math"
	"math/rand/v2"
	"slices"

	"github.com/heapkv/heapkv/btree"
	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/pagecache"
	"github.com/heapkv/heapkv/txn"
)

// The pieces of a bitmap heap scan, which exec puts together: the index
// entries of a range without touching the heap, then each entry's chain
// fetched in heap order through a bulk-read ring.

// Entries walks the index entries of [start, end) in key order: each key
// and the TID of its chain's newest version. It reads no heap page, so an
// entry may lead to no version a snapshot sees.
type Entries struct {
	it *btree.Iterator
}

// IndexEntries returns the entries of [start, end) (nil: open).
func (t *Table) IndexEntries(start, end []byte) *Entries {
	return &Entries{it: t.tree.Scan(start, end, false)}
}

// Next moves to the next entry.
func (e *Entries) Next() bool { return e.it.Next() }

// Key returns the current entry's key, valid until the next Next.
func (e *Entries) Key() []byte { return e.it.Key() }

// TID returns the current entry's TID.
func (e *Entries) TID() base.TID { return e.it.TID() }

// Err returns the error that stopped the walk, if any.
func (e *Entries) Err() error { return e.it.Err() }

// Close releases the walk.
func (e *Entries) Close() { e.it.Close() }

// NewBulkRead returns a bulk-read ring for FetchVia (PostgreSQL's
// BAS_BULKREAD): a large scan cycles through it instead of the whole pool.
func (t *Table) NewBulkRead() *pagecache.Strategy { return t.pool.NewStrategy(pagecache.BulkRead) }

// FetchVia returns the version of key that snap sees in the chain whose
// newest version is at tid, appended to dst, reading pages through
// strategy. Like Get, it needs snap taken before the entry was read.
func (t *Table) FetchVia(strategy *pagecache.Strategy, tid base.TID, key []byte, snap *txn.Snapshot, dst []byte) ([]byte, bool, error) {
	f, ok, err := t.heap.GetVia(strategy, tid, key, snap, dst)
	if err != nil || !ok {
		return nil, false, err
	}
	if f.Value == nil {
		return []byte{}, true, nil
	}
	return f.Value, true, nil
}

// Statistics are what Analyze learns of a table, for the planner: its size
// and how well key order follows heap order (PostgreSQL's pg_class and
// pg_stats.correlation).
type Statistics struct {
	Pages uint64 // heap pages
	Rows  uint64 // index entries (keys, live or not)
	// Correlation is the Pearson coefficient between a key's rank in key
	// order and its newest version's heap block: near 1 when rows were
	// loaded in key order, near 0 when the heap is in random key order.
	Correlation float64
	// Sample holds up to AnalyzeSample keys in key order, drawn evenly at
	// random: the planner estimates a range's share of the rows by the
	// share of the sample within it.
	Sample [][]byte
}

// AnalyzeSample is how many keys Analyze keeps: 300 times PostgreSQL's
// default statistics target of 100.
const AnalyzeSample = 30000

// Analyze walks the whole index (not the heap) and returns the table's
// statistics. A reservoir sample (Vitter's algorithm R) keeps AnalyzeSample
// keys with their ranks and blocks; the correlation is computed over them.
func (t *Table) Analyze(seed uint64) (Statistics, error) {
	type sampled struct {
		rank  uint64
		block base.BlockNum
		key   []byte
	}
	rng := rand.New(rand.NewPCG(seed, 0x616e616c797a65))
	res := make([]sampled, 0, AnalyzeSample)
	it := t.tree.Scan(nil, nil, false)
	defer it.Close()
	var n uint64
	for ; it.Next(); n++ {
		s := sampled{rank: n, block: it.TID().Block}
		if len(res) < AnalyzeSample {
			s.key = slices.Clone(it.Key())
			res = append(res, s)
			continue
		}
		if j := rng.Uint64N(n + 1); j < AnalyzeSample {
			s.key = append(res[j].key[:0], it.Key()...)
			res[j] = s
		}
	}
	if err := it.Err(); err != nil {
		return Statistics{}, err
	}
	pages, err := t.heap.NBlocks()
	if err != nil {
		return Statistics{}, err
	}
	slices.SortFunc(res, func(a, b sampled) int {
		switch {
		case a.rank < b.rank:
			return -1
		case a.rank > b.rank:
			return 1
		}
		return 0
	})
	st := Statistics{Pages: uint64(pages), Rows: n, Sample: make([][]byte, len(res))}
	var sx, sy, sxx, syy, sxy float64
	for i, s := range res {
		st.Sample[i] = s.key
		x, y := float64(i), float64(s.block)
		sx, sy, sxx, syy, sxy = sx+x, sy+y, sxx+x*x, syy+y*y, sxy+x*y
	}
	if k := float64(len(res)); k > 1 {
		cov := sxy - sx*sy/k
		vx, vy := sxx-sx*sx/k, syy-sy*sy/k
		if vx > 0 && vy > 0 {
			st.Correlation = cov / math.Sqrt(vx*vy)
		}
	}
	return st, nil
}
