package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heapkv/heapkv/bench/drivers"
)

// TestRunnerLoadOnce runs the runner end to end at a tiny size on every
// engine with the default --load-once: workloads A and E (E inserts, so its
// copy diverges from the template) in both modes, each on a fresh copy of
// one load per engine; a PostgreSQL cluster copied while stopped must start
// as it is. It checks every run did all its operations without errors,
// that each engine was loaded once (one load rate across its rows), and
// that no store directory, template or copy, is left behind.
func TestRunnerLoadOnce(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} { // reachable by PostgreSQL's user
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	engines := "heapkv,pebble,bbolt,badger"
	if drivers.PostgresAvailable() == nil {
		engines += ",postgres" // a copied cluster must start as it is
	}
	f := &flags{mode: "ycsb", workloads: "a,e", engines: engines, records: 300, operations: 400, threads: 2,
		durability: "both", cache: "8MB", dir: filepath.Join(dir, "stores"), out: filepath.Join(dir, "out"),
		loadOnce: true, seed: 1}
	start := time.Now()
	if err := runYCSB(t.Context(), f); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s in %v", engines, time.Since(start).Round(time.Millisecond))
	b, err := os.ReadFile(filepath.Join(f.out, "ycsb.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rows []Row
	if err := json.Unmarshal(b, &rows); err != nil {
		t.Fatal(err)
	}
	n := strings.Count(engines, ",") + 1
	if len(rows) != 2*2*n {
		t.Fatalf("%d rows, want %d", len(rows), 4*n)
	}
	loadRate := map[string]float64{}
	for _, r := range rows {
		if r.Skipped != "" || r.Errors != 0 || r.Operations != 400 || r.LoadOPS <= 0 {
			t.Errorf("%s/%s/%s: skipped %q, %d errors, %d operations, load %.0f ops/s",
				r.Workload, r.Engine, r.Durability, r.Skipped, r.Errors, r.Operations, r.LoadOPS)
		}
		if prev, ok := loadRate[r.Engine]; ok && prev != r.LoadOPS {
			t.Errorf("%s: load rates %.0f and %.0f: loaded more than once", r.Engine, prev, r.LoadOPS)
		}
		loadRate[r.Engine] = r.LoadOPS
	}
	left, _ := os.ReadDir(f.dir)
	if len(left) != 0 {
		t.Errorf("%d store directories left behind in %s", len(left), f.dir)
	}
}
