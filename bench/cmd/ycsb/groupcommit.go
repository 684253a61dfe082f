package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heapkv/heapkv/bench/drivers"
	"github.com/heapkv/heapkv/bench/ycsb"
)

// gcRow is the durable commit rate of one engine at one concurrency.
type gcRow struct {
	Engine     string  `json:"engine"`
	Goroutines int     `json:"goroutines"`
	Commits    int64   `json:"commits"`
	Seconds    float64 `json:"seconds"`
	PerSec     float64 `json:"commits_per_sec"`
	P50Us      float64 `json:"p50_us"`
	P99Us      float64 `json:"p99_us"`
	Skipped    string  `json:"skipped,omitempty"`
}

// runGroupCommit measures how well each engine shares fsyncs among
// concurrent committers: G goroutines each commit single-key inserts
// (1000-byte values) with durable commits for --gc-duration, G in
// --gc-threads; and, as the physical limit, the rate of 8 KiB overwrite +
// fsync on the same file system.
func runGroupCommit(ctx context.Context, f *flags) error {
	cache, err := parseBytes(f.cache)
	if err != nil {
		return err
	}
	var gs []int
	for _, s := range strings.Split(f.gcThreads, ",") {
		g, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || g < 1 {
			return fmt.Errorf("--gc-threads %q", f.gcThreads)
		}
		gs = append(gs, g)
	}
	if err := os.MkdirAll(f.out, 0o755); err != nil {
		return err
	}
	fsyncs, err := fsyncRate(f.dir, f.gcDuration)
	if err != nil {
		return err
	}
	fmt.Printf("raw fsync rate (8 KiB overwrite + fsync, 1 thread): %.0f/s (%.1f us each)\n", fsyncs, 1e6/fsyncs)
	rows := []gcRow{{Engine: "fsync (8KiB)", Goroutines: 1, PerSec: fsyncs, Seconds: f.gcDuration.Seconds()}}
	for _, name := range strings.Split(f.engines, ",") {
		d, err := drivers.Get(strings.TrimSpace(name))
		if err != nil {
			return err
		}
		for _, g := range gs {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			r, err := groupCommitOne(ctx, f, d, g, cache)
			if err != nil {
				return fmt.Errorf("%s G=%d: %w", d.Name, g, err)
			}
			if r.Skipped != "" {
				fmt.Printf("%-9s skipped: %s\n", d.Name, r.Skipped)
				rows = append(rows, r)
				break
			}
			fmt.Printf("%-9s G=%-3d %9.0f commits/s  p50 %8.1f us  p99 %8.1f us\n", d.Name, g, r.PerSec, r.P50Us, r.P99Us)
			rows = append(rows, r)
		}
	}
	var recs [][]string
	for _, r := range rows {
		recs = append(recs, []string{r.Engine, strconv.Itoa(r.Goroutines), strconv.FormatInt(r.Commits, 10),
			ftoa(r.Seconds), ftoa(r.PerSec), ftoa(r.P50Us), ftoa(r.P99Us), r.Skipped})
	}
	csvPath := filepath.Join(f.out, "groupcommit.csv")
	jsonPath := filepath.Join(f.out, "groupcommit.json")
	svgPath := filepath.Join(f.out, "groupcommit.svg")
	if err := writeCSV(csvPath, []string{"engine", "goroutines", "commits", "seconds", "commits_per_sec", "p50_us", "p99_us", "skipped"}, recs); err != nil {
		return err
	}
	if err := writeJSON(jsonPath, rows); err != nil {
		return err
	}
	var groups, series []string
	vals := map[string]float64{}
	for _, g := range gs {
		groups = append(groups, fmt.Sprintf("G=%d", g))
	}
	series = append(series, "fsync (8KiB)")
	for _, r := range rows {
		if r.Engine != "fsync (8KiB)" && !contains(series, r.Engine) {
			series = append(series, r.Engine)
		}
		vals[fmt.Sprintf("G=%d/%s", r.Goroutines, r.Engine)] = r.PerSec
	}
	svg := barChart("Durable single-key commits/s by committing goroutines (fsync rate = physical limit of 1 flusher)", groups, series,
		func(g, s string) float64 {
			if s == "fsync (8KiB)" {
				return fsyncs
			}
			return vals[g+"/"+s]
		})
	if err := os.WriteFile(svgPath, []byte(svg), 0o644); err != nil {
		return err
	}
	fmt.Printf("\nwrote %s, %s, %s\n", csvPath, jsonPath, svgPath)
	return nil
}

func groupCommitOne(ctx context.Context, f *flags, d ycsb.Driver, g int, cache int64) (gcRow, error) {
	row := gcRow{Engine: d.Name, Goroutines: g}
	dir, err := os.MkdirTemp(f.dir, "gc-"+d.Name+"-")
	if err != nil {
		return row, err
	}
	defer os.RemoveAll(dir)
	db, err := d.Open(ycsb.Config{Dir: dir, Durability: ycsb.Durable, CacheBytes: cache, Threads: g})
	if err != nil {
		if ycsbUnavailable(err) {
			row.Skipped = err.Error()
			return row, nil
		}
		return row, err
	}
	defer db.Close()
	value := make([]byte, 1000)
	for i := range value {
		value[i] = byte('a' + i%26)
	}
	deadline := time.Now().Add(f.gcDuration)
	var commits atomic.Int64
	var firstErr error
	var errOnce sync.Once
	hists := make([]ycsb.Histogram, g)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range g {
		wg.Go(func() {
			for n := 0; time.Now().Before(deadline) && ctx.Err() == nil; n++ {
				key := []byte(fmt.Sprintf("gc%03d-%09d", i, n))
				t := time.Now()
				if err := db.Insert(key, value); err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				hists[i].Record(time.Since(t))
				commits.Add(1)
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return row, firstErr
	}
	var h ycsb.Histogram
	for i := range hists {
		h.Merge(&hists[i])
	}
	row.Seconds = time.Since(start).Seconds()
	row.Commits = commits.Load()
	row.PerSec = float64(row.Commits) / row.Seconds
	row.P50Us = float64(h.Quantile(.5)) / 1e3
	row.P99Us = float64(h.Quantile(.99)) / 1e3
	return row, nil
}

func ycsbUnavailable(err error) bool { return errors.Is(err, ycsb.ErrUnavailable) }

// fsyncRate overwrites the first 8 KiB of a file and fsyncs it in a loop.
func fsyncRate(parent string, d time.Duration) (float64, error) {
	dir, err := os.MkdirTemp(parent, "fsync-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	fh, err := os.Create(filepath.Join(dir, "probe"))
	if err != nil {
		return 0, err
	}
	defer fh.Close()
	buf := make([]byte, 8192)
	n := 0
	start := time.Now()
	for time.Since(start) < d {
		buf[0] = byte(n)
		if _, err := fh.WriteAt(buf, 0); err != nil {
			return 0, err
		}
		if err := fh.Sync(); err != nil {
			return 0, err
		}
		n++
	}
	return float64(n) / time.Since(start).Seconds(), nil
}
