package sortspill

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"math/bits"
	"unsafe"

	"github.com/heapkv/heapkv/internal/base"
)

// Step folds one value into a group's state. state is nil for a new group
// (and after a Step that returned nil). It returns the new state, which may
// reuse state's backing array; the aggregate keeps what Step returns and
// counts its capacity against the budget. value is valid only during the
// call: the state must not keep a slice of it. A group's values reach Step
// in the order they were added.
type Step func(state, value []byte) []byte

// HashOptions configures a HashAgg.
type HashOptions struct {
	// Budget is the memory the aggregate may hold (hash_mem), at least
	// MinBudget.
	Budget int64
	// Temp is where spilled input goes when the groups outgrow the budget;
	// a nil Temp makes such an aggregate fail instead.
	Temp *TempSpace
}

// HashStats describe a hash aggregate, for EXPLAIN ANALYZE.
type HashStats struct {
	Batches    int   // 1 + partitions processed later ("Batches")
	PeakMemory int64 // most bytes the table and its buffers held at once ("Memory Usage")
	DiskBytes  int64 // most bytes its temp files held at once ("Disk Usage")
	Groups     int64 // groups emitted
	Partitions int   // partitions of the first spill ("Planned Partitions"), 0 if none
	Depth      int   // deepest recursion level processed, 0 if nothing spilled
	TempWrite  int64 // bytes written to temp files
	TempRead   int64 // bytes read back from them
}

const (
	// minPartitions and maxPartitions bound the partitions of one spill, as
	// PostgreSQL's HASHAGG_MIN_PARTITIONS and HASHAGG_MAX_PARTITIONS, but at
	// 256 rather than 1024: each partition is a file of its own, open until
	// it is read, and every spilling level holds a set, where PostgreSQL's
	// partitions are tapes in one file. 1024 would pass a common open-file
	// limit of 1024 at the first spill.
	minPartitions = 4
	maxPartitions = 256
	// minSpillBlockSize is the smallest block size of partition files: the
	// block size halves from minBlockSize down to it until minPartitions
	// write buffers fit in a quarter of the budget.
	minSpillBlockSize = 1 << 10
	// maxHashDepth is the recursion level from which a batch no longer
	// spills but aggregates over budget.
	maxHashDepth = 16
	// maxTableEntries caps the groups of one table, so that slot indexes
	// fit an int32.
	maxTableEntries = 1 << 30
	// hashEntrySize is the memory one entry of the table counts.
	hashEntrySize = int64(unsafe.Sizeof(hashEntry{}))
)

