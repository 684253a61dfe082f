package sortspill

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
)

// MinBudget is the smallest budget a sort or hash accepts, work_mem's
// minimum; DefaultWorkMem is work_mem's default.
const (
	MinBudget      = 64 << 10
	DefaultWorkMem = 4 << 20
)

// maxMergeOrder caps how many runs one merge reads at once, as PostgreSQL
// caps its merge order at 500.
const maxMergeOrder = 500

// SortMethod says how a sort ran, in EXPLAIN ANALYZE's words.
type SortMethod int

const (
	// Quicksort: every record fit in the budget and was sorted in memory.
	Quicksort SortMethod = iota
	// TopNHeapsort: a limit let a bounded heap keep only the best records.
	TopNHeapsort
	// ExternalMerge: records went to sorted runs on disk, merged on output.
	ExternalMerge
)

func (m SortMethod) String() string {
	switch m {
	case Quicksort:
		return "quicksort"
	case TopNHeapsort:
		return "top-N heapsort"
	case ExternalMerge:
		return "external merge"
	}
	return fmt.Sprintf("SortMethod(%d)", int(m))
}

// SortOptions configures a Sorter.
type SortOptions struct {
	// Budget is the memory the sort may hold (work_mem), at least MinBudget.
	Budget int64
	// Limit, when positive, keeps only the first Limit records of the order
	// (ORDER BY ... LIMIT): the sort may then use a bounded heap.
	Limit int64
	// Temp is where runs go when the records outgrow the budget; a nil Temp
	// makes such a sort fail instead.
	Temp *TempSpace
	// Abbrev, if set, returns a record's abbreviated key (PostgreSQL's
	// abbreviated keys): a uint64 whose order agrees with the comparator's,
	// so that Abbrev(a) < Abbrev(b) implies cmp(a, b) < 0. The sort and the
	// merges compare abbreviated keys first, which needs no look at the
	// records, and call the comparator only on ties. PrefixAbbrev serves
	// bytes.Compare and any order that starts with a record's bytes.
	Abbrev func(rec []byte) uint64
}

// PrefixAbbrev is an abbreviated key for byte order: the first 8 bytes of b,
// big endian, padded with zeros. Padding keeps the order: a record shorter
// than 8 bytes sorts at or before every record it is a prefix of, and an
// equal result is a tie for the comparator to break.
func PrefixAbbrev(b []byte) uint64 {
	if len(b) >= 8 {
		return binary.BigEndian.Uint64(b)
	}
	var buf [8]byte
	copy(buf[:], b)
	return binary.BigEndian.Uint64(buf[:])
}

// item is a record of the load with its abbreviated key.
type item struct {
	ab  uint64
	rec []byte
}

// itemSize is what the load's index counts per record.
const itemSize = 32

// compare orders items by abbreviated key, then by the comparator.
func (s *Sorter) compare(a, b item) int {
	if a.ab != b.ab {
		if a.ab < b.ab {
			return -1
		}
		return 1
	}
	return s.cmp(a.rec, b.rec)
}

func (s *Sorter) abbrev(rec []byte) uint64 {
	if s.opts.Abbrev == nil {
		return 0
	}
	return s.opts.Abbrev(rec)
}

// SortStats describe a finished sort, for EXPLAIN ANALYZE.
type SortStats struct {
	Method     SortMethod
	Records    int64 // records added
	PeakMemory int64 // most bytes of records and buffers held at once
	DiskBytes  int64 // most bytes the sort's temp files held at once
	Runs       int   // sorted runs written before merging
	Passes     int   // merge passes over the deepest record, the last (streamed) one included
	MergeOrder int   // runs one merge reads at once
	TempWrite  int64 // bytes written to temp files
	TempRead   int64 // bytes read back from them
}

