package exec

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/heapkv/heapkv/sortspill"
)

// ErrNotNumber is returned when Sum meets a value that is not a decimal
// integer, or a sum passes the int64 range.
var ErrNotNumber = errors.New("exec: value is not a number")

// GroupKind says how an Aggregate groups rows.
type GroupKind int

const (
	// GroupNone aggregates the whole range as one group.
	GroupNone GroupKind = iota
	// GroupPrefix groups by the key up to its first GroupBy.Sep byte; a key
	// without one is a group of its own.
	GroupPrefix
	// GroupLength groups by the key's first GroupBy.N bytes.
	GroupLength
	// GroupValue groups by value: the range's distinct values.
	GroupValue
	// GroupFunc groups by GroupBy.Func of each row.
	GroupFunc
)

// GroupBy is an Aggregate's grouping.
type GroupBy struct {
	Kind GroupKind
	Sep  byte // GroupPrefix
	N    int  // GroupLength
	// Func derives a row's group for GroupFunc; it must not keep key or
	// value.
	Func func(key, value []byte) []byte
}

// group returns a row's group.
func (g *GroupBy) group(key, value []byte) []byte {
	switch g.Kind {
	case GroupPrefix:
		if i := bytes.IndexByte(key, g.Sep); i >= 0 {
			return key[:i]
		}
		return key
	case GroupLength:
		return key[:min(len(key), g.N)]
	case GroupValue:
		return value
	case GroupFunc:
		return g.Func(key, value)
	}
	return nil
}

func (g *GroupBy) String() string {
	switch g.Kind {
	case GroupPrefix:
		return fmt.Sprintf("key prefix up to %q", g.Sep)
	case GroupLength:
		return fmt.Sprintf("first %d bytes of key", g.N)
	case GroupValue:
		return "value"
	case GroupFunc:
		return "function"
	}
	return "none"
}

// Funcs are the aggregates to compute, a set.
type Funcs uint8

const (
	Count         Funcs = 1 << iota // rows
	CountDistinct                   // distinct values
	Min                             // least value, in byte order
	Max                             // greatest value
	Sum                             // of values read as decimal integers
)

// Aggregate asks for aggregates of a range's values, per group.
type Aggregate struct {
	Start, End []byte
	GroupBy    GroupBy
	Funcs      Funcs
	// Ordered returns the groups in ascending order of their keys; without
	// it they come in any order.
	Ordered bool
}

// Group is one group's result. Only the fields of the Funcs asked for are
// set.
type Group struct {
	Key      []byte
	Count    int64
	Distinct int64
	Min, Max []byte
	Sum      int64
}

func (a *Aggregate) check() error {
	switch {
	case a.GroupBy.Kind < GroupNone || a.GroupBy.Kind > GroupFunc:
		return fmt.Errorf("exec: unknown grouping %d", int(a.GroupBy.Kind))
	case a.GroupBy.Kind == GroupFunc && a.GroupBy.Func == nil:
		return errors.New("exec: grouping by function without a Func")
	case a.GroupBy.Kind == GroupLength && a.GroupBy.N <= 0:
		return fmt.Errorf("exec: grouping by the first %d bytes of the key", a.GroupBy.N)
	case a.Funcs == 0:
		return errors.New("exec: an aggregate with no function")
	case a.Funcs >= Sum<<1:
		return fmt.Errorf("exec: unknown aggregate functions %#x", uint8(a.Funcs))
	}
	return nil
}

// AggPlan is a planned Aggregate.
type AggPlan struct {
	Plan
	a      Aggregate
	env    Env
	sorted bool // sort by (group, value) and aggregate in one pass
	scan   *node
	sort   *node
	agg    *node
}