// A HashAgg groups (group, value) pairs and folds each group's values into
// a state with Step, within a memory budget, as PostgreSQL's HashAgg does
// since version 13. Add the pairs, call Finish, then read every group once,
// in no particular order, with Next, Group and State. Close removes every
// temp file; call it always, also after an error. A HashAgg is used by one
// goroutine.
//
// Spilling: groups live in an open-addressing hash table. When a new group
// would take the table past its share of the budget, the aggregate enters
// spill mode: values of groups already in the table still update their
// states, and each pair of a new group is written to one of P partition
// files chosen by bits of the group's hash (P a power of two in
// [minPartitions, maxPartitions]; see hashSpillLayout). When the input ends the
// table's groups are emitted, then each partition is read back as a batch
// of its own, with a fresh table and a hash seeded anew for its level, so
// that it spills again on fresh bits if it is still too large. Partitions
// are processed depth first, so at most one spill's files per level exist
// at once, and a partition's file is removed once it has been read. Each
// batch keeps at least one group in its table, so every partition holds
// fewer groups than the batch that wrote it and the recursion ends; from
// level maxHashDepth on a batch does not spill any more and aggregates over
// budget instead, a guard against a hash that fails to split.
//
// Memory: the table counts its slot array, its entries, the chunks its
// group keys are copied into and the capacity of every state; the spill
// counts the buffers of the partition writers, of the reader of the
// partition being processed and of the record being spilled. A growth of
// the table is counted before it is made, with the old and the new arrays
// both live. A new group is refused (the table spills) when it and a state
// of the table's mean size would take the table past the budget less a
// reserve for those buffers: hashWritersReserve, at most a quarter of the
// budget, and streamCost for the reader. When no record (group, value and a
// uvarint of the group's length) is longer than 1/16 of the spill block
// size (64 bytes at the 1 KiB blocks of a 64 KiB budget, 128 at 128 KiB,
// 256 from 256 KiB on), the aggregate therefore holds at most
//
//	Budget + S
//
// between calls, where S is the most by which a new group's first state
// exceeds the table's mean state when it is inserted: 0 when every state
// has the same capacity, as for count or sum. Longer records can double a
// stream's buffers, and a block read holds one whole: then up to
// Budget/4 + 3×R more, R the longest record. Two things come on top, as in
// PostgreSQL: states that grow after the table has spilled, since existing
// groups keep updating them, and a batch's first group, which is always
// taken however large it is. PeakMemory reports what was counted.
type HashAgg struct {
	ctx  context.Context
	step Step
	opts HashOptions
	op   *Op

	blockSize int   // block size of partition files
	maxParts  int   // partitions of a spill at most
	reserve   int64 // budget kept back for a spill's buffers
	chunkSize int   // size of the chunks group keys are copied into
	maxDepth  int   // level from which batches do not spill
	seeds     []maphash.Seed

	// The batch being built or emitted.
	level       int
	t           *hashTable
	parts       []*runWriter // the batch's partitions once it spills; nil until a partition's first record
	partBits    int          // log2(len(parts))
	writerBytes int64        // capacity of the partition writers' buffers
	rec         []byte       // the spilled record being built
	reader      *runReader   // the partition being read, while a batch is built from it

	pending []*run // partitions still to process, the deepest last

	added int64
	opState

	// Output.
	pos      int
	curGroup []byte
	curState []byte

	stats HashStats
}

// NewHashAgg returns a HashAgg that folds values with step. ctx cancels it:
// Add, Finish and Next return ctx's error once it is done, and the temp
// files are removed.
func NewHashAgg(ctx context.Context, step Step, o HashOptions) (*HashAgg, error) {
	if o.Budget < MinBudget {
		return nil, fmt.Errorf("sortspill: budget of %d bytes, at least %d", o.Budget, MinBudget)
	}
	if step == nil {
		return nil, errors.New("sortspill: hash aggregate without a step function")
	}
	if ctx == nil {
		ctx = context.Background()
	}
	bs, parts := hashSpillLayout(o.Budget)
	a := &HashAgg{
		ctx:       ctx,
		step:      step,
		opts:      o,
		op:        o.Temp.NewOp(),
		blockSize: bs,
		maxParts:  parts,
		reserve:   hashWritersReserve(parts, bs),
		chunkSize: int(min(max(o.Budget/16, minBlockSize), 1<<20)),
		maxDepth:  maxHashDepth,
		stats:     HashStats{Batches: 1},
	}
	a.newBatch(0)
	return a, nil
}

// hashSpillLayout returns the block size of partition files and the most
// partitions a spill may have under budget: the block size is
// minBlockSize, halved down to minSpillBlockSize while fewer than
// minPartitions writers would fit in a quarter of the budget, and the
// partitions are as many as fit in that quarter, a power of two in
// [minPartitions, maxPartitions]. A 64 KiB budget gets 4 partitions of
// 1 KiB blocks, 256 KiB gets 4 of 4 KiB, 4 MiB 64 and 16 MiB or more 256.
func hashSpillLayout(budget int64) (blockSize, parts int) {
	quarter := budget / 4
	for bs := minBlockSize; ; bs /= 2 {
		n := (quarter - hashWritersReserve(0, bs)) / streamCost(bs)
		if n >= minPartitions || bs <= minSpillBlockSize {
			n = min(max(n, minPartitions), maxPartitions)
			return bs, 1 << (bits.Len64(uint64(n)) - 1)
		}
	}
}

// hashWritersReserve is the memory n partition writers of block size bs
// hold between records when no record is longer than bs/16 (the slack of
// a stream's buffers, see rawCap): each writer's two buffers, and the
// scratch buffer a spilled record is built in, kept at most bs.
func hashWritersReserve(n, bs int) int64 {
	return int64(n)*streamCost(bs) + int64(bs)
}

