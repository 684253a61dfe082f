package kv

import (
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/heapkv/heapkv/internal/testutil"
	"github.com/heapkv/heapkv/internal/vfs"
	"github.com/heapkv/heapkv/internal/vfs/errorfs"
)

var (
	sweepAll     = flag.Bool("sweep.all", false, "fault sweeps: try every injection point and power-loss variant")
	sweepStride  = flag.Int("sweep.stride", 0, "fault sweeps: try every Nth injection point (0: automatic)")
	sweepOnly    = flag.Int64("sweep.n", 0, "fault sweeps: try only this injection point")
	sweepTimeout = flag.Duration("sweep.timeout", 0, "fault sweeps: time after which a run counts as hung (0: default)")
	sweepVerbose = flag.Bool("sweep.v", false, "fault sweeps: log every point tried")
	sweepCrashes = flag.Int("sweep.crashes", 0, "power-loss sweep: random crash variants per point (0: default)")
)

// sweepCIPoints bounds the injection points a fault mode tries in an
// ordinary run; a larger sweep takes a stride (and -sweep.all takes all).
const sweepCIPoints = 700

// maxHangs stops a mode after this many hung runs: each leaves its
// goroutines and its file system behind.
const maxHangs = 20

func timeoutOf() time.Duration {
	if *sweepTimeout > 0 {
		return *sweepTimeout
	}
	// A run takes tens of milliseconds.
	if raceEnabled {
		return 10 * time.Second
	}
	return 3 * time.Second
}

// pointResult is what one injection or crash point found.
type pointResult struct {
	n     int64
	label string // the failed operation or the crash point
	viols []violation
}

// sweepReport collects results and fails the test at the end if any point
// found a violation.
type sweepReport struct {
	t       *testing.T
	name    string
	rerun   string // how to rerun one point: a format for its number
	tried   int
	results []pointResult
}

func (rep *sweepReport) add(p pointResult) {
	rep.tried++
	if *sweepVerbose {
		rep.t.Logf("%s %d (%s): %d violations", rep.name, p.n, p.label, len(p.viols))
		for _, v := range p.viols {
			rep.t.Logf("    %v", v)
		}
	}
	if len(p.viols) > 0 {
		rep.results = append(rep.results, p)
	}
}

func (rep *sweepReport) finish() {
	t := rep.t
	byClass := map[string][]pointResult{}
	for _, p := range rep.results {
		seen := map[string]bool{}
		for _, v := range p.viols {
			if !seen[v.class] {
				seen[v.class] = true
				byClass[v.class] = append(byClass[v.class], p)
			}
		}
	}
	t.Logf("%s: %d points tried, %d with violations", rep.name, rep.tried, len(rep.results))
	var failing []string
	for _, class := range slices.Sorted(maps.Keys(byClass)) {
		ps := byClass[class]
		var ns []string
		for _, p := range ps[:min(len(ps), 30)] {
			ns = append(ns, fmt.Sprint(p.n))
		}
		first := ps[0]
		var msg string
		for _, v := range first.viols {
			if v.class == class {
				msg = v.msg
				break
			}
		}
		line := fmt.Sprintf("%s at %d points (%s): e.g. point %d (%s): %s", class, len(ps), strings.Join(ns, " "), first.n, first.label, msg)
		failing = append(failing, line)
	}
	if len(rep.results) > 0 {
		t.Logf("rerun one point: "+rep.rerun+" -v", rep.results[0].n)
	}
	for _, l := range failing {
		t.Errorf("%s", l)
	}
}

// points returns the injection points 1..k a sweep tries: all of them,
// or a stride with an offset from the seed.
func points(t *testing.T, k int64, seed int64) []int64 {
	if *sweepOnly > 0 {
		return []int64{*sweepOnly}
	}
	stride := int64(1)
	switch {
	case *sweepAll:
	case *sweepStride > 0:
		stride = int64(*sweepStride)
	default:
		limit := int64(sweepCIPoints)
		if testing.Short() || raceEnabled {
			limit /= 25
		}
		stride = max(1, (k+limit-1)/limit)
	}
	off := 1 + seed%stride
	var ps []int64
	for n := off; n <= k; n += stride {
		ps = append(ps, n)
	}
	t.Logf("points %d..%d stride %d (%d of %d; -sweep.all for every one)", off, k, stride, len(ps), k)
	return ps
}

// baseline runs the workload without faults and checks it and its
// recovery; it returns the operations the workload made.
func baseline(t *testing.T) (ops []errorfs.Op, background int64) {
	t.Helper()
	mem := vfs.NewMemFS()
	r := newSweepRun(mem, nil)
	r.efs.Trace(true)
	start := time.Now()
	finished := r.runWorkload(timeoutOf())
	for _, op := range r.efs.Traced() {
		if !op.Background {
			ops = append(ops, op)
		}
	}
	txs := r.led.snapshot()
	crashed := mem.Clone()
	power := mem.Clone()
	power.Crash(vfs.CrashOptions{Seed: 1})
	if finished {
		r.closeDB(timeoutOf())
	}
	viols := r.violations()
	viols = append(viols, checkRecovered(crashed, txs, timeoutOf())...)
	viols = append(viols, checkRecovered(power, txs, timeoutOf())...)
	if len(viols) > 0 {
		t.Fatalf("the workload fails without faults: %v", viols)
	}
	t.Logf("baseline: %d operations and %d in the background, %d transactions, %v",
		len(ops), r.efs.BackgroundOps(), len(txs), time.Since(start).Round(time.Millisecond))
	return ops, r.efs.BackgroundOps()
}

