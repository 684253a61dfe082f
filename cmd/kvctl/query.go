package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"

	"github.com/heapkv/heapkv/kv"
)

// rangeFlags are the flags that pick a range: --start, --end or --prefix.
type rangeFlags struct {
	start, end, prefix *string
}

func addRangeFlags(fs *flag.FlagSet) rangeFlags {
	return rangeFlags{
		start:  fs.String("start", "", "first `KEY` (inclusive; default: the first key)"),
		end:    fs.String("end", "", "`KEY` to stop before (exclusive; default: past the last key)"),
		prefix: fs.String("prefix", "", "only keys beginning with `P` (instead of --start and --end)"),
	}
}

// bounds returns the range the flags name.
func (r rangeFlags) bounds() (lo, hi []byte, err error) {
	if *r.start != "" {
		lo = []byte(*r.start)
	}
	if *r.end != "" {
		hi = []byte(*r.end)
	}
	if *r.prefix != "" {
		if *r.start != "" || *r.end != "" {
			return nil, nil, usageErrorf("--prefix excludes --start and --end")
		}
		lo, hi = []byte(*r.prefix), prefixEnd([]byte(*r.prefix))
	}
	return lo, hi, nil
}

// queryFlags are scan's flags that need a sort: another order, or an
// offset.
type queryFlags struct {
	orderBy *string
	desc    *bool
	offset  *int64
	scan    *string
}

func addQueryFlags(fs *flag.FlagSet) queryFlags {
	return queryFlags{
		orderBy: fs.String("order-by", "key", "sort by `key` or value (by value sorts within work_mem, spilling to DIR/tmp)"),
		desc:    fs.Bool("desc", false, "descending order (with key order, the same as --reverse)"),
		offset:  fs.Int64("offset", 0, "skip the first `N` pairs of the order"),
		scan:    fs.String("scan", "", "read the range by `index` scan or bitmap heap scan (default: the planner's choice)"),
	}
}

// query returns the Query the flags ask for, and whether they ask for one
// at all (a plain scan in key order does not need one).
func (q queryFlags) query(lo, hi []byte, reverse bool, limit int) (kv.Query, bool, error) {
	order, ok := orders[*q.orderBy]
	if !ok {
		return kv.Query{}, false, usageErrorf("--order-by takes key or value")
	}
	method, ok := scanMethods[*q.scan]
	if !ok {
		return kv.Query{}, false, usageErrorf("--scan takes index or bitmap")
	}
	if *q.offset < 0 {
		return kv.Query{}, false, usageErrorf("--offset must not be negative")
	}
	if reverse && order != kv.ByKey {
		return kv.Query{}, false, usageErrorf("--reverse is for key order; use --desc")
	}
	need := order != kv.ByKey || *q.desc || *q.offset > 0 || method != kv.ScanAuto
	return kv.Query{Start: lo, End: hi, OrderBy: order, Desc: *q.desc || reverse, Offset: *q.offset, Limit: int64(limit), Scan: method}, need, nil
}

// The words --order-by and --scan take.
var (
	orders      = map[string]kv.Order{"key": kv.ByKey, "value": kv.ByValue}
	scanMethods = map[string]kv.ScanMethod{"": kv.ScanAuto, "index": kv.ScanIndex, "bitmap": kv.ScanBitmap}
)

// aggFlags are agg's flags.
type aggFlags struct {
	prefix                            *string
	length                            *int
	byValue, ordered                  *bool
	count, distinct, minv, maxv, sumv *bool
}

func addAggFlags(fs *flag.FlagSet) aggFlags {
	return aggFlags{
		prefix:   fs.String("group-by-prefix", "", "group by the key up to the first `SEP` (one byte)"),
		length:   fs.Int("group-by-length", 0, "group by the key's first `N` bytes"),
		byValue:  fs.Bool("group-by-value", false, "group by value: the distinct values"),
		ordered:  fs.Bool("ordered", false, "print groups in key order (sorts instead of hashing)"),
		count:    fs.Bool("count", false, "count the pairs of each group"),
		distinct: fs.Bool("count-distinct", false, "count the distinct values of each group"),
		minv:     fs.Bool("min", false, "the least value of each group (byte order)"),
		maxv:     fs.Bool("max", false, "the greatest value of each group (byte order)"),
		sumv:     fs.Bool("sum", false, "the sum of each group's values, read as decimal integers"),
	}
}