// newBatch starts an empty table at level.
func (a *HashAgg) newBatch(level int) {
	a.level = level
	a.t = &hashTable{keys: arena{chunkSize: a.chunkSize}}
	a.pos = 0
	for len(a.seeds) <= level {
		a.seeds = append(a.seeds, maphash.MakeSeed())
	}
	a.stats.Depth = max(a.stats.Depth, level)
}

// memory returns the bytes the batch holds.
func (a *HashAgg) memory() int64 {
	m := a.writerBytes + int64(cap(a.rec))
	if a.t != nil {
		m += a.t.memory()
	}
	if r := a.reader; r != nil {
		m += int64(cap(r.raw) + cap(r.buf))
	}
	return m
}

func (a *HashAgg) notePeak(extra int64) {
	a.stats.PeakMemory = max(a.stats.PeakMemory, a.memory()+extra)
}

// tableLimit returns the memory the table may grow to: the budget less the
// spill's reserve and the reader's.
func (a *HashAgg) tableLimit() int64 {
	lim := a.opts.Budget - a.reserve
	if r := a.reader; r != nil {
		lim -= max(streamCost(a.blockSize), int64(cap(r.raw)+cap(r.buf)))
	}
	return lim
}

// Add folds value into group's state. It copies group if it keeps it; value
// is passed to Step or copied to a partition file.
func (a *HashAgg) Add(group, value []byte) (err error) {
	defer a.guard()
	if err := a.usable(false); err != nil {
		return err
	}
	if n := uvarintLen(len(group)) + len(group) + len(value); n > MaxRecordSize {
		return fmt.Errorf("sortspill: group and value of %d bytes, at most %d", n, MaxRecordSize)
	}
	if a.added%1024 == 0 {
		if err := a.ctx.Err(); err != nil {
			return a.fail(err)
		}
	}
	a.added++
	if err := a.consume(group, value, -1); err != nil {
		return a.fail(err)
	}
	return nil
}

func uvarintLen(n int) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], uint64(n))
}

// consume folds one pair into the batch being built; left is how many
// records the batch's input still holds after this one, -1 if unknown.
func (a *HashAgg) consume(group, value []byte, left int64) error {
	t := a.t
	h := maphash.Bytes(a.seeds[a.level], group)
	if i := t.find(h, group); i >= 0 {
		a.update(i, value)
		return nil
	}
	if a.parts == nil && len(t.entries) > 0 {
		full := len(t.entries) >= maxTableEntries
		if a.level < a.maxDepth {
			full = full || t.memory()+t.growth(len(group))+t.meanState() > a.tableLimit()
			if full {
				a.startSpill(left)
			}
		} else if full {
			return fmt.Errorf("sortspill: more than %d groups in one batch at the depth limit", maxTableEntries)
		}
	}
	if a.parts != nil {
		return a.spill(h, group, value)
	}
	a.notePeak(t.growth(len(group))) // old and new arrays while they are copied
	a.update(t.insert(h, group), value)
	return nil
}

// update folds value into entry i's state.
func (a *HashAgg) update(i int, value []byte) {
	e := &a.t.entries[i]
	before := cap(e.state)
	e.state = a.step(e.state, value)
	a.t.stateBytes += int64(cap(e.state) - before)
	a.notePeak(0)
}

// startSpill puts the batch in spill mode. The input batch, which cannot
// know how many groups are to come, takes as many partitions as fit. A
// partition's batch knows how many records are left, at most as many new
// groups: it takes enough partitions for 1.5 times that many at the table's
// present size each, as PostgreSQL sizes its partitions from an estimate
// times 1.5, within the same bounds.
func (a *HashAgg) startSpill(left int64) {
	n := a.maxParts
	if left >= 0 {
		want := (3*left/2)/int64(len(a.t.entries)) + 1
		n = min(max(1<<bits.Len64(uint64(want-1)), minPartitions), a.maxParts)
	}
	a.parts = make([]*runWriter, n)
	a.partBits = bits.Len(uint(n)) - 1
	if a.stats.Partitions == 0 {
		a.stats.Partitions = n
	}
}