// sameOps reports where two traces first differ. The engine visits
// relations in map order in places (syncing a checkpoint's files, saving
// free-space maps, closing), so which relation an operation names may
// differ between runs, and the offset and length with it; the sequence of
// kinds and directories is the same.
func sameOps(a, b []errorfs.Op) string {
	norm := func(op errorfs.Op) errorfs.Op {
		op.Index = 0
		if strings.HasPrefix(op.Path, "/db/base/") {
			op = errorfs.Op{Kind: op.Kind, Path: "/db/base/…", Grows: op.Grows}
		}
		return op
	}
	for i := range min(len(a), len(b)) {
		if norm(a[i]) != norm(b[i]) {
			return fmt.Sprintf("op %d: %v vs %v", i+1, a[i], b[i])
		}
	}
	if len(a) != len(b) {
		return fmt.Sprintf("%d vs %d operations", len(a), len(b))
	}
	return ""
}

// TestIOErrorSweep is SQLite's I/O-error test: count the operations K of
// the fixed workload, then for N in 1..K fail the Nth (EIO once; EIO from
// the Nth on; ENOSPC at the Nth write or extend with the disk staying
// full). The workload must return errors, never panic or hang, and a
// database that must stop does (ErrEngineStopped). Then the process
// crashes, and the directory is opened without faults: every acknowledged
// commit is there with its values, no other transaction is even partly
// visible, Check passes and new writes work; and the same after a power
// loss (seeded random survivors of the unsynced writes, torn sectors). The
// engine's background goroutines' operations are a fourth sequence, each
// failed once.
func TestIOErrorSweep(t *testing.T) {
	seed := testutil.Seed(t)
	ops, bg := baseline(t)
	if again, _ := baseline(t); sameOps(ops, again) != "" {
		d := sameOps(ops, again)
		t.Logf("the workload's I/O differs between runs: %s", d)
	}
	k := int64(len(ops))
	var w int64
	for _, op := range ops {
		if op.WriteOrExtend() {
			w++
		}
	}
	t.Logf("K = %d operations, %d of them writes or extends", k, w)
	modes := []struct {
		name   string
		points int64
		inj    func(n int64) errorfs.Injector
	}{
		{"eio", k, func(n int64) errorfs.Injector { return errorfs.OnIndex(n, syscall.EIO) }},
		{"eio-persistent", k, func(n int64) errorfs.Injector { return errorfs.FromIndex(n, syscall.EIO) }},
		{"enospc", w, errorfs.DiskFull},
		{"eio-background", bg, func(n int64) errorfs.Injector {
			return errorfs.Nth(n, func(op errorfs.Op) bool { return op.Background }, false, syscall.EIO)
		}},
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			start := time.Now()
			rep := &sweepReport{t: t, name: m.name,
				rerun: fmt.Sprintf("go test ./kv -run 'TestIOErrorSweep/%s$' -seed=%d -sweep.v -sweep.n=%%d", m.name, seed)}
			ps := points(t, m.points, seed)
			results := make([]*pointResult, len(ps))
			// The points are independent: one worker per core, each
			// taking the next point, until too many runs have hung.
			var next, hangs atomic.Int64
			var wg sync.WaitGroup
			for range min(runtime.GOMAXPROCS(0), 4) {
				wg.Go(func() {
					for {
						i := next.Add(1) - 1
						if i >= int64(len(ps)) || hangs.Load() >= maxHangs {
							return
						}
						p := injectAt(m.inj(ps[i]), ps[i], seed)
						results[i] = &p
						if slices.ContainsFunc(p.viols, func(v violation) bool { return v.class == vHang }) {
							hangs.Add(1)
						}
					}
				})
			}
			wg.Wait()
			skipped := 0
			for _, p := range results {
				if p == nil {
					skipped++
				} else {
					rep.add(*p)
				}
			}
			if skipped > 0 {
				t.Logf("stopped after %d hung runs; %d points not tried", hangs.Load(), skipped)
			}
			t.Logf("%s: %v", m.name, time.Since(start).Round(time.Millisecond))
			rep.finish()
		})
	}
}

