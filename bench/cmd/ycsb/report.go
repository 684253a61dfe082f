package main

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Row is one (workload, engine, durability) measurement.
type Row struct {
	Workload   string  `json:"workload"`
	Engine     string  `json:"engine"`
	Durability string  `json:"durability"`
	Memory     string  `json:"memory"` // how memory was bounded for this run
	Records    int64   `json:"records"`
	Operations uint64  `json:"operations"`
	Threads    int     `json:"threads"`
	Seconds    float64 `json:"seconds"`
	OPS        float64 `json:"ops_per_sec"`
	AvgUs      float64 `json:"avg_us"`
	P50Us      float64 `json:"p50_us"`
	P99Us      float64 `json:"p99_us"`
	Errors     int64   `json:"errors"`
	LoadOPS    float64 `json:"load_ops_per_sec"`
	Ratio      float64 `json:"ratio_to_heapkv,omitempty"` // OPS / heapkv's OPS
	Skipped    string  `json:"skipped,omitempty"`
	PeakMiB    float64 `json:"peak_mem_mib,omitempty"` // the cgroup's high-water mark, when capped
}

// setRatios fills Ratio from the heapkv row of the same workload and mode.
func setRatios(rows []Row) {
	base := map[string]float64{}
	for _, r := range rows {
		if r.Engine == "heapkv" && r.Skipped == "" {
			base[r.Workload+"/"+r.Durability] = r.OPS
		}
	}
	for i := range rows {
		if b := base[rows[i].Workload+"/"+rows[i].Durability]; b > 0 && rows[i].Skipped == "" {
			rows[i].Ratio = rows[i].OPS / b
		}
	}
}

func writeTable(w io.Writer, rows []Row) {
	fmt.Fprintf(w, "\n%-8s %-9s %-8s %12s %10s %10s %9s %7s  %s\n", "workload", "engine", "mode", "ops/s", "p50(us)", "p99(us)", "vs heapkv", "errors", "memory")
	fmt.Fprintln(w, strings.Repeat("-", 100))
	for _, r := range rows {
		if r.Skipped != "" {
			fmt.Fprintf(w, "%-8s %-9s %-8s skipped: %s\n", r.Workload, r.Engine, r.Durability, r.Skipped)
			continue
		}
		ratio := "-"
		if r.Ratio > 0 {
			ratio = fmt.Sprintf("%.2fx", r.Ratio)
		}
		mem := r.Memory
		if r.PeakMiB > 0 {
			mem += fmt.Sprintf(", peak %.0f MiB", r.PeakMiB)
		}
		fmt.Fprintf(w, "%-8s %-9s %-8s %12.0f %10.1f %10.1f %9s %7d  %s\n",
			r.Workload, r.Engine, r.Durability, r.OPS, r.P50Us, r.P99Us, ratio, r.Errors, mem)
	}
}

