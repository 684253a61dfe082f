package exec

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/heapkv/heapkv/sortspill"
)

// QueryPlan is a planned Query.
type QueryPlan struct {
	Plan
	q       Query
	env     Env
	reverse bool
	method  ScanMethod
	est     int64 // estimated rows of the range, negative if unknown
	scan    *node
	index   *node // the Bitmap Index Scan below a bitmap heap scan
	sort    *node // nil when the scan's order is the query's
	limit   *node // nil without Offset or Limit
}

// PlanQuery plans q: an index scan in key order (backward for ByKey and
// Desc), a sort above it for any other order (top-N when there is a Limit),
// and a limit on top.
func PlanQuery(q Query, env Env) (*QueryPlan, error) {
	if err := q.check(); err != nil {
		return nil, err
	}
	p := &QueryPlan{q: q, env: env}
	p.method = p.choose()
	cond := "Index Cond: " + rangeCond(q.Start, q.End)
	if p.method == ScanBitmap {
		p.index = &node{name: "Bitmap Index Scan on " + env.Keyspace, est: p.est, details: []string{cond}}
		p.scan = &node{name: "Bitmap Heap Scan on " + env.Keyspace, est: p.est, child: p.index}
	} else {
		p.reverse = q.OrderBy == ByKey && q.Desc
		scanName := "Index Scan"
		if p.reverse {
			scanName = "Index Scan Backward"
		}
		p.scan = &node{name: scanName + " on " + env.Keyspace, est: p.est, details: []string{cond}}
	}
	top := p.scan
	if q.OrderBy != ByKey || p.method == ScanBitmap {
		key := q.OrderBy.String()
		if q.Desc {
			key += " DESC"
		}
		if q.OrderBy != ByKey {
			key += ", key"
		}
		p.sort = &node{name: "Sort", est: p.est, details: []string{"Sort Key: " + key}, child: top}
		top = p.sort
	}
	if q.Offset > 0 || q.Limit > 0 {
		est := p.est
		if est >= 0 {
			est = max(0, est-q.Offset)
			if q.Limit > 0 {
				est = min(est, q.Limit)
			}
		}
		var d []string
		if q.Offset > 0 {
			d = append(d, fmt.Sprintf("Offset: %d", q.Offset))
		}
		if q.Limit > 0 {
			d = append(d, fmt.Sprintf("Limit: %d", q.Limit))
		}
		p.limit = &node{name: "Limit", est: est, details: d, child: top}
		top = p.limit
	}
	p.root = top
	return p, nil
}

// Reverse says whether the Source must scan the range backward.
func (p *QueryPlan) Reverse() bool { return p.reverse }

// Method returns how the plan reads its range: ScanIndex (Run) or
// ScanBitmap (RunBitmap).
func (p *QueryPlan) Method() ScanMethod { return p.method }

// choose picks the scan method: the one q forces, the index scan without
// statistics, or the cheaper by estimateRange; it also sets the row
// estimate and the planner's footer.
func (p *QueryPlan) choose() ScanMethod {
	q, env := &p.q, &p.env
	p.est = env.EstRows
	if env.Stats == nil {
		if q.Scan == ScanAuto {
			return ScanIndex
		}
		return q.Scan
	}
	e := estimateRange(env.Stats, q.Start, q.End, env.CachePages, q.OrderBy == ByKey)
	p.est = int64(math.Round(e.rows))
	m := q.Scan
	why := "forced"
	if m == ScanAuto {
		m, why = ScanIndex, "by cost"
		if e.bitmapCost < e.indexCost {
			m = ScanBitmap
		}
	}
	p.planning = fmt.Sprintf("Planning: %s %s; cost index scan=%.1f bitmap heap scan=%.1f; %.0f of %d rows, correlation %.2f",
		m, why, e.indexCost, e.bitmapCost, e.rows, env.Stats.Rows, env.Stats.Correlation)
	return m
}