// A Sorter sorts byte records under a comparator within a memory budget.
// Add the records, call Finish, then read them in order with Next and
// Record. Close removes every temp file; call it always, also after an
// error. A Sorter is used by one goroutine; it does not sort stably.
//
// Memory: records are copied into chunks, slabs of one stream's size (see
// bufPool) that the merge's readers take over, and the index of them counts
// 32 bytes a record (the slice and its abbreviated key). When the next record would pass
// the budget less one run writer's buffers, the load is sorted and written
// as a run, and the chunks are reused for the next load. A record larger
// than the whole budget is still taken (alone), so the bound is the budget
// or one record, whichever is larger, plus the constant of the package doc.
type Sorter struct {
	ctx  context.Context
	cmp  func(a, b []byte) int
	opts SortOptions
	op   *Op

	blockSize int
	pool      *bufPool
	avail     int64 // budget for records and their index

	// The load being gathered in memory.
	load    arena
	recs    []item
	bounded bool // recs is a max-heap of the Limit best records

	runs  []*run
	added int64

	opState

	// Output.
	pos     int // next record of recs (in memory)
	merge   *merger
	cur     []byte
	emitted int64

	stats SortStats
}

// NewSorter returns a Sorter. ctx cancels it: Add, Finish and Next return
// ctx's error once it is done, and the temp files are removed.
func NewSorter(ctx context.Context, cmp func(a, b []byte) int, o SortOptions) (*Sorter, error) {
	if o.Budget < MinBudget {
		return nil, fmt.Errorf("sortspill: budget of %d bytes, at least %d", o.Budget, MinBudget)
	}
	if o.Limit < 0 {
		return nil, fmt.Errorf("sortspill: negative limit %d", o.Limit)
	}
	if ctx == nil {
		ctx = context.Background()
	}
	bs := blockSizeFor(o.Budget)
	s := &Sorter{
		ctx:       ctx,
		cmp:       cmp,
		opts:      o,
		op:        o.Temp.NewOp(),
		blockSize: bs,
		pool:      newBufPool(bs),
		avail:     o.Budget - streamCost(bs),
	}
	s.load = arena{chunkSize: int(streamCost(bs)), newChunk: func() []byte { return s.pool.get(bs)[:0] }}
	return s, nil
}

// memory returns the bytes the current load holds.
func (s *Sorter) memory() int64 {
	return s.load.memory() + int64(cap(s.recs))*itemSize
}

func (s *Sorter) notePeak() { s.stats.PeakMemory = max(s.stats.PeakMemory, s.memory()) }

// Add copies rec into the sort.
func (s *Sorter) Add(rec []byte) (err error) {
	defer s.guard()
	if err := s.usable(false); err != nil {
		return err
	}
	if len(rec) > MaxRecordSize {
		return fmt.Errorf("sortspill: record of %d bytes, at most %d", len(rec), MaxRecordSize)
	}
	s.added++
	if s.bounded {
		s.pushBounded(rec)
		return nil
	}
	if len(s.recs) > 0 && s.memory()+s.growth(len(rec)) > s.avail {
		if s.opts.Limit > 0 && int64(len(s.recs)) > s.opts.Limit && len(s.runs) == 0 {
			s.startBounded()
			s.pushBounded(rec)
			return nil
		}
		if err := s.spill(); err != nil {
			return s.fail(err)
		}
	}
	s.recs = s.appendIndex(s.recs, item{ab: s.abbrev(rec), rec: s.load.alloc(rec)})
	s.notePeak()
	if s.opts.Limit > 0 && int64(len(s.recs)) > 2*s.opts.Limit && len(s.runs) == 0 {
		s.startBounded()
	}
	return nil
}

// growth returns the bytes adding a record of n bytes would allocate.
func (s *Sorter) growth(n int) int64 {
	g := s.load.growth(n)
	if len(s.recs) == cap(s.recs) {
		g += int64(indexCap(cap(s.recs))) * itemSize
	}
	return g
}

func indexCap(c int) int { return max(2*c, 256) }

// appendIndex appends to the index, growing it by doubling under the count
// growth made.
func (s *Sorter) appendIndex(recs []item, r item) []item {
	if len(recs) == cap(recs) {
		grown := make([]item, len(recs), indexCap(cap(recs)))
		copy(grown, recs)
		recs = grown
	}
	return append(recs, r)
}