func writeCSV(path string, header []string, records [][]string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	cw := csv.NewWriter(f)
	cw.Write(header)
	cw.WriteAll(records)
	if err := cw.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func ftoa(f float64) string { return strconv.FormatFloat(f, 'f', 2, 64) }

// saveRows writes ycsb.csv, ycsb.json and one SVG chart per durability.
func saveRows(out string, rows []Row) ([]string, error) {
	var recs [][]string
	for _, r := range rows {
		recs = append(recs, []string{r.Workload, r.Engine, r.Durability, r.Memory, strconv.FormatInt(r.Records, 10),
			strconv.FormatUint(r.Operations, 10), strconv.Itoa(r.Threads), ftoa(r.Seconds), ftoa(r.OPS),
			ftoa(r.AvgUs), ftoa(r.P50Us), ftoa(r.P99Us), ftoa(r.Ratio), strconv.FormatInt(r.Errors, 10), ftoa(r.LoadOPS), r.Skipped, ftoa(r.PeakMiB)})
	}
	files := []string{filepath.Join(out, "ycsb.csv"), filepath.Join(out, "ycsb.json")}
	if err := writeCSV(files[0], []string{"workload", "engine", "durability", "memory", "records", "operations", "threads",
		"seconds", "ops_per_sec", "avg_us", "p50_us", "p99_us", "ratio_to_heapkv", "errors", "load_ops_per_sec", "skipped", "peak_mem_mib"}, recs); err != nil {
		return nil, err
	}
	if err := writeJSON(files[1], rows); err != nil {
		return nil, err
	}
	modes := []string{}
	for _, r := range rows {
		if !contains(modes, r.Durability) {
			modes = append(modes, r.Durability)
		}
	}
	for _, m := range modes {
		var groups, series []string
		vals := map[[2]string]float64{}
		for _, r := range rows {
			if r.Durability != m {
				continue
			}
			if !contains(groups, r.Workload) {
				groups = append(groups, r.Workload)
			}
			if !contains(series, r.Engine) {
				series = append(series, r.Engine)
			}
			if r.Skipped == "" {
				vals[[2]string{r.Workload, r.Engine}] = r.OPS
			}
		}
		path := filepath.Join(out, "ycsb-"+m+".svg")
		svg := barChart(fmt.Sprintf("YCSB throughput, %s commits (ops/s, higher is better)", m), groups, series,
			func(g, s string) float64 { return vals[[2]string{g, s}] })
		if err := os.WriteFile(path, []byte(svg), 0o644); err != nil {
			return nil, err
		}
		files = append(files, path)
	}
	return files, nil
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

var palette = []string{"#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#7f7f7f"}

// barChart draws a grouped bar chart: one group per x label, one bar per
// series, a linear y axis from 0 with labelled gridlines and each bar's
// value above it.
func barChart(title string, groups, series []string, value func(g, s string) float64) string {
	const (
		top, bottom, left, right = 50, 60, 80, 20
		plotH                    = 320
		barW, gap                = 18, 24
	)
	groupW := len(series)*barW + gap
	width := left + right + max(len(groups)*groupW, 300)
	height := top + plotH + bottom + 20
	maxV := 0.0
	for _, g := range groups {
		for _, s := range series {
			maxV = max(maxV, value(g, s))
		}
	}
	step := niceStep(maxV / 5)
	yMax := math.Max(step*math.Ceil(maxV/step), step)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="14" font-weight="bold">%s</text>`+"\n", left, esc(title))
	y := func(v float64) float64 { return top + plotH - v/yMax*plotH }
	for v := 0.0; v <= yMax+step/2; v += step {
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", left, width-right, y(v), y(v))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, y(v)+4, human(v))
	}
	for gi, g := range groups {
		x0 := left + gi*groupW + gap/2
		for si, s := range series {
			v := value(g, s)
			x := x0 + si*barW
			fmt.Fprintf(&b, `<rect x="%d" y="%.1f" width="%d" height="%.1f" fill="%s"><title>%s %s: %.0f</title></rect>`+"\n",
				x, y(v), barW-2, top+plotH-y(v), palette[si%len(palette)], esc(g), esc(s), v)
			if v > 0 {
				fmt.Fprintf(&b, `<text x="%d" y="%.1f" font-size="8" text-anchor="middle">%s</text>`+"\n", x+barW/2-1, y(v)-3, human(v))
			} else {
				fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="8" text-anchor="middle">n/a</text>`+"\n", x+barW/2-1, top+plotH-3)
			}
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" font-size="12">%s</text>`+"\n", x0+len(series)*barW/2, top+plotH+18, esc(g))
	}
	for si, s := range series {
		x := left + si*90
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="12" height="12" fill="%s"/><text x="%d" y="%d">%s</text>`+"\n",
			x, top+plotH+34, palette[si%len(palette)], x+16, top+plotH+44, esc(s))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

func human(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.3gM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.0fk", v/1e3)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}

func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