// RunBitmap runs a bitmap plan over the range's index entries, fetching
// each chain with fetch.
func (p *QueryPlan) RunBitmap(ctx context.Context, entries Entries, fetch Fetcher) *Rows {
	r := p.Run(ctx, nil)
	r.src = &bitmapSource{ctx: r.ctx, env: &p.env, entries: entries, fetch: fetch, scan: p.scan, index: p.index, clock: r.clock}
	return r
}

// rangeCond prints a range as EXPLAIN's index condition.
func rangeCond(start, end []byte) string {
	switch {
	case start == nil && end == nil:
		return "(all keys)"
	case start == nil:
		return fmt.Sprintf("key < %q", end)
	case end == nil:
		return fmt.Sprintf("key >= %q", start)
	}
	return fmt.Sprintf("key >= %q AND key < %q", start, end)
}

// Rows is a running query. Key and Value are valid until the next Next.
// Close it always; it removes the sort's temp files.
type Rows struct {
	ctx   context.Context
	p     *QueryPlan
	src   Source
	clock *runClock
	sort  *sortspill.Sorter

	started bool
	skipped int64
	n       int64 // rows returned
	key     []byte
	value   []byte
	err     error
	done    bool
}

// Run runs the plan over src, which must scan the plan's range in the
// direction Reverse says. The plan records what the run does, for Analyze.
func (p *QueryPlan) Run(ctx context.Context, src Source) *Rows {
	if ctx == nil {
		ctx = context.Background()
	}
	return &Rows{ctx: ctx, p: p, src: src, clock: startClock(&p.env, &p.Plan)}
}

// Next moves to the next row.
func (r *Rows) Next() bool {
	if r.done {
		return false
	}
	if !r.started {
		r.started = true
		if r.p.sort != nil {
			if err := r.fillSort(); err != nil {
				return r.stop(err)
			}
		}
	}
	q := &r.p.q
	for {
		if q.Limit > 0 && r.n == q.Limit {
			return r.stop(nil)
		}
		ok, err := r.nextInput()
		if err != nil || !ok {
			return r.stop(err)
		}
		if r.skipped < q.Offset {
			r.skipped++
			continue
		}
		r.n++
		if r.p.limit != nil {
			r.p.limit.note(r.n, r.clock.since())
		}
		return true
	}
}

// nextInput moves to the next row of the node below the limit.
func (r *Rows) nextInput() (bool, error) {
	if r.sort == nil {
		if !r.src.Next() {
			return false, r.src.Err()
		}
		r.key, r.value = r.src.Key(), r.src.Value()
		r.p.scan.note(r.p.scan.rows+1, r.clock.since())
		return true, nil
	}
	if err := checkCtx(r.ctx, r.p.sort.rows); err != nil {
		return false, err
	}
	if !r.sort.Next() {
		return false, r.sort.Err()
	}
	r.key, _, r.value = decodeSortRecord(r.sort.Record())
	r.p.sort.note(r.p.sort.rows+1, r.clock.since())
	return true, nil
}

// fillSort reads the whole scan into the sort.
func (r *Rows) fillSort() error {
	q := &r.p.q
	var bound int64
	if q.Limit > 0 {
		bound = q.Offset + q.Limit
	}
	desc, byValue, byKey := q.Desc, q.OrderBy == ByValue, q.OrderBy == ByKey
	cmp := func(a, b []byte) int {
		ka, sa, va := decodeSortRecord(a)
		kb, sb, vb := decodeSortRecord(b)
		switch {
		case byValue:
			sa, sb = va, vb
		case byKey: // a bitmap scan's rows, back into key order
			sa, sb = ka, kb
		}
		c := bytes.Compare(sa, sb)
		if desc {
			c = -c
		}
		if c != 0 {
			return c
		}
		return bytes.Compare(ka, kb)
	}
	// The abbreviated key is the first 8 bytes of what the order compares
	// first, inverted for a descending order; ties go to cmp.
	abbrev := func(rec []byte) uint64 {
		k, sk, v := decodeSortRecord(rec)
		switch {
		case byValue:
			sk = v
		case byKey:
			sk = k
		}
		a := sortspill.PrefixAbbrev(sk)
		if desc {
			a = ^a
		}
		return a
	}
	s, err := sortspill.NewSorter(r.ctx, cmp, sortspill.SortOptions{Budget: r.p.env.WorkMem, Limit: bound, Temp: r.p.env.Temp, Abbrev: abbrev})
	if err != nil {
		return err
	}
	r.sort = s
	var rec []byte
	for n := int64(0); r.src.Next(); n++ {
		if err := checkCtx(r.ctx, n); err != nil {
			return err
		}
		key, value := r.src.Key(), r.src.Value()
		var sk []byte
		if q.OrderBy == ByFunc {
			sk = q.SortKey(key, value)
		}
		rec = encodeSortRecord(rec[:0], key, sk, value)
		if err := s.Add(rec); err != nil {
			return err
		}
		r.p.scan.note(n+1, r.clock.since())
	}
	if err := r.src.Err(); err != nil {
		return err
	}
	return s.Finish()
}

