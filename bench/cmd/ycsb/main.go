// Command ycsb runs the YCSB core workloads against heapkv and its peers
// (pebble, bbolt, badger, PostgreSQL) and writes a comparison. See package
// bench for what is measured and how the engines are made comparable.
//
//	go run ./bench/cmd/ycsb --workloads a,c,e --engines heapkv,pebble \
//	    --records 100000 --operations 100000 --threads 16 \
//	    --durability both --cache 128MB --out bench/results
//	go run ./bench/cmd/ycsb -P bench/workloads/workloada -p requestdistribution=uniform
//	go run ./bench/cmd/ycsb --mode groupcommit --engines heapkv,pebble,bbolt,badger
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/heapkv/heapkv/bench/drivers"
	"github.com/heapkv/heapkv/bench/workloads"
	"github.com/heapkv/heapkv/bench/ycsb"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

type flags struct {
	mode        string
	workloads   string
	engines     string
	records     int64
	operations  int64
	threads     int
	duration    time.Duration
	durability  string
	cache       string
	dir         string
	out         string
	memLimit    string
	files       multi
	props       multi
	seed        uint64
	cpuprofile  string
	gcDuration  time.Duration
	gcThreads   string
	loadOnce    bool
	childOut    string // internal: run one measurement, write its Row here
	childMemory string // internal: the memory mode the parent set up
	childDir    string // internal: a loaded store to run on (the child owns it)
	childLoad   float64
}

func main() {
	var f flags
	flag.StringVar(&f.mode, "mode", "ycsb", "ycsb or groupcommit")
	flag.StringVar(&f.workloads, "workloads", "a,b,c,d,e,f", "core workloads to run (a-f)")
	flag.StringVar(&f.engines, "engines", "heapkv,pebble,bbolt,badger,postgres", "engines to compare")
	flag.Int64Var(&f.records, "records", 0, "recordcount (0: the workload file's)")
	flag.Int64Var(&f.operations, "operations", 0, "operationcount (0: the workload file's)")
	flag.IntVar(&f.threads, "threads", 0, "threadcount (0: the workload file's, else 1)")
	flag.DurationVar(&f.duration, "duration", 0, "cap on each run phase (0: none)")
	flag.StringVar(&f.durability, "durability", "relaxed", "durable, relaxed or both")
	flag.StringVar(&f.cache, "cache", "128MB", "cache budget given to each engine that has a knob")
	flag.StringVar(&f.dir, "dir", "", "where engines keep data (default: a temporary directory)")
	flag.StringVar(&f.out, "out", "bench/results", "where results (CSV, JSON, SVG) are written")
	flag.StringVar(&f.memLimit, "mem-limit", "", "cap each engine's run at this much memory (page cache included) in its own cgroup, v2 or v1 (e.g. 512MB)")
	flag.Var(&f.files, "P", "workload file (repeatable); replaces --workloads")
	flag.Var(&f.props, "p", "property override name=value (repeatable)")
	flag.Uint64Var(&f.seed, "seed", 0, "generator seed (0: random)")
	flag.StringVar(&f.cpuprofile, "cpuprofile", "", "write a CPU profile of the whole process here")
	flag.DurationVar(&f.gcDuration, "gc-duration", 3*time.Second, "groupcommit: time per engine and goroutine count")
	flag.StringVar(&f.gcThreads, "gc-threads", "1,4,16,64", "groupcommit: goroutine counts")
	flag.BoolVar(&f.loadOnce, "load-once", true, "load each engine once per record set and run every workload on a fresh copy of that load")
	flag.StringVar(&f.childOut, "child-out", "", "internal")
	flag.StringVar(&f.childDir, "child-dir", "", "internal")
	flag.Float64Var(&f.childLoad, "child-load-ops", 0, "internal")
	flag.StringVar(&f.childMemory, "child-memory", "", "internal")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if f.cpuprofile != "" {
		pf, err := os.Create(f.cpuprofile)
		if err != nil {
			fatal(err)
		}
		pprof.StartCPUProfile(pf)
		defer pprof.StopCPUProfile()
	}
	var err error
	switch {
	case f.childOut != "":
		err = runChild(ctx, &f)
	case f.mode == "ycsb":
		err = runYCSB(ctx, &f)
	case f.mode == "groupcommit":
		err = runGroupCommit(ctx, &f)
	default:
		err = fmt.Errorf("unknown --mode %q", f.mode)
	}
	if err != nil {
		pprof.StopCPUProfile()
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "ycsb:", err)
	os.Exit(1)
}

