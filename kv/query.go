package kv

import (
	"github.com/heapkv/heapkv/exec"
	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/pagecache"
	"github.com/heapkv/heapkv/table"
	"github.com/heapkv/heapkv/txn"
)

// The query and aggregate vocabulary is exec's, named here so that an
// embedding program needs only kv.
type (
	// Query asks for the rows of a range in another order than the key's
	// (by value, or by a function of each row), or a window of them
	// (Offset, Limit). See exec.Query.
	Query = exec.Query
	// Order is what a Query sorts by: ByKey, ByValue or ByFunc.
	Order = exec.Order
	// Aggregate asks for count, count distinct, min, max or sum of a
	// range's values, per group. See exec.Aggregate.
	Aggregate = exec.Aggregate
	// GroupBy is an Aggregate's grouping; GroupKind its kind.
	GroupBy   = exec.GroupBy
	GroupKind = exec.GroupKind
	// AggFuncs is the set of aggregates to compute.
	AggFuncs = exec.Funcs
	// Group is one group's result.
	Group = exec.Group
	// ScanMethod is how a Query reads its range: ScanAuto (the planner's
	// choice), ScanIndex or ScanBitmap.
	ScanMethod = exec.ScanMethod
)

const (
	ByKey   = exec.ByKey
	ByValue = exec.ByValue
	ByFunc  = exec.ByFunc

	GroupNone   = exec.GroupNone
	GroupPrefix = exec.GroupPrefix
	GroupLength = exec.GroupLength
	GroupValue  = exec.GroupValue
	GroupFunc   = exec.GroupFunc

	AggCount         = exec.Count
	AggCountDistinct = exec.CountDistinct
	AggMin           = exec.Min
	AggMax           = exec.Max
	AggSum           = exec.Sum

	ScanAuto   = exec.ScanAuto
	ScanIndex  = exec.ScanIndex
	ScanBitmap = exec.ScanBitmap
)

// Rows is a running Query: Next, Key and Value as an Iterator's (valid
// until the next Next), and Explain for what the run did. Close it always:
// it removes the sort's temp files.
type Rows struct {
	r   *exec.Rows
	p   *exec.QueryPlan
	err error
}

// Groups is a running Aggregate. Close it always.
type Groups struct {
	g   *exec.Groups
	p   *exec.AggPlan
	err error
}

// env is what a plan of tx over ks runs with.
func (tx *Tx) env(ks *keyspace) exec.Env {
	name := ks.name
	if name == "" {
		name = "default"
	}
	return exec.Env{
		WorkMem: tx.db.cfg.WorkMem,
		Temp:    tx.db.temp,
		Buffers: func() (uint64, uint64) {
			st := tx.db.pool.Stats()
			return st.Hits, st.Reads
		},
		EstRows:    -1,
		Keyspace:   name,
		CachePages: float64(tx.db.cfg.SharedBuffers / pagecache.BlockSize),
	}
}

// Query runs q over the default keyspace, with work_mem for its sort. It
// sees one snapshot, as Scan does.
func (tx *Tx) Query(q Query) *Rows { return tx.queryIn(tx.db.def, q) }

func (tx *Tx) queryIn(ks *keyspace, q Query) *Rows {
	p, err := tx.planQuery(ks, q)
	if err != nil {
		return &Rows{err: err}
	}
	if p.Method() == exec.ScanBitmap {
		return tx.runBitmap(ks, p, q)
	}
	it := tx.scanIn(ks, q.Start, q.End, &ScanOptions{Reverse: p.Reverse()})
	if it.err != nil {
		return &Rows{err: it.err, p: p}
	}
	return &Rows{r: p.Run(tx.ctx, it), p: p}
}

// planQuery plans q over ks. Unless q forces the index scan, the planner
// gets ks's statistics, refreshed first when missing or stale (an index
// walk, see Analyze); a forced index scan uses what there is.
func (tx *Tx) planQuery(ks *keyspace, q Query) (*exec.QueryPlan, error) {
	env := tx.env(ks)
	env.Stats = ks.stats.Load() // a forced index scan still shows estimates when there are any
	if q.Scan != ScanIndex {
		if err := tx.begin(false); err != nil {
			return nil, err
		}
		st, err := tx.db.statsFor(ks)
		tx.end()
		if err != nil {
			return nil, tx.fail(err)
		}
		env.Stats = st
	}
	return exec.PlanQuery(q, env)
}

// ExplainQuery returns q's plan, as EXPLAIN prints it, without running it.
func (tx *Tx) ExplainQuery(q Query) (string, error) { return tx.explainQueryIn(tx.db.def, q) }

func (tx *Tx) explainQueryIn(ks *keyspace, q Query) (string, error) {
	p, err := tx.planQuery(ks, q)
	if err != nil {
		return "", err
	}
	return p.String(), nil
}

// runBitmap starts a bitmap plan: the snapshot first (table's rule 1), then
// the index entries, each chain fetched through a bulk-read ring.
func (tx *Tx) runBitmap(ks *keyspace, p *exec.QueryPlan, q Query) *Rows {
	if err := tx.begin(false); err != nil {
		return &Rows{err: err, p: p}
	}
	defer tx.end()
	s, err := tx.snapshot()
	if err != nil {
		return &Rows{err: tx.fail(err), p: p}
	}
	b := &bitmapInput{tx: tx, ks: ks, snap: cloneSnapshot(s), ring: ks.t.NewBulkRead()}
	b.entries = ks.t.IndexEntries(q.Start, q.End)
	return &Rows{r: p.RunBitmap(tx.ctx, b, b), p: p}
}