// encodeSortRecord lays a row out for the sort: uvarint(len(key)) key
// uvarint(len(sortKey)) sortKey value.
func encodeSortRecord(dst, key, sortKey, value []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(key)))
	dst = append(dst, key...)
	dst = binary.AppendUvarint(dst, uint64(len(sortKey)))
	dst = append(dst, sortKey...)
	return append(dst, value...)
}

// decodeSortRecord splits what encodeSortRecord made. The sort hands back
// only records it was given, so their layout holds.
func decodeSortRecord(rec []byte) (key, sortKey, value []byte) {
	kl, n := binary.Uvarint(rec)
	rec = rec[n:]
	key, rec = rec[:kl:kl], rec[kl:]
	sl, n := binary.Uvarint(rec)
	rec = rec[n:]
	return key, rec[:sl:sl], rec[sl:]
}

// stop ends the run, records the sort's figures and returns false.
func (r *Rows) stop(err error) bool {
	r.done = true
	r.err = err
	r.key, r.value = nil, nil
	r.finishStats()
	return false
}

func (r *Rows) finishStats() {
	r.clock.stop()
	if r.sort != nil {
		r.p.sort.analyzed = sortLines(r.sort.Stats())
	}
	markRan(r.p.root, r.started, r.clock.since())
}

// sortLines are EXPLAIN ANALYZE's lines of a sort.
func sortLines(st sortspill.SortStats) []string {
	var lines []string
	switch st.Method {
	case sortspill.ExternalMerge:
		lines = append(lines, fmt.Sprintf("Sort Method: external merge  Disk: %dkB", kB(st.DiskBytes)),
			fmt.Sprintf("Runs: %d  Merge Order: %d  Passes: %d", st.Runs, st.MergeOrder, st.Passes))
	default:
		lines = append(lines, fmt.Sprintf("Sort Method: %s  Memory: %dkB", st.Method, kB(st.PeakMemory)))
	}
	if st.TempWrite > 0 || st.TempRead > 0 {
		lines = append(lines, fmt.Sprintf("Buffers: temp read=%d written=%d", blocks(st.TempRead), blocks(st.TempWrite)))
	}
	return lines
}

// note records a node's progress: its row count and the time of its
// first and latest row.
func (n *node) note(rows int64, at time.Duration) {
	if !n.ran {
		n.ran, n.first = true, at
	}
	n.rows, n.all = rows, at
}

// Key returns the current row's key.
func (r *Rows) Key() []byte { return r.key }

// Value returns the current row's value.
func (r *Rows) Value() []byte { return r.value }

// Err returns the error that ended the run, if any.
func (r *Rows) Err() error { return r.err }

// Close ends the run, removes the sort's temp files and closes the source.
// It returns Err, or the first error of closing.
func (r *Rows) Close() error {
	if !r.done {
		r.done = true
		r.finishStats()
	}
	var err error
	if r.sort != nil {
		err = r.sort.Close()
	}
	if serr := r.src.Close(); err == nil {
		err = serr
	}
	if r.err != nil {
		return r.err
	}
	return err
}