// aggregate returns the Aggregate the flags ask for.
func (f aggFlags) aggregate(lo, hi []byte) (kv.Aggregate, error) {
	a := kv.Aggregate{Start: lo, End: hi, Ordered: *f.ordered}
	groupings := 0
	if *f.prefix != "" {
		if len(*f.prefix) != 1 {
			return a, usageErrorf("--group-by-prefix takes one byte, not %q", *f.prefix)
		}
		a.GroupBy = kv.GroupBy{Kind: kv.GroupPrefix, Sep: (*f.prefix)[0]}
		groupings++
	}
	if *f.length != 0 {
		if *f.length < 0 {
			return a, usageErrorf("--group-by-length must be positive")
		}
		a.GroupBy = kv.GroupBy{Kind: kv.GroupLength, N: *f.length}
		groupings++
	}
	if *f.byValue {
		a.GroupBy = kv.GroupBy{Kind: kv.GroupValue}
		groupings++
	}
	if groupings > 1 {
		return a, usageErrorf("give at most one of --group-by-prefix, --group-by-length and --group-by-value")
	}
	for _, x := range []struct {
		on bool
		f  kv.AggFuncs
	}{{*f.count, kv.AggCount}, {*f.distinct, kv.AggCountDistinct}, {*f.minv, kv.AggMin}, {*f.maxv, kv.AggMax}, {*f.sumv, kv.AggSum}} {
		if x.on {
			a.Funcs |= x.f
		}
	}
	if a.Funcs == 0 {
		return a, usageErrorf("give at least one of --count, --count-distinct, --min, --max and --sum")
	}
	return a, nil
}

// printRows writes a query's rows as scan does.
func printRows(w io.Writer, format string, r *kv.Rows) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for r.Next() {
		var err error
		if format == "json" {
			err = enc.Encode(newJSONRecord(r.Key(), r.Value()))
		} else {
			_, err = fmt.Fprintf(w, "%s\t%s\n", textField(r.Key()), textField(r.Value()))
		}
		if err != nil {
			return err
		}
	}
	return r.Err()
}

// jsonGroup is a group in agg's JSON output; absent aggregates are left out.
type jsonGroup struct {
	Group    string  `json:"group"`
	Count    *int64  `json:"count,omitempty"`
	Distinct *int64  `json:"count_distinct,omitempty"`
	Min      *string `json:"min,omitempty"`
	Max      *string `json:"max,omitempty"`
	Sum      *int64  `json:"sum,omitempty"`
}

// printGroups writes one line per group: the group, then the aggregates in
// the order count, count distinct, min, max, sum, tab-separated.
func printGroups(w io.Writer, format string, f kv.AggFuncs, g *kv.Groups) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for g.Next() {
		gr := g.Group()
		if format == "json" {
			j := jsonGroup{Group: string(gr.Key)}
			if f&kv.AggCount != 0 {
				j.Count = &gr.Count
			}
			if f&kv.AggCountDistinct != 0 {
				j.Distinct = &gr.Distinct
			}
			if f&kv.AggMin != 0 {
				s := string(gr.Min)
				j.Min = &s
			}
			if f&kv.AggMax != 0 {
				s := string(gr.Max)
				j.Max = &s
			}
			if f&kv.AggSum != 0 {
				j.Sum = &gr.Sum
			}
			if err := enc.Encode(j); err != nil {
				return err
			}
			continue
		}
		line := textField(gr.Key)
		if f&kv.AggCount != 0 {
			line += "\t" + strconv.FormatInt(gr.Count, 10)
		}
		if f&kv.AggCountDistinct != 0 {
			line += "\t" + strconv.FormatInt(gr.Distinct, 10)
		}
		if f&kv.AggMin != 0 {
			line += "\t" + textField(gr.Min)
		}
		if f&kv.AggMax != 0 {
			line += "\t" + textField(gr.Max)
		}
		if f&kv.AggSum != 0 {
			line += "\t" + strconv.FormatInt(gr.Sum, 10)
		}
		if _, err := fmt.Fprintln(w, line); err != nil {
			return err
		}
	}
	return g.Err()
}

