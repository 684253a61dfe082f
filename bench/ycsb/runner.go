package ycsb

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Result is the measurement of one load or run phase.
type Result struct {
	Elapsed time.Duration
	// Ops holds a histogram per operation name: READ, UPDATE, ...,
	// "<OP>_ERROR" for failed operations, and TOTAL over all of them.
	Ops    map[string]*Histogram
	Errors int64
	// FirstErr is the first failure seen, for the report.
	FirstErr error
	// Engine is what the engine reported of itself after the phase (see
	// Reporter), or "".
	Engine string
}

// RunOptions are the knobs of Load and Run beyond the workload.
type RunOptions struct {
	// MaxDuration caps the phase (0: none).
	MaxDuration time.Duration
	// Progress, if set, receives a \r-updated line once a second.
	Progress io.Writer
	// Label prefixes the progress line.
	Label string
	// Seed makes the generators reproducible (0: random).
	Seed uint64
}

// Load inserts records 0..RecordCount-1 with ThreadCount threads.
func Load(ctx context.Context, db DB, w *Workload, o RunOptions) (*Result, error) {
	var next atomic.Int64
	res, err := phase(ctx, w, w.RecordCount, o, func(ctx context.Context, wk *worker, h *opHists, done *atomic.Int64) error {
		for {
			k := next.Add(1) - 1
			if k >= w.RecordCount || ctx.Err() != nil {
				return nil
			}
			v := wk.newValue()
			t := time.Now()
			err := db.Insert(w.Key(k), v)
			h.record(OpInsert, time.Since(t), err)
			if err != nil {
				return fmt.Errorf("ycsb: load of record %d: %w", k, err)
			}
			done.Add(1)
		}
	})
	return res, err
}

// Run executes OperationCount operations (or until MaxDuration) with
// ThreadCount threads. The store must hold records 0..RecordCount-1. A
// Reporter db's report on the phase goes into the Result.
func Run(ctx context.Context, db DB, w *Workload, o RunOptions) (*Result, error) {
	res, err := run(ctx, db, w, o)
	if r, ok := db.(Reporter); ok && res != nil {
		res.Engine = r.Report()
	}
	return res, err
}

func run(ctx context.Context, db DB, w *Workload, o RunOptions) (*Result, error) {
	var taken atomic.Int64
	// ctx in the body is the phase's, which ends at MaxDuration.
	return phase(ctx, w, w.OperationCount, o, func(ctx context.Context, wk *worker, h *opHists, done *atomic.Int64) error {
		for ctx.Err() == nil && taken.Add(1) <= w.OperationCount {
			op := wk.ops.next(wk.rng)
			t := time.Now()
			var err error
			switch op {
			case OpRead:
				_, err = db.Read(w.Key(wk.nextKeynum()))
			case OpUpdate:
				err = db.Update(w.Key(wk.nextKeynum()), wk.fieldUpdate())
			case OpInsert:
				k := wk.st.inserts.Next()
				v := wk.newValue()
				t = time.Now()
				err = db.Insert(w.Key(k), v)
				// Acknowledge even a failed insert so readers are not
				// held back forever; they may then miss the record.
				wk.st.inserts.Acknowledge(k)
			case OpScan:
				n := int(wk.scanLen.Next())
				_, err = db.Scan(w.Key(wk.nextKeynum()), n)
			case OpReadModifyWrite:
				_, err = db.ReadModifyWrite(w.Key(wk.nextKeynum()), wk.fieldUpdate())
			}
			h.record(op, time.Since(t), err)
			done.Add(1)
		}
		return nil
	})
}

// opHists are one worker's histograms.
type opHists struct {
	ok, failed [numOps]Histogram
	total      Histogram
	errs       int64
	firstErr   error
}

func (h *opHists) record(op Op, d time.Duration, err error) {
	if err != nil {
		h.failed[op].Record(d)
		h.errs++
		if h.firstErr == nil {
			h.firstErr = fmt.Errorf("%s: %w", op, err)
		}
	} else {
		h.ok[op].Record(d)
	}
	h.total.Record(d)
}