// bitmapInput is a bitmap plan's Entries and Fetcher: the index entries of
// the range and the chain fetches, each call checked and entered as an
// Iterator's Next is.
type bitmapInput struct {
	tx      *Tx
	ks      *keyspace
	snap    txn.Snapshot
	ring    *pagecache.Strategy
	entries *table.Entries
	err     error
}

// enter makes the checks an Iterator's Next makes before touching pages.
func (b *bitmapInput) enter() error {
	switch {
	case b.tx.done:
		return ErrTxDone
	case b.tx.aborted != nil:
		return b.tx.abortedErr()
	}
	return b.tx.db.enter()
}

func (b *bitmapInput) Next() bool {
	if b.err != nil {
		return false
	}
	if b.err = b.enter(); b.err != nil {
		return false
	}
	defer b.tx.db.leave()
	return b.entries.Next()
}

func (b *bitmapInput) Key() []byte   { return b.entries.Key() }
func (b *bitmapInput) TID() base.TID { return b.entries.TID() }
func (b *bitmapInput) Close() error  { b.entries.Close(); return nil }

func (b *bitmapInput) Err() error {
	if b.err != nil {
		return b.err
	}
	return b.tx.fail(b.entries.Err())
}

func (b *bitmapInput) Fetch(tid base.TID, key, dst []byte) ([]byte, bool, error) {
	if err := b.enter(); err != nil {
		return nil, false, err
	}
	defer b.tx.db.leave()
	b.tx.t.SetOwn(&b.snap) // writes of tx since the scan began are its own
	v, ok, err := b.ks.t.FetchVia(b.ring, tid, key, &b.snap, dst)
	return v, ok, b.tx.fail(err)
}

// Next moves to the next row.
func (r *Rows) Next() bool { return r.r != nil && r.r.Next() }

// Key returns the current row's key.
func (r *Rows) Key() []byte {
	if r.r == nil {
		return nil
	}
	return r.r.Key()
}

// Value returns the current row's value.
func (r *Rows) Value() []byte {
	if r.r == nil {
		return nil
	}
	return r.r.Value()
}

// Err returns the error that ended the query, if any.
func (r *Rows) Err() error {
	if r.err != nil || r.r == nil {
		return r.err
	}
	return r.r.Err()
}

// Close ends the query and removes its temp files; it returns Err or the
// error of removing them.
func (r *Rows) Close() error {
	if r.r == nil {
		return r.err
	}
	return r.r.Close()
}

// Explain returns EXPLAIN ANALYZE's text of the run so far: the plan with
// each node's actual rows and time, the sort's method and memory or disk,
// and the buffer accesses during the run. Call it after the last Next.
func (r *Rows) Explain() string {
	if r.p == nil {
		return ""
	}
	return r.p.Analyze()
}

// Aggregate runs a over the default keyspace, with work_mem for its hash
// or sort.
func (tx *Tx) Aggregate(a Aggregate) *Groups { return tx.aggregateIn(tx.db.def, a) }

func (tx *Tx) aggregateIn(ks *keyspace, a Aggregate) *Groups {
	p, err := exec.PlanAggregate(a, tx.env(ks))
	if err != nil {
		return &Groups{err: err}
	}
	it := tx.scanIn(ks, a.Start, a.End, nil)
	if it.err != nil {
		return &Groups{err: it.err, p: p}
	}
	return &Groups{g: p.Run(tx.ctx, it), p: p}
}

// ExplainAggregate returns a's plan without running it.
func (tx *Tx) ExplainAggregate(a Aggregate) (string, error) {
	p, err := exec.PlanAggregate(a, tx.env(tx.db.def))
	if err != nil {
		return "", err
	}
	return p.String(), nil
}

// Next moves to the next group.
func (g *Groups) Next() bool { return g.g != nil && g.g.Next() }

// Group returns the current group's result; its slices are valid until the
// next Next.
func (g *Groups) Group() Group {
	if g.g == nil {
		return Group{}
	}
	return g.g.Group()
}

// Err returns the error that ended the aggregate, if any.
func (g *Groups) Err() error {
	if g.err != nil || g.g == nil {
		return g.err
	}
	return g.g.Err()
}

// Close ends the aggregate and removes its temp files.
func (g *Groups) Close() error {
	if g.g == nil {
		return g.err
	}
	return g.g.Close()
}

// Explain returns EXPLAIN ANALYZE's text of the run so far.
func (g *Groups) Explain() string {
	if g.p == nil {
		return ""
	}
	return g.p.Analyze()
}

// ExplainQuery is Tx.ExplainQuery in the keyspace.
func (k *Keyspace) ExplainQuery(q Query) (string, error) {
	if k.err != nil {
		return "", k.err
	}
	return k.tx.explainQueryIn(k.ks, q)
}

// ExplainAggregate is Tx.ExplainAggregate in the keyspace.
func (k *Keyspace) ExplainAggregate(a Aggregate) (string, error) {
	if k.err != nil {
		return "", k.err
	}
	p, err := exec.PlanAggregate(a, k.tx.env(k.ks))
	if err != nil {
		return "", err
	}
	return p.String(), nil
}

// Query is Tx.Query in the keyspace.
func (k *Keyspace) Query(q Query) *Rows {
	if k.err != nil {
		return &Rows{err: k.err}
	}
	return k.tx.queryIn(k.ks, q)
}

// Aggregate is Tx.Aggregate in the keyspace.
func (k *Keyspace) Aggregate(a Aggregate) *Groups {
	if k.err != nil {
		return &Groups{err: k.err}
	}
	return k.tx.aggregateIn(k.ks, a)
}
