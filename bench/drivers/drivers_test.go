package drivers

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/heapkv/heapkv/bench/workloads"
	"github.com/heapkv/heapkv/bench/ycsb"
)

// storeDir is a test directory the PostgreSQL server's user can reach when
// the test runs as root (t.TempDir's parent is private to root).
func storeDir(t *testing.T) string {
	d := t.TempDir()
	if err := os.Chmod(filepath.Dir(d), 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestSmoke runs every driver through all six core workloads at a tiny
// size (200 records, 500 operations, 4 threads) in both durability modes
// for A and relaxed for the rest, checking nothing fails. PostgreSQL is
// skipped when it cannot be started here.
func TestSmoke(t *testing.T) {
	for _, d := range All() {
		t.Run(d.Name, func(t *testing.T) {
			if d.Name == "postgres" {
				if err := PostgresAvailable(); err != nil {
					t.Skip(err)
				}
			}
			for _, name := range []string{"a", "b", "c", "d", "e", "f"} {
				p, err := workloads.Get(name)
				if err != nil {
					t.Fatal(err)
				}
				p["recordcount"], p["operationcount"], p["threadcount"] = "200", "500", "4"
				w, err := ycsb.ParseWorkload(p)
				if err != nil {
					t.Fatal(err)
				}
				modes := []ycsb.Durability{ycsb.Relaxed}
				if name == "a" {
					modes = append(modes, ycsb.Durable)
				}
				for _, m := range modes {
					cfg := ycsb.Config{Dir: storeDir(t), Durability: m, CacheBytes: 16 << 20, Threads: w.ThreadCount}
					start := time.Now()
					load, run, err := ycsb.LoadAndRun(t.Context(), d, cfg, w, ycsb.RunOptions{Seed: 1})
					if errors.Is(err, ycsb.ErrUnavailable) {
						t.Skip(err)
					}
					if err != nil {
						t.Fatalf("workload %s %s: %v", name, m, err)
					}
					if load.Errors != 0 || run.Errors != 0 {
						t.Fatalf("workload %s %s: %d load, %d run errors; first: %v %v",
							name, m, load.Errors, run.Errors, load.FirstErr, run.FirstErr)
					}
					if got := run.Ops["TOTAL"].Count(); got != 500 {
						t.Fatalf("workload %s: %d operations, want 500", name, got)
					}
					t.Logf("workload %s %s: %v, %.0f ops/s", name, m, time.Since(start).Round(time.Millisecond), run.OPS())
				}
			}
		})
	}
}

// TestScanOrder checks every engine's scan returns records in key order
// from the start key and honours the count.
func TestScanCount(t *testing.T) {
	for _, d := range All() {
		t.Run(d.Name, func(t *testing.T) {
			if d.Name == "postgres" {
				if err := PostgresAvailable(); err != nil {
					t.Skip(err)
				}
			}
			db, err := d.Open(ycsb.Config{Dir: storeDir(t), Durability: ycsb.Relaxed, CacheBytes: 8 << 20, Threads: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			for _, k := range []string{"a", "b", "c", "d"} {
				if err := db.Insert([]byte(k), []byte("v"+k)); err != nil {
					t.Fatal(err)
				}
			}
			for _, c := range []struct {
				start string
				count int
				want  int
			}{{"b", 2, 2}, {"b", 10, 3}, {"bb", 10, 2}, {"e", 5, 0}} {
				n, err := db.Scan([]byte(c.start), c.count)
				if err != nil || n != c.want {
					t.Errorf("Scan(%q, %d) = %d, %v; want %d", c.start, c.count, n, err, c.want)
				}
			}
			old, err := db.ReadModifyWrite([]byte("a"), func(old []byte) []byte { return append(old, '!') })
			if err != nil || string(old) != "va" {
				t.Fatalf("ReadModifyWrite read %q, %v", old, err)
			}
			if v, err := db.Read([]byte("a")); err != nil || string(v) != "va!" {
				t.Fatalf("after RMW: %q, %v", v, err)
			}
		})
	}
}