// parseBytes reads 128MB, 512MiB, 1GB, 4096 (bytes).
func parseBytes(s string) (int64, error) {
	s = strings.TrimSpace(strings.ToUpper(s))
	mult := int64(1)
	for _, u := range []struct {
		suf string
		m   int64
	}{{"GIB", 1 << 30}, {"MIB", 1 << 20}, {"KIB", 1 << 10}, {"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(s, u.suf) {
			s, mult = strings.TrimSuffix(s, u.suf), u.m
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}

func durabilities(s string) ([]ycsb.Durability, error) {
	switch s {
	case "durable":
		return []ycsb.Durability{ycsb.Durable}, nil
	case "relaxed":
		return []ycsb.Durability{ycsb.Relaxed}, nil
	case "both":
		return []ycsb.Durability{ycsb.Relaxed, ycsb.Durable}, nil
	}
	return nil, fmt.Errorf("--durability %q: want durable, relaxed or both", s)
}

// namedWorkload is a workload to run and the name it is reported under.
type namedWorkload struct {
	name  string
	props ycsb.Properties
}

func (f *flags) workloadList() ([]namedWorkload, error) {
	var list []namedWorkload
	if len(f.files) > 0 {
		for _, path := range f.files {
			p, err := ycsb.LoadProperties(path)
			if err != nil {
				return nil, err
			}
			list = append(list, namedWorkload{strings.TrimPrefix(filepath.Base(path), "workload"), p})
		}
	} else {
		for _, n := range strings.Split(f.workloads, ",") {
			n = strings.ToLower(strings.TrimSpace(n))
			p, err := workloads.Get(n)
			if err != nil {
				return nil, err
			}
			list = append(list, namedWorkload{n, p})
		}
	}
	return list, nil
}

// workload applies -p overrides, then the --records/--operations/--threads
// flags, to a workload's properties.
func (f *flags) workload(p ycsb.Properties) (*ycsb.Workload, error) {
	q := ycsb.Properties{}
	for k, v := range p {
		q[k] = v
	}
	for _, o := range f.props {
		if err := q.SetOverride(o); err != nil {
			return nil, err
		}
	}
	if f.records > 0 {
		q["recordcount"] = strconv.FormatInt(f.records, 10)
	}
	if f.operations > 0 {
		q["operationcount"] = strconv.FormatInt(f.operations, 10)
	}
	if f.threads > 0 {
		q["threadcount"] = strconv.Itoa(f.threads)
	}
	return ycsb.ParseWorkload(q)
}

func runYCSB(ctx context.Context, f *flags) error {
	list, err := f.workloadList()
	if err != nil {
		return err
	}
	modes, err := durabilities(f.durability)
	if err != nil {
		return err
	}
	cache, err := parseBytes(f.cache)
	if err != nil {
		return err
	}
	var engines []ycsb.Driver
	for _, n := range strings.Split(f.engines, ",") {
		d, err := drivers.Get(strings.TrimSpace(n))
		if err != nil {
			return err
		}
		engines = append(engines, d)
	}
	if err := os.MkdirAll(f.out, 0o755); err != nil {
		return err
	}
	capper, memNote := newCapper(f)
	fmt.Printf("# memory: %s\n", memNote)
	fmt.Printf("# cache budget %s per engine: ", f.cache)
	for _, d := range engines {
		fmt.Printf("%s=%s; ", d.Name, d.CacheNote)
	}
	fmt.Println()
	loads := newLoadCache(f, cache)
	defer loads.removeAll()
	var rows []Row
	for _, mode := range modes {
		for _, nw := range list {
			w, err := f.workload(nw.props)
			if err != nil {
				return fmt.Errorf("workload %s: %w", nw.name, err)
			}
			for _, d := range engines {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				row, err := measureOne(ctx, f, loads, capper, nw, w, d, mode, cache, memNote)
				if err != nil {
					return err
				}
				rows = append(rows, row)
			}
		}
	}
	setRatios(rows)
	writeTable(os.Stdout, rows)
	files, err := saveRows(f.out, rows)
	if err != nil {
		return err
	}
	fmt.Printf("\nwrote %s\n", strings.Join(files, ", "))
	return nil
}

// measureOne measures one workload on one engine in one durability mode:
// on a fresh copy of the engine's load when --load-once, else with its own
// load; in a memory-capped child when capper is set.
func measureOne(ctx context.Context, f *flags, loads *loadCache, capper *capper, nw namedWorkload,
	w *ycsb.Workload, d ycsb.Driver, mode ycsb.Durability, cache int64, memNote string) (Row, error) {
	var from string
	var loadOPS float64
	if f.loadOnce {
		tpl, ops, skip, err := loads.get(ctx, w, d)
		if err != nil {
			return Row{}, err
		}
		if skip != "" {
			return Row{Workload: nw.name, Engine: d.Name, Durability: mode.String(), Memory: memNote, Skipped: skip}, nil
		}
		if from, err = copyLoad(f, tpl, d.Name, nw.name); err != nil {
			return Row{}, err
		}
		loadOPS = ops
	}
	if capper != nil {
		return capper.run(ctx, f, nw, d.Name, mode, from, loadOPS)
	}
	return measure(ctx, f, nw.name, w, d, mode, cache, memNote, from, loadOPS)
}

// measure runs one workload on one engine and prints YCSB-style result
// lines. With from == "" it loads and runs in a fresh directory; else it
// runs on from, a fresh copy of a load made by loadCache (loadOPS is that
// load's rate), and removes it after.
func measure(ctx context.Context, f *flags, wname string, w *ycsb.Workload, d ycsb.Driver,
	mode ycsb.Durability, cache int64, memNote, from string, loadOPS float64) (Row, error) {
	row := Row{Workload: wname, Engine: d.Name, Durability: mode.String(), Memory: memNote,
		Records: w.RecordCount, Threads: w.ThreadCount}
	dir := from
	if dir == "" {
		var err error
		if dir, err = newRunDir(f, d.Name, wname); err != nil {
			return row, err
		}
	}
	defer os.RemoveAll(dir)
	label := fmt.Sprintf("%s/%s/%s", wname, d.Name, mode)
	cfg := ycsb.Config{Dir: dir, Durability: mode, CacheBytes: cache, Threads: w.ThreadCount}
	ro := ycsb.RunOptions{MaxDuration: f.duration, Progress: os.Stderr, Label: label, Seed: f.seed}
	var load, run *ycsb.Result
	var err error
	if from != "" {
		run, err = ycsb.RunOn(ctx, d, cfg, w, ro)
	} else {
		load, run, err = ycsb.LoadAndRun(ctx, d, cfg, w, ro)
	}
	if errors.Is(err, ycsb.ErrUnavailable) {
		fmt.Fprintf(os.Stderr, "%s: skipped: %v\n", label, err)
		row.Skipped = err.Error()
		return row, nil
	}
	if err != nil {
		return row, fmt.Errorf("%s: %w", label, err)
	}
	fmt.Printf("\n== workload %s, %s, %s, %d records, %d threads\n", wname, d.Name, mode, w.RecordCount, w.ThreadCount)
	if load != nil {
		fmt.Println("-- load")
		load.Write(os.Stdout)
		loadOPS = load.OPS()
	} else {
		fmt.Printf("-- load: a fresh copy of one load of this engine (%.0f ops/s)\n", loadOPS)
	}
	fmt.Println("-- run")
	run.Write(os.Stdout)
	if run.Engine != "" {
		fmt.Printf("-- %s says: %s\n", d.Name, run.Engine)
	}
	t := run.Ops["TOTAL"]
	row.Operations = t.Count()
	row.Seconds = run.Elapsed.Seconds()
	row.OPS = run.OPS()
	row.AvgUs = float64(t.Mean()) / 1e3
	row.P50Us = float64(t.Quantile(.5)) / 1e3
	row.P99Us = float64(t.Quantile(.99)) / 1e3
	row.Errors = run.Errors
	row.LoadOPS = loadOPS
	return row, nil
}

// newRunDir makes a fresh directory for one engine's store under --dir
// (or the system's temporary directory).
func newRunDir(f *flags, engine, wname string) (string, error) {
	if f.dir != "" {
		if err := os.MkdirAll(f.dir, 0o755); err != nil {
			return "", err
		}
	}
	return os.MkdirTemp(f.dir, "ycsb-"+engine+"-"+wname+"-")
}

// runChild is one measurement inside a memory-capped cgroup: it runs the
// single workload/engine/mode it was given and writes the Row as JSON.
func runChild(ctx context.Context, f *flags) error {
	list, err := f.workloadList()
	if err != nil || len(list) != 1 {
		return fmt.Errorf("child: want one workload: %v", err)
	}
	w, err := f.workload(list[0].props)
	if err != nil {
		return err
	}
	d, err := drivers.Get(f.engines)
	if err != nil {
		return err
	}
	modes, err := durabilities(f.durability)
	if err != nil || len(modes) != 1 {
		return fmt.Errorf("child: want one durability: %v", err)
	}
	cache, err := parseBytes(f.cache)
	if err != nil {
		return err
	}
	row, err := measure(ctx, f, list[0].name, w, d, modes[0], cache, f.childMemory, f.childDir, f.childLoad)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(row)
	return os.WriteFile(f.childOut, b, 0o644)
}