// injectAt runs the workload with inj, then checks recovery after a
// process crash and after a power loss.
func injectAt(inj errorfs.Injector, n, seed int64) pointResult {
	timeout := timeoutOf()
	mem := vfs.NewMemFS()
	r := newSweepRun(mem, inj)
	finished := r.runWorkload(timeout)
	txs := r.led.snapshot()
	crashed := mem.Clone()
	power := mem.Clone()
	rng := rand.New(rand.NewPCG(uint64(seed), uint64(n)))
	power.Crash(vfs.CrashOptions{Seed: int64(rng.Uint64()), KeepUnsynced: rng.Float64(), TearProbability: rng.Float64()})
	if finished && !r.closeDB(timeout) {
		r.violate(vHang, "Close at the end of the workload hung")
	}
	p := pointResult{n: n, label: "no fault reached"}
	if inj := r.efs.Injected(); len(inj) > 0 {
		p.label = inj[0].String()
		if len(inj) > 1 {
			p.label += fmt.Sprintf(" and %d more", len(inj)-1)
		}
		r.mu.Lock()
		p.label += fmt.Sprintf(", during %q", r.faultStep)
		r.mu.Unlock()
	}
	p.viols = r.violations()
	for _, v := range checkRecovered(crashed, txs, timeout) {
		v.msg = "after process crash: " + v.msg
		p.viols = append(p.viols, v)
	}
	for _, v := range checkRecovered(power, txs, timeout) {
		v.msg = "after power loss: " + v.msg
		p.viols = append(p.viols, v)
	}
	return p
}

// crashPoint is a state of the file system taken during the workload,
// with the ledger as it stood.
type crashPoint struct {
	n     int64
	label string
	fs    *vfs.MemFS
	txs   []swTx
}

// TestPowerLossSweep runs the workload once and takes the file system's
// state right after every successful sync (the Nth sync for every N) and
// before every call of the workload, which includes every point between
// two statements of an open transaction. Each state then loses power:
// once with every unsynced write dropped, and with seeded random
// survivors and torn sectors; and once as a process crash whose recovery
// is followed by a power loss. Every acknowledged commit must survive,
// nothing else be visible, all or nothing.
func TestPowerLossSweep(t *testing.T) {
	seed := testutil.Seed(t)
	variants, stride := 2, int64(1)
	if testing.Short() || raceEnabled {
		variants, stride = 1, 5
	}
	if *sweepAll {
		variants, stride = 4, 1
	}
	if *sweepCrashes > 0 {
		variants = *sweepCrashes
	}
	off := seed % stride
	timeout := timeoutOf()

	mem := vfs.NewMemFS()
	r := newSweepRun(mem, nil)
	pts := make(chan crashPoint, 2)
	var mu sync.Mutex // syncs may come from the engine's goroutines
	var syncs, steps int64
	take := func(sync bool, label func() string) {
		mu.Lock()
		defer mu.Unlock()
		if sync {
			syncs++
		} else {
			steps++
		}
		if n := syncs + steps; n%stride == off {
			pts <- crashPoint{n: n, label: label(), fs: mem.Clone(), txs: r.led.snapshot()}
		}
	}
	r.efs.OnDone(func(op errorfs.Op, err error) {
		if op.IsSync() && err == nil {
			take(true, func() string { return fmt.Sprintf("after sync %d (%v)", syncs, op) })
		}
	})
	r.onStep = func(step string) {
		take(false, func() string { return "before " + step })
	}
	// The checker runs beside the workload; the channel bounds how many
	// states are held at once.
	rep := &sweepReport{t: t, name: "power loss",
		rerun: fmt.Sprintf("go test ./kv -run TestPowerLossSweep -seed=%d -sweep.v # point %%d", seed)}
	checked := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(checked)
		for p := range pts {
			rep.add(powerLoss(p, seed, variants, timeout))
		}
	}()
	finished := r.runWorkload(2 * time.Minute)
	if finished {
		r.closeDB(timeout)
	}
	close(pts)
	<-checked
	if v := r.violations(); len(v) > 0 {
		t.Fatalf("the workload failed: %v", v)
	}
	t.Logf("power loss: %d syncs and %d steps, every %d of them (from %d) with %d crash variants each plus process-then-power, %v",
		syncs, steps, stride, off, variants, time.Since(start).Round(time.Millisecond))
	rep.finish()
}

// powerLoss checks one crash point under every variant.
func powerLoss(p crashPoint, seed int64, variants int, timeout time.Duration) pointResult {
	res := pointResult{n: p.n, label: p.label}
	rng := rand.New(rand.NewPCG(uint64(seed), uint64(p.n)))
	for v := range variants {
		c := p.fs.Clone()
		opts := vfs.CrashOptions{Seed: int64(rng.Uint64())}
		if v > 0 {
			opts.KeepUnsynced, opts.TearProbability, opts.KeepUnsyncedDirOps = rng.Float64(), rng.Float64(), rng.Float64()
		}
		c.Crash(opts)
		for _, x := range checkRecovered(c, p.txs, timeout) {
			x.msg = fmt.Sprintf("power loss %+v: %s", opts, x.msg)
			res.viols = append(res.viols, x)
		}
	}
	opts := vfs.CrashOptions{Seed: int64(rng.Uint64()), TearProbability: 0.5}
	for _, x := range checkProcessThenPowerLoss(p.fs, p.txs, opts, timeout) {
		x.msg = "process crash, recovery, then power loss: " + x.msg
		res.viols = append(res.viols, x)
	}
	return res
}
