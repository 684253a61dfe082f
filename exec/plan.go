package exec

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/heapkv/heapkv/sortspill"
	"github.com/heapkv/heapkv/table"
)

// Source is a key-ordered scan of one range of a keyspace, as kv provides
// it: its snapshot, its transaction's checks and its page accesses are
// kv's business. Key and Value are valid until the next Next.
type Source interface {
	Next() bool
	Key() []byte
	Value() []byte
	Err() error
	Close() error
}

// Env is what a plan runs with.
type Env struct {
	// WorkMem is each sort's and hash's budget (work_mem).
	WorkMem int64
	// Temp is where they spill.
	Temp *sortspill.TempSpace
	// Buffers returns the buffer pool's hit and read counters, read before
	// and after the run for EXPLAIN ANALYZE's Buffers line; nil leaves the
	// line out.
	Buffers func() (hit, read uint64)
	// EstRows is the planner's estimate of the rows of the scanned range;
	// negative means unknown.
	EstRows int64
	// Keyspace names the scanned keyspace in EXPLAIN.
	Keyspace string
	// Stats are the keyspace's statistics from its last Analyze; nil means
	// none, and the planner then takes the index scan.
	Stats *table.Statistics
	// CachePages is the buffer pool's size in pages, for the planner's
	// estimate of page reads.
	CachePages float64
}

// Order says what a Query sorts its rows by.
type Order int

const (
	// ByKey is the index's own order: no sort, the scan reads it.
	ByKey Order = iota
	// ByValue sorts by value; rows with equal values by key.
	ByValue
	// ByFunc sorts by Query.SortKey of each row; ties by key.
	ByFunc
)

func (o Order) String() string {
	switch o {
	case ByKey:
		return "key"
	case ByValue:
		return "value"
	case ByFunc:
		return "function"
	}
	return fmt.Sprintf("Order(%d)", int(o))
}

// Query asks for the rows of a range in an order, or a window of them.
type Query struct {
	Start, End []byte // the range, [Start, End); nil is open
	OrderBy    Order
	// Desc reverses the order (ties still go by ascending key, except for
	// ByKey, where the key is the order).
	Desc bool
	// SortKey derives the sort key of a row for ByFunc. It must not keep
	// key or value, and must return the same bytes for the same row.
	SortKey func(key, value []byte) []byte
	// Offset skips that many rows of the order; Limit, when positive,
	// stops after that many more.
	Offset, Limit int64
	// Scan forces how the range is read; ScanAuto (the zero value) lets
	// the planner choose.
	Scan ScanMethod
}

// check returns an error for a Query that cannot run.
func (q *Query) check() error {
	switch {
	case q.OrderBy < ByKey || q.OrderBy > ByFunc:
		return fmt.Errorf("exec: unknown order %d", int(q.OrderBy))
	case q.OrderBy == ByFunc && q.SortKey == nil:
		return errors.New("exec: ordering by function without a SortKey")
	case q.OrderBy != ByFunc && q.SortKey != nil:
		return errors.New("exec: a SortKey given without ordering by function")
	case q.Offset < 0 || q.Limit < 0:
		return fmt.Errorf("exec: negative offset %d or limit %d", q.Offset, q.Limit)
	case q.Scan < ScanAuto || q.Scan > ScanBitmap:
		return fmt.Errorf("exec: unknown scan method %d", int(q.Scan))
	}
	return nil
}

// node is one step of a plan as EXPLAIN prints it.
type node struct {
	name    string   // e.g. "Sort", "Index Scan on users"
	est     int64    // estimated rows, negative if unknown
	details []string // lines under the node, e.g. "Sort Key: value DESC, key"
	child   *node

	// After a run (EXPLAIN ANALYZE).
	ran        bool
	rows       int64
	first, all time.Duration // time to the first row and to the last
	analyzed   []string      // lines only a run can tell: "Sort Method: ..."
}

// explain writes the plan below n in PostgreSQL's layout.
func (n *node) explain(b *strings.Builder, depth int, analyze bool) {
	pad := strings.Repeat(" ", max(0, 6*depth-4))
	if depth > 0 {
		b.WriteString(pad + "->  ")
	}
	b.WriteString(n.name)
	if n.est >= 0 {
		fmt.Fprintf(b, "  (rows=%d)", n.est)
	} else {
		b.WriteString("  (rows=unknown)")
	}
	if analyze {
		if n.ran {
			fmt.Fprintf(b, " (actual time=%s..%s rows=%d loops=1)", ms(n.first), ms(n.all), n.rows)
		} else {
			b.WriteString(" (never executed)")
		}
	}
	b.WriteByte('\n')
	inner := strings.Repeat(" ", 6*depth+2)
	if depth == 0 {
		inner = "  "
	}
	for _, d := range n.details {
		b.WriteString(inner + d + "\n")
	}
	if analyze {
		for _, d := range n.analyzed {
			b.WriteString(inner + d + "\n")
		}
	}
	if n.child != nil {
		n.child.explain(b, depth+1, analyze)
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f", float64(d)/float64(time.Millisecond)) }

func kB(n int64) int64 { return (n + 1023) / 1024 }

// blocks converts temp bytes to PostgreSQL's 8 kB blocks, rounding up.
func blocks(n int64) int64 { return (n + 8191) / 8192 }

// Plan is a prepared query or aggregate: EXPLAIN's text before a run, and
// EXPLAIN ANALYZE's after one.
type Plan struct {
	root     *node
	planning string // the planner's reasons, a footer line
	bufHit   uint64 // the run's buffer hits and reads, when Env.Buffers is set
	bufRead  uint64
	hasBufs  bool
	total    time.Duration
	ran      bool
}

// String is EXPLAIN: the plan with its estimates.
func (p *Plan) String() string {
	var b strings.Builder
	p.root.explain(&b, 0, false)
	if p.planning != "" {
		b.WriteString(p.planning + "\n")
	}
	return b.String()
}

// Analyze is EXPLAIN ANALYZE: the plan with what the run did. Before the
// run ends it shows what has happened so far.
func (p *Plan) Analyze() string {
	var b strings.Builder
	p.root.explain(&b, 0, true)
	if p.planning != "" {
		b.WriteString(p.planning + "\n")
	}
	if p.hasBufs {
		fmt.Fprintf(&b, "Buffers: shared hit=%d read=%d (the engine's, during the run)\n", p.bufHit, p.bufRead)
	}
	if p.ran {
		fmt.Fprintf(&b, "Execution Time: %s ms\n", ms(p.total))
	}
	return b.String()
}

// runClock times a plan's run and reads its buffer counters.
type runClock struct {
	env     *Env
	plan    *Plan
	start   time.Time
	hit0    uint64
	read0   uint64
	stopped bool
}

func startClock(env *Env, p *Plan) *runClock {
	c := &runClock{env: env, plan: p, start: time.Now()}
	if env.Buffers != nil {
		c.hit0, c.read0 = env.Buffers()
	}
	return c
}

// since returns the time from the run's start.
func (c *runClock) since() time.Duration { return time.Since(c.start) }

// stop records the run's totals; only the first call counts.
func (c *runClock) stop() {
	if c.stopped {
		return
	}
	c.stopped = true
	p := c.plan
	p.ran, p.total = true, c.since()
	if c.env.Buffers != nil {
		hit, read := c.env.Buffers()
		p.hasBufs, p.bufHit, p.bufRead = true, hit-c.hit0, read-c.read0
	}
}

// checkCtx returns ctx's error every 1024 calls (counted by n).
func checkCtx(ctx context.Context, n int64) error {
	if n%1024 == 0 {
		return ctx.Err()
	}
	return nil
}