// spill writes a pair of a new group to its partition, chosen by the
// hash's top bits (the table's slots use its low bits).
func (a *HashAgg) spill(h uint64, group, value []byte) error {
	p := h >> (64 - a.partBits)
	w := a.parts[p]
	if w == nil {
		tf, err := a.op.create()
		if err != nil {
			return err
		}
		w = newRunWriter(tf, a.blockSize, nil)
		a.parts[p] = w
		a.writerBytes += writerCap(w)
	}
	a.rec = binary.AppendUvarint(a.rec[:0], uint64(len(group)))
	a.rec = append(a.rec, group...)
	a.rec = append(a.rec, value...)
	before := writerCap(w)
	err := w.add(a.rec)
	a.writerBytes += writerCap(w) - before
	a.notePeak(0)
	if cap(a.rec) > a.blockSize {
		a.rec = nil
	}
	return err
}

// writerCap is the memory a run writer's buffers hold.
func writerCap(w *runWriter) int64 { return int64(cap(w.raw) + cap(w.buf)) }

// finishSpill writes the partitions' last blocks and puts them on the
// stack of partitions to process.
func (a *HashAgg) finishSpill() error {
	for _, w := range a.parts {
		if w == nil {
			continue
		}
		r, err := w.finish(a.level + 1)
		if err != nil {
			return err
		}
		a.pending = append(a.pending, r)
	}
	a.parts, a.partBits, a.writerBytes, a.rec = nil, 0, 0, nil
	return nil
}

// Finish ends the input. The table's groups are ready for Next; spilled
// partitions follow as Next reaches them.
func (a *HashAgg) Finish() (err error) {
	defer a.guard()
	if err := a.usable(false); err != nil {
		return err
	}
	a.finished = true
	if err := a.ctx.Err(); err != nil {
		return a.fail(err)
	}
	if err := a.finishSpill(); err != nil {
		return a.fail(err)
	}
	return nil
}

// Next moves to the next group; it returns false at the end or on an error
// (see Err). Reaching the end of a batch drops its table and builds the
// next one from a partition file, which reads that whole partition.
func (a *HashAgg) Next() bool {
	defer a.guard()
	if a.usable(true) != nil {
		return false
	}
	a.curGroup, a.curState = nil, nil
	if a.stats.Groups%1024 == 0 {
		if err := a.ctx.Err(); err != nil {
			a.fail(err)
			return false
		}
	}
	for {
		if t := a.t; t != nil && a.pos < len(t.entries) {
			e := &t.entries[a.pos]
			a.pos++
			a.curGroup, a.curState = e.key, e.state
			a.stats.Groups++
			return true
		}
		a.t = nil
		if len(a.pending) == 0 {
			return false
		}
		r := a.pending[len(a.pending)-1]
		a.pending = a.pending[:len(a.pending)-1]
		if err := a.processPartition(r); err != nil {
			a.fail(err)
			return false
		}
	}
}

// processPartition builds the next batch from a partition file, spilling
// again if it must, and removes the file.
func (a *HashAgg) processPartition(r *run) error {
	a.newBatch(r.level)
	a.stats.Batches++
	a.reader = openRun(r, a.blockSize, nil)
	for n := int64(0); ; n++ {
		if n%1024 == 0 {
			if err := a.ctx.Err(); err != nil {
				return err
			}
		}
		ok, err := a.reader.next()
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		rec := a.reader.rec
		gl, k := binary.Uvarint(rec)
		if k <= 0 || gl > uint64(len(rec)-k) {
			return base.CorruptionErrorf("sortspill: partition file %s: bad group length in record %d", r.tf.name, n)
		}
		group, value := rec[k:k+int(gl)], rec[k+int(gl):]
		if err := a.consume(group, value, r.records-n-1); err != nil {
			return err
		}
	}
	a.reader = nil
	if err := r.tf.remove(); err != nil {
		return err
	}
	return a.finishSpill()
}

// Group returns the current group's key. It is valid until the next call
// of Next or Close.
func (a *HashAgg) Group() []byte { return a.curGroup }

// State returns the current group's state. It is valid until the next call
// of Next or Close.
func (a *HashAgg) State() []byte { return a.curState }