// PlanAggregate plans a: a hash aggregate over the index scan, or, for
// CountDistinct or Ordered, a sort by group and value under a group
// aggregate, as PostgreSQL sorts for count(DISTINCT).
func PlanAggregate(a Aggregate, env Env) (*AggPlan, error) {
	if err := a.check(); err != nil {
		return nil, err
	}
	p := &AggPlan{a: a, env: env, sorted: a.Funcs&CountDistinct != 0 || a.Ordered}
	p.scan = &node{name: "Index Scan on " + env.Keyspace, est: env.EstRows, details: []string{"Index Cond: " + rangeCond(a.Start, a.End)}}
	top := p.scan
	key := "Group Key: " + a.GroupBy.String()
	name := "HashAggregate"
	if p.sorted {
		p.sort = &node{name: "Sort", est: env.EstRows, details: []string{"Sort Key: " + a.GroupBy.String() + ", value"}, child: top}
		top = p.sort
		name = "GroupAggregate"
	}
	if a.GroupBy.Kind == GroupNone {
		name, key = "Aggregate", ""
	}
	p.agg = &node{name: name, est: -1, child: top}
	if a.GroupBy.Kind == GroupNone {
		p.agg.est = 1
	} else {
		p.agg.details = []string{key}
	}
	p.agg.details = append(p.agg.details, "Output: "+a.Funcs.String())
	p.root = p.agg
	return p, nil
}

func (f Funcs) String() string {
	var b []byte
	for _, x := range []struct {
		f    Funcs
		name string
	}{{Count, "count"}, {CountDistinct, "count(distinct)"}, {Min, "min"}, {Max, "max"}, {Sum, "sum"}} {
		if f&x.f != 0 {
			if len(b) > 0 {
				b = append(b, ", "...)
			}
			b = append(b, x.name...)
		}
	}
	return string(b)
}

// Groups is a running aggregate. Group's slices are valid until the next
// Next. Close it always; it removes the temp files.
type Groups struct {
	ctx   context.Context
	p     *AggPlan
	src   Source
	clock *runClock

	hash *sortspill.HashAgg
	sort *sortspill.Sorter
	// The group being gathered from the sort.
	pending   bool
	nextGroup []byte

	started bool
	cur     Group
	n       int64
	numErr  error // the first value Sum could not read, kept by the hash step
	err     error
	done    bool
}

// Run runs the plan over src, a forward scan of the plan's range.
func (p *AggPlan) Run(ctx context.Context, src Source) *Groups {
	if ctx == nil {
		ctx = context.Background()
	}
	return &Groups{ctx: ctx, p: p, src: src, clock: startClock(&p.env, &p.Plan)}
}

// Next moves to the next group.
func (g *Groups) Next() bool {
	if g.done {
		return false
	}
	if !g.started {
		g.started = true
		if err := g.fill(); err != nil {
			return g.stop(err)
		}
	}
	if err := checkCtx(g.ctx, g.n); err != nil {
		return g.stop(err)
	}
	var ok bool
	var err error
	if g.hash != nil {
		ok, err = g.nextHashed()
	} else {
		ok, err = g.nextSorted()
	}
	if err != nil || !ok {
		return g.stop(err)
	}
	g.n++
	g.p.agg.note(g.n, g.clock.since())
	return true
}

// fill reads the scan into the hash table or the sort.
func (g *Groups) fill() error {
	a := &g.p.a
	env := &g.p.env
	if g.p.sorted {
		abbrev := func(rec []byte) uint64 { grp, _ := splitGroupValue(rec); return sortspill.PrefixAbbrev(grp) }
		s, err := sortspill.NewSorter(g.ctx, compareGroupValue, sortspill.SortOptions{Budget: env.WorkMem, Temp: env.Temp, Abbrev: abbrev})
		if err != nil {
			return err
		}
		g.sort = s
	} else {
		h, err := sortspill.NewHashAgg(g.ctx, g.step, sortspill.HashOptions{Budget: env.WorkMem, Temp: env.Temp})
		if err != nil {
			return err
		}
		g.hash = h
	}
	var rec []byte
	for n := int64(0); g.src.Next(); n++ {
		if err := checkCtx(g.ctx, n); err != nil {
			return err
		}
		key, value := g.src.Key(), g.src.Value()
		grp := a.GroupBy.group(key, value)
		var err error
		if g.sort != nil {
			rec = binary.AppendUvarint(rec[:0], uint64(len(grp)))
			rec = append(append(rec, grp...), value...)
			err = g.sort.Add(rec)
		} else {
			err = g.hash.Add(grp, value)
		}
		if err == nil {
			err = g.numErr
		}
		if err != nil {
			return err
		}
		g.p.scan.note(n+1, g.clock.since())
	}
	if err := g.src.Err(); err != nil {
		return err
	}
	if g.sort != nil {
		return g.sort.Finish()
	}
	return g.hash.Finish()
}