// resetLoad empties the load and keeps its chunks for the next one.
func (s *Sorter) resetLoad() {
	clear(s.recs)
	s.recs = s.recs[:0]
	s.load.reset()
}

// freeLoad gives the load's chunks to the pool, where the merge's readers
// find them.
func (s *Sorter) freeLoad() {
	s.load.release(s.pool.put)
	s.recs = nil
}

// spill sorts the load and writes it as a run.
func (s *Sorter) spill() error {
	if err := s.ctx.Err(); err != nil {
		return err
	}
	slices.SortFunc(s.recs, s.compare)
	keep := s.recs
	if s.opts.Limit > 0 && int64(len(keep)) > s.opts.Limit {
		keep = keep[:s.opts.Limit] // no later record of this run can be among the first Limit
	}
	tf, err := s.op.create()
	if err != nil {
		return err
	}
	w := newRunWriter(tf, s.blockSize, s.pool)
	for _, r := range keep {
		if err := w.add(r.rec); err != nil {
			return err
		}
	}
	r, err := w.finish(0)
	if err != nil {
		return err
	}
	s.runs = append(s.runs, r)
	s.stats.Runs++
	s.resetLoad()
	return nil
}

// startBounded turns the load into a max-heap of the Limit best records.
func (s *Sorter) startBounded() {
	s.bounded = true
	h := s.recs
	for i := len(h)/2 - 1; i >= 0; i-- {
		s.siftDown(h, i)
	}
	for int64(len(h)) > s.opts.Limit {
		last := len(h) - 1
		h[0] = h[last]
		h[last] = item{}
		h = h[:last]
		s.siftDown(h, 0)
	}
	s.recs = h
}

// pushBounded offers rec to the bounded heap: it replaces the worst record
// kept if it is better. Once bounded the sort never spills; like
// PostgreSQL's, it may pass the budget if later records are wider.
func (s *Sorter) pushBounded(rec []byte) {
	h := s.recs
	it := item{ab: s.abbrev(rec), rec: rec}
	if s.compare(it, h[0]) >= 0 {
		return
	}
	top := h[0].rec
	if cap(top) >= len(rec) {
		top = top[:len(rec)]
	} else {
		top = make([]byte, len(rec))
		s.load.bigBytes += int64(len(rec))
	}
	copy(top, rec)
	h[0] = item{ab: it.ab, rec: top}
	s.siftDown(h, 0)
	s.notePeak()
}

// siftDown restores the max-heap order below i.
func (s *Sorter) siftDown(h []item, i int) {
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		big := l
		if r := l + 1; r < len(h) && s.compare(h[r], h[l]) > 0 {
			big = r
		}
		if s.compare(h[big], h[i]) <= 0 {
			return
		}
		h[i], h[big] = h[big], h[i]
		i = big
	}
}

// Finish ends the input and prepares the output: it sorts the load in
// memory, or writes the last run and merges runs until one merge can stream
// them all.
func (s *Sorter) Finish() (err error) {
	defer s.guard()
	if err := s.usable(false); err != nil {
		return err
	}
	s.finished = true
	s.stats.Records = s.added
	if err := s.ctx.Err(); err != nil {
		return s.fail(err)
	}
	switch {
	case s.bounded:
		slices.SortFunc(s.recs, s.compare)
		s.stats.Method = TopNHeapsort
		s.stats.Passes = 0
		return nil
	case len(s.runs) == 0:
		slices.SortFunc(s.recs, s.compare)
		s.stats.Method = Quicksort
		return nil
	}
	if len(s.recs) > 0 {
		if err := s.spill(); err != nil {
			return s.fail(err)
		}
	}
	s.freeLoad()
	s.stats.Method = ExternalMerge
	order := int(min(max((s.opts.Budget-streamCost(s.blockSize))/streamCost(s.blockSize), 2), maxMergeOrder))
	s.stats.MergeOrder = order
	for len(s.runs) > order {
		if err := s.mergeSmallest(min(order, len(s.runs)-order+1)); err != nil {
			return s.fail(err)
		}
	}
	level := 0
	s.stats.PeakMemory = max(s.stats.PeakMemory, int64(len(s.runs))*streamCost(s.blockSize))
	readers := make([]*runReader, len(s.runs))
	for i, r := range s.runs {
		readers[i] = openRun(r, s.blockSize, s.pool)
		level = max(level, r.level)
	}
	s.stats.Passes = level + 1
	m, err := newMerger(s.cmp, s.opts.Abbrev, readers)
	if err != nil {
		return s.fail(err)
	}
	s.merge = m
	s.stats.DiskBytes = s.op.Peak()
	return nil
}