func phase(ctx context.Context, w *Workload, target int64, o RunOptions,
	body func(ctx context.Context, wk *worker, h *opHists, done *atomic.Int64) error) (*Result, error) {
	if o.MaxDuration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.MaxDuration)
		defer cancel()
	}
	seed := o.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	st := &state{w: w, inserts: NewAckCounter(w.RecordCount)}
	hists := make([]*opHists, w.ThreadCount)
	errs := make([]error, w.ThreadCount)
	var done atomic.Int64
	start := time.Now()
	stop := make(chan struct{})
	var pwg sync.WaitGroup
	if o.Progress != nil {
		pwg.Go(func() { progress(o, target, &done, start, stop) })
	}
	var wg sync.WaitGroup
	for i := range w.ThreadCount {
		hists[i] = &opHists{}
		wk := newWorker(st, seed+uint64(i)*0x1000193)
		wg.Go(func() { errs[i] = body(ctx, wk, hists[i], &done) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(stop)
	pwg.Wait()
	res := &Result{Elapsed: elapsed, Ops: map[string]*Histogram{}}
	get := func(name string) *Histogram {
		if res.Ops[name] == nil {
			res.Ops[name] = &Histogram{}
		}
		return res.Ops[name]
	}
	for _, h := range hists {
		for op := range numOps {
			if h.ok[op].Count() > 0 {
				get(op.String()).Merge(&h.ok[op])
			}
			if h.failed[op].Count() > 0 {
				get(op.String() + "_ERROR").Merge(&h.failed[op])
			}
		}
		get("TOTAL").Merge(&h.total)
		res.Errors += h.errs
		if res.FirstErr == nil {
			res.FirstErr = h.firstErr
		}
	}
	for _, err := range errs {
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

func progress(o RunOptions, target int64, done *atomic.Int64, start time.Time, stop chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			fmt.Fprintf(o.Progress, "\r%s: %d/%d ops in %.1fs%20s\n", o.Label, done.Load(), target, time.Since(start).Seconds(), "")
			return
		case <-t.C:
			el := time.Since(start).Seconds()
			n := done.Load()
			fmt.Fprintf(o.Progress, "\r%s: %d/%d ops, %.0f ops/s, %.0fs   ", o.Label, n, target, float64(n)/el, el)
		}
	}
}

// OPS is TOTAL operations per second.
func (r *Result) OPS() float64 {
	t := r.Ops["TOTAL"]
	if t == nil || r.Elapsed <= 0 {
		return 0
	}
	return float64(t.Count()) / r.Elapsed.Seconds()
}

// Write prints go-ycsb-style lines, one per operation, sorted, TOTAL last.
// Takes(s) is the whole phase's wall time for every line.
func (r *Result) Write(out io.Writer) {
	names := make([]string, 0, len(r.Ops))
	for n := range r.Ops {
		if n != "TOTAL" {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	names = append(names, "TOTAL")
	us := func(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/1e3) }
	for _, n := range names {
		h := r.Ops[n]
		if h == nil {
			continue
		}
		fmt.Fprintf(out, "%-17s - Takes(s): %.1f, Count: %d, OPS: %.1f, Avg(us): %s, Min(us): %s, Max(us): %s, 50th(us): %s, 90th(us): %s, 95th(us): %s, 99th(us): %s, 99.9th(us): %s, 99.99th(us): %s\n",
			n, r.Elapsed.Seconds(), h.Count(), float64(h.Count())/r.Elapsed.Seconds(),
			us(h.Mean()), us(h.Min()), us(h.Max()), us(h.Quantile(.5)), us(h.Quantile(.9)),
			us(h.Quantile(.95)), us(h.Quantile(.99)), us(h.Quantile(.999)), us(h.Quantile(.9999)))
	}
	if r.FirstErr != nil {
		fmt.Fprintf(out, "errors: %d, first: %v\n", r.Errors, r.FirstErr)
	}
}

// String is Write into a string.
func (r *Result) String() string {
	var b strings.Builder
	r.Write(&b)
	return b.String()
}