// compareGroupValue orders (group, value) records by group, then value.
func compareGroupValue(a, b []byte) int {
	ga, va := splitGroupValue(a)
	gb, vb := splitGroupValue(b)
	if c := bytes.Compare(ga, gb); c != 0 {
		return c
	}
	return bytes.Compare(va, vb)
}

func splitGroupValue(rec []byte) (group, value []byte) {
	l, n := binary.Uvarint(rec)
	rec = rec[n:]
	return rec[:l:l], rec[l:]
}

// The hash aggregate's state is count (8 bytes), sum (8), then, if asked
// for, min and max, each as a 4-byte length and the bytes.
const stateFixed = 16

// step folds a value into a hash state.
func (g *Groups) step(state, value []byte) []byte {
	f := g.p.a.Funcs
	if state == nil {
		state = make([]byte, stateFixed, stateFixed+2*(4+len(value)))
		if f&Min != 0 {
			state = appendLV(state, value)
		}
		if f&Max != 0 {
			state = appendLV(state, value)
		}
		binary.LittleEndian.PutUint64(state, 1)
		g.addSum(state, value)
		return state
	}
	binary.LittleEndian.PutUint64(state, binary.LittleEndian.Uint64(state)+1)
	g.addSum(state, value)
	if f&(Min|Max) == 0 {
		return state
	}
	mn, mx := stateMinMax(state, f)
	if (f&Min == 0 || bytes.Compare(value, mn) >= 0) && (f&Max == 0 || bytes.Compare(value, mx) <= 0) {
		return state
	}
	if f&Min != 0 && bytes.Compare(value, mn) < 0 {
		mn = value
	}
	if f&Max != 0 && bytes.Compare(value, mx) > 0 {
		mx = value
	}
	// Rebuild in a new array: mn or mx may be a slice of the old one.
	next := make([]byte, stateFixed, stateFixed+4+len(mn)+4+len(mx))
	copy(next, state[:stateFixed])
	if f&Min != 0 {
		next = appendLV(next, mn)
	}
	if f&Max != 0 {
		next = appendLV(next, mx)
	}
	return next
}

func (g *Groups) addSum(state, value []byte) {
	if g.p.a.Funcs&Sum == 0 || g.numErr != nil {
		return
	}
	sum := int64(binary.LittleEndian.Uint64(state[8:]))
	s, err := addNumber(sum, value)
	if err != nil {
		g.numErr = err
		return
	}
	binary.LittleEndian.PutUint64(state[8:], uint64(s))
}

// addNumber adds a decimal integer value to sum.
func addNumber(sum int64, value []byte) (int64, error) {
	v, err := strconv.ParseInt(string(bytes.TrimSpace(value)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %q", ErrNotNumber, value)
	}
	if (v > 0 && sum > math.MaxInt64-v) || (v < 0 && sum < math.MinInt64-v) {
		return 0, fmt.Errorf("%w: the sum passes the int64 range", ErrNotNumber)
	}
	return sum + v, nil
}

func appendLV(dst, b []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(b)))
	return append(dst, b...)
}

// stateMinMax returns a hash state's min and max (nil when not asked for).
func stateMinMax(state []byte, f Funcs) (mn, mx []byte) {
	rest := state[stateFixed:]
	take := func() []byte {
		l := binary.LittleEndian.Uint32(rest)
		b := rest[4 : 4+l]
		rest = rest[4+l:]
		return b
	}
	if f&Min != 0 {
		mn = take()
	}
	if f&Max != 0 {
		mx = take()
	}
	return mn, mx
}