// Err returns the error that stopped the aggregate, if any.
func (a *HashAgg) Err() error { return a.err }

// Stats returns the aggregate's figures; they are complete once Next has
// returned false.
func (a *HashAgg) Stats() HashStats {
	st := a.stats
	st.DiskBytes = a.op.Peak()
	st.TempWrite, st.TempRead = a.op.Written(), a.op.Read()
	return st
}

// Close releases the aggregate's memory and removes its temp files. It
// returns the first error of removing them; an aggregate that failed was
// closed already and Close returns nil.
func (a *HashAgg) Close() error {
	if a.closed {
		return nil
	}
	a.closed = true
	a.t, a.parts, a.reader, a.pending = nil, nil, nil, nil
	a.rec, a.writerBytes = nil, 0
	a.curGroup, a.curState = nil, nil
	return a.op.Close()
}

// fail records err, removes the temp files and returns err.
func (a *HashAgg) fail(err error) error {
	err = a.failed(err)
	a.Close()
	return err
}

// guard removes the temp files if Step panics, then lets the panic go on.
func (a *HashAgg) guard() {
	if r := recover(); r != nil {
		a.fail(fmt.Errorf("sortspill: panic: %v", r))
		panic(r)
	}
}

// hashTable is an open-addressing table with linear probing. slots holds
// an entry's index plus one, 0 for an empty slot; its length is a power of
// two and at most three quarters of it are used, so the entries' capacity
// is kept at exactly three quarters and both grow together. Group keys are
// copied into an arena, as the Sorter copies records.
type hashTable struct {
	slots      []int32
	entries    []hashEntry
	keys       arena
	stateBytes int64 // sum of the states' capacities
}

type hashEntry struct {
	hash  uint64
	key   []byte
	state []byte
}

const initialSlots = 16

// memory returns the bytes the table holds.
func (t *hashTable) memory() int64 {
	return 4*int64(len(t.slots)) + hashEntrySize*int64(cap(t.entries)) +
		t.keys.memory() + t.stateBytes
}

// meanState returns the mean capacity of the table's states.
func (t *hashTable) meanState() int64 {
	if len(t.entries) == 0 {
		return 0
	}
	return t.stateBytes / int64(len(t.entries))
}

// find returns the index of key's entry, or -1.
func (t *hashTable) find(h uint64, key []byte) int {
	if len(t.slots) == 0 {
		return -1
	}
	mask := uint64(len(t.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := t.slots[i]
		if s == 0 {
			return -1
		}
		if e := &t.entries[s-1]; e.hash == h && bytes.Equal(e.key, key) {
			return int(s - 1)
		}
	}
}

// growth returns the bytes inserting a key of n bytes would allocate.
func (t *hashTable) growth(n int) int64 {
	var g int64
	if len(t.entries) == cap(t.entries) {
		s := max(2*len(t.slots), initialSlots)
		g += 4*int64(s) + hashEntrySize*int64(s/4*3)
	}
	g += t.keys.growth(n)
	return g
}

// insert adds an entry for a key that is not in the table, with a nil
// state, and returns its index.
func (t *hashTable) insert(h uint64, key []byte) int {
	if len(t.entries) == cap(t.entries) {
		t.grow()
	}
	i := len(t.entries)
	t.entries = append(t.entries, hashEntry{hash: h, key: t.keys.alloc(key)})
	t.place(h, int32(i+1))
	return i
}

// grow doubles the slots, rehashing every entry, and the entries' capacity.
func (t *hashTable) grow() {
	s := max(2*len(t.slots), initialSlots)
	entries := make([]hashEntry, len(t.entries), s/4*3)
	copy(entries, t.entries)
	t.entries = entries
	t.slots = make([]int32, s)
	for i := range t.entries {
		t.place(t.entries[i].hash, int32(i+1))
	}
}

// place puts slot value v at the first free slot from h's.
func (t *hashTable) place(h uint64, v int32) {
	mask := uint64(len(t.slots) - 1)
	i := h & mask
	for t.slots[i] != 0 {
		i = (i + 1) & mask
	}
	t.slots[i] = v
}