// mergeSmallest merges the k smallest runs into one. Merging the smallest
// first rewrites the fewest bytes, as a Huffman tree does.
func (s *Sorter) mergeSmallest(k int) error {
	slices.SortStableFunc(s.runs, func(a, b *run) int { return int(a.tf.size - b.tf.size) })
	in := s.runs[:k]
	s.stats.PeakMemory = max(s.stats.PeakMemory, int64(k+1)*streamCost(s.blockSize))
	readers := make([]*runReader, k)
	level := 0
	for i, r := range in {
		readers[i] = openRun(r, s.blockSize, s.pool)
		level = max(level, r.level)
	}
	m, err := newMerger(s.cmp, s.opts.Abbrev, readers)
	if err != nil {
		return err
	}
	tf, err := s.op.create()
	if err != nil {
		return err
	}
	w := newRunWriter(tf, s.blockSize, s.pool)
	for n := 0; ; n++ {
		if n%1024 == 0 {
			if err := s.ctx.Err(); err != nil {
				return err
			}
		}
		rec, ok, err := m.next()
		if err != nil {
			return err
		}
		if !ok || (s.opts.Limit > 0 && w.records == s.opts.Limit) {
			break
		}
		if err := w.add(rec); err != nil {
			return err
		}
	}
	out, err := w.finish(level + 1)
	if err != nil {
		return err
	}
	for _, r := range in {
		if err := r.tf.remove(); err != nil {
			return err
		}
	}
	s.runs = append([]*run{out}, s.runs[k:]...)
	return nil
}

// Next moves to the next record in order; it returns false at the end or
// on an error (see Err).
func (s *Sorter) Next() bool {
	defer s.guard()
	if s.usable(true) != nil {
		return false
	}
	if s.opts.Limit > 0 && s.emitted == s.opts.Limit {
		s.cur = nil
		return false
	}
	if s.merge == nil {
		if s.pos == len(s.recs) {
			s.cur = nil
			return false
		}
		s.cur = s.recs[s.pos].rec
		s.pos++
		s.emitted++
		return true
	}
	if s.emitted%1024 == 0 {
		if err := s.ctx.Err(); err != nil {
			s.fail(err)
			return false
		}
	}
	rec, ok, err := s.merge.next()
	if err != nil {
		s.fail(err)
		return false
	}
	s.cur = rec
	if ok {
		s.emitted++
	}
	return ok
}

// Record returns the current record. It is valid until the next call of
// Next or Close.
func (s *Sorter) Record() []byte { return s.cur }

// Err returns the error that stopped the sort, if any.
func (s *Sorter) Err() error { return s.err }

// Stats returns the sort's figures; they are complete once Next has
// returned false.
func (s *Sorter) Stats() SortStats {
	st := s.stats
	st.TempWrite, st.TempRead = s.op.Written(), s.op.Read()
	return st
}

// Close releases the sort's memory and removes its temp files. It returns
// the first error of removing them; a sort that failed was closed already
// and Close returns nil.
func (s *Sorter) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	s.freeLoad()
	s.merge = nil
	s.cur = nil
	return s.op.Close()
}

// fail records err, removes the temp files and returns err.
func (s *Sorter) fail(err error) error {
	err = s.failed(err)
	s.Close()
	return err
}

// guard removes the temp files if the comparator panics, then lets the
// panic go on.
func (s *Sorter) guard() {
	if r := recover(); r != nil {
		s.fail(fmt.Errorf("sortspill: panic: %v", r))
		panic(r)
	}
}