func (g *Groups) nextHashed() (bool, error) {
	// A spilled group's values reach step only when its partition is read
	// back, inside Next: a value Sum cannot read may turn up there.
	more := g.hash.Next()
	if g.numErr != nil {
		return false, g.numErr
	}
	if !more {
		return false, g.hash.Err()
	}
	state := g.hash.State()
	g.cur = Group{Key: g.hash.Group()}
	f := g.p.a.Funcs
	if f&Count != 0 {
		g.cur.Count = int64(binary.LittleEndian.Uint64(state))
	}
	if f&Sum != 0 {
		g.cur.Sum = int64(binary.LittleEndian.Uint64(state[8:]))
	}
	g.cur.Min, g.cur.Max = stateMinMax(state, f)
	return true, nil
}

// nextSorted gathers the next group from the sorted (group, value) records:
// they come by group, and within a group by value, so min is the first,
// max the last and each new value a distinct one.
func (g *Groups) nextSorted() (bool, error) {
	if !g.pending {
		if !g.sort.Next() {
			return false, g.sort.Err()
		}
		g.p.sort.note(g.p.sort.rows+1, g.clock.since())
		g.pending = true
	}
	f := g.p.a.Funcs
	grp, v := splitGroupValue(g.sort.Record())
	g.nextGroup = append(g.nextGroup[:0], grp...)
	c := Group{Key: bytes.Clone(grp)}
	var last []byte
	first := true
	for {
		c.Count++
		if first || !bytes.Equal(v, last) {
			c.Distinct++
		}
		if first && f&Min != 0 {
			c.Min = bytes.Clone(v)
		}
		if f&Sum != 0 {
			s, err := addNumber(c.Sum, v)
			if err != nil {
				return false, err
			}
			c.Sum = s
		}
		last = append(last[:0], v...)
		first = false
		if !g.sort.Next() {
			if err := g.sort.Err(); err != nil {
				return false, err
			}
			g.pending = false
			break
		}
		g.p.sort.note(g.p.sort.rows+1, g.clock.since())
		grp, v = splitGroupValue(g.sort.Record())
		if !bytes.Equal(grp, g.nextGroup) {
			break
		}
	}
	if f&Max != 0 {
		c.Max = last
	}
	if f&Count == 0 {
		c.Count = 0
	}
	if f&CountDistinct == 0 {
		c.Distinct = 0
	}
	g.cur = c
	return true, nil
}

// Group returns the current group's result.
func (g *Groups) Group() Group { return g.cur }

// Err returns the error that ended the run, if any.
func (g *Groups) Err() error { return g.err }

func (g *Groups) stop(err error) bool {
	g.done, g.err = true, err
	g.cur = Group{}
	g.finishStats()
	return false
}

func (g *Groups) finishStats() {
	g.clock.stop()
	if g.sort != nil {
		g.p.sort.analyzed = sortLines(g.sort.Stats())
	}
	if g.hash != nil {
		st := g.hash.Stats()
		g.p.agg.analyzed = append(g.p.agg.analyzed,
			fmt.Sprintf("Batches: %d  Memory Usage: %dkB  Disk Usage: %dkB", st.Batches, kB(st.PeakMemory), kB(st.DiskBytes)))
		if st.TempWrite > 0 || st.TempRead > 0 {
			g.p.agg.analyzed = append(g.p.agg.analyzed, fmt.Sprintf("Buffers: temp read=%d written=%d", blocks(st.TempRead), blocks(st.TempWrite)))
		}
	}
	markRan(g.p.root, g.started, g.clock.since())
}

// Close ends the run, removes the temp files and closes the source.
func (g *Groups) Close() error {
	if !g.done {
		g.done = true
		g.finishStats()
	}
	var err error
	if g.sort != nil {
		err = g.sort.Close()
	}
	if g.hash != nil {
		if herr := g.hash.Close(); err == nil {
			err = herr
		}
	}
	if serr := g.src.Close(); err == nil {
		err = serr
	}
	if g.err != nil {
		return g.err
	}
	return err
}

// markRan marks the nodes of a run that started as executed, also those
// that produced no row.
func markRan(n *node, started bool, at time.Duration) {
	if !started {
		return
	}
	for ; n != nil; n = n.child {
		if !n.ran {
			n.ran, n.first, n.all = true, at, at
		}
	}
}