func runAgg(e *env, args []string) error {
	fs := e.flags("agg")
	ks := keyspaceFlag(fs)
	format := formatFlag(fs)
	rf := addRangeFlags(fs)
	af := addAggFlags(fs)
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	if err := checkFormat(*format); err != nil {
		return err
	}
	lo, hi, err := rf.bounds()
	if err != nil {
		return err
	}
	a, err := af.aggregate(lo, hi)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(e.stdout, 64<<10)
	err = e.withDB(true, func(db *kv.DB) error {
		return db.View(context.Background(), func(tx *kv.Tx) error {
			g := tx.Keyspace(*ks).Aggregate(a)
			err := printGroups(w, *format, a.Funcs, g)
			if cerr := g.Close(); err == nil {
				err = cerr
			}
			return err
		})
	})
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	return err
}

// runExplain prints the plan of a scan or an agg, given with the same
// flags; with --analyze it runs it, discarding the output, and prints what
// the run did.
func runExplain(e *env, args []string) error {
	fs := e.flags("explain")
	analyze := fs.Bool("analyze", false, "run it and show actual rows, times, memory and disk")
	// explain's own flags come before the command; the command's after it.
	i := slices.IndexFunc(args, func(a string) bool { return a == "scan" || a == "agg" })
	if i < 0 {
		if _, err := parse(fs, args, 0, 0); err != nil {
			return err
		}
		return usageErrorf("explain takes scan or agg and their flags")
	}
	if _, err := parse(fs, args[:i], 0, 0); err != nil {
		return err
	}
	what, rest := args[i], args[i+1:]
	sub := flag.NewFlagSet("explain "+what, flag.ContinueOnError)
	sub.SetOutput(io.Discard)
	ks := keyspaceFlag(sub)
	rf := addRangeFlags(sub)
	var run func(tx *kv.Keyspace) (plan string, err error)
	switch what {
	case "scan":
		qf := addQueryFlags(sub)
		limit := sub.Int("limit", 0, "stop after `N` pairs (0: no limit)")
		reverse := sub.Bool("reverse", false, "from the last key down")
		if err := sub.Parse(rest); err != nil {
			return usageErrorf("explain scan: %v", err)
		}
		lo, hi, err := rf.bounds()
		if err != nil {
			return err
		}
		if *limit < 0 {
			return usageErrorf("--limit must not be negative")
		}
		q, _, err := qf.query(lo, hi, *reverse, *limit)
		if err != nil {
			return err
		}
		run = func(k *kv.Keyspace) (string, error) {
			if !*analyze {
				return k.ExplainQuery(q)
			}
			r := k.Query(q)
			err := printRows(io.Discard, "text", r)
			if cerr := r.Close(); err == nil {
				err = cerr
			}
			return r.Explain(), err
		}
	case "agg":
		af := addAggFlags(sub)
		if err := sub.Parse(rest); err != nil {
			return usageErrorf("explain agg: %v", err)
		}
		lo, hi, err := rf.bounds()
		if err != nil {
			return err
		}
		a, err := af.aggregate(lo, hi)
		if err != nil {
			return err
		}
		run = func(k *kv.Keyspace) (string, error) {
			if !*analyze {
				return k.ExplainAggregate(a)
			}
			g := k.Aggregate(a)
			err := printGroups(io.Discard, "text", a.Funcs, g)
			if cerr := g.Close(); err == nil {
				err = cerr
			}
			return g.Explain(), err
		}
	default:
		return usageErrorf("explain takes scan or agg, not %q", what)
	}
	if sub.NArg() > 0 {
		return usageErrorf("explain %s: unexpected argument %q", what, sub.Arg(0))
	}
	var plan string
	err := e.withDB(true, func(db *kv.DB) error {
		return db.View(context.Background(), func(tx *kv.Tx) (err error) {
			plan, err = run(tx.Keyspace(*ks))
			return err
		})
	})
	if err != nil {
		return err
	}
	_, err = io.WriteString(e.stdout, plan)
	return err
}
