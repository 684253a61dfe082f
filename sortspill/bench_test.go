package sortspill

import (
	"bytes"
	"context"
	"flag"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/heapkv/heapkv/internal/vfs"
)

// BenchmarkSort measures issue 13's figure: records of 100 random bytes
// sorted in memory (the reference) and by a Sorter under several budgets,
// spilling to the OS file system in b.TempDir(). The figure uses
// 10M records (bench/sortcmp.sh runs it against PostgreSQL); the default
// keeps `go test -bench .` quick.
var benchRecords = flag.Int("sortspill.bench.records", 200000,
	"records BenchmarkSort sorts, 100 random bytes each (issue 13's figure: 10000000)")

const benchRecordSize = 100

// benchData holds every record of the benchmark back to back, generated
// once from a fixed seed so each sub-benchmark and each run sorts the same
// bytes.
var benchData struct {
	once sync.Once
	buf  []byte
}

func benchInput() []byte {
	benchData.once.Do(func() {
		n := max(*benchRecords, 1)
		benchData.buf = make([]byte, n*benchRecordSize)
		rng := rand.NewChaCha8([32]byte{'h', 'e', 'a', 'p', 'k', 'v', 1, 3})
		rng.Read(benchData.buf)
	})
	return benchData.buf
}

func BenchmarkSort(b *testing.B) {
	buf := benchInput()
	n := len(buf) / benchRecordSize
	data := int64(len(buf))
	b.Logf("%d records of %d bytes, %.1f MB", n, benchRecordSize, float64(data)/1e6)

	b.Run("in-memory", func(b *testing.B) {
		b.SetBytes(data)
		for b.Loop() {
			recs := make([][]byte, n)
			for i := range recs {
				recs[i] = buf[i*benchRecordSize : (i+1)*benchRecordSize : (i+1)*benchRecordSize]
			}
			slices.SortFunc(recs, bytes.Compare)
			var c consumer
			for _, r := range recs {
				c.take(b, r)
			}
			c.check(b, n)
		}
	})

	budgets := []struct {
		name   string
		budget int64
	}{
		{"work_mem=4MB", 4 << 20},
		{"work_mem=1%", max(data/100, MinBudget)},
		{"work_mem=64MB", 64 << 20},
		{"work_mem=2GB", 2 << 30},
	}
	for _, bc := range budgets {
		b.Run(bc.name, func(b *testing.B) {
			temp := NewTempSpace(vfs.Default, b.TempDir(), TempOptions{Limit: NoTempFileLimit, LogAbove: NoTempFileLimit})
			b.SetBytes(data)
			var (
				st      SortStats
				written uint64
			)
			for b.Loop() {
				before := temp.Stats().Bytes
				st = benchSorter(b, buf, bc.budget, temp)
				written = temp.Stats().Bytes - before
			}
			b.ReportMetric(float64(st.Runs), "runs")
			b.ReportMetric(float64(st.Passes), "passes")
			b.ReportMetric(float64(st.MergeOrder), "merge-order")
			b.ReportMetric(float64(st.DiskBytes)/1e6, "disk-MB")
			b.ReportMetric(float64(written)/1e6, "written-MB")
			b.ReportMetric(float64(st.PeakMemory)/1e6, "peak-MB")
		})
	}
}

// benchSorter sorts the records of buf under budget and reads them all
// back, as one ORDER BY does, and returns the sort's figures. It uses
// abbreviated keys, as exec's sorts do.
func benchSorter(b *testing.B, buf []byte, budget int64, temp *TempSpace) SortStats {
	s, err := NewSorter(context.Background(), bytes.Compare, SortOptions{Budget: budget, Temp: temp, Abbrev: PrefixAbbrev})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for i := 0; i < len(buf); i += benchRecordSize {
		if err := s.Add(buf[i : i+benchRecordSize]); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Finish(); err != nil {
		b.Fatal(err)
	}
	var c consumer
	for s.Next() {
		c.take(b, s.Record())
	}
	if err := s.Err(); err != nil {
		b.Fatal(err)
	}
	c.check(b, len(buf)/benchRecordSize)
	st := s.Stats()
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	return st
}

// consumer reads the sorted output as a query's parent node would, with a
// check cheap enough not to weigh on the figure: the records come in order
// of their first byte, and all of them come.
type consumer struct {
	n    int
	prev byte
}

func (c *consumer) take(b *testing.B, r []byte) {
	if r[0] < c.prev {
		b.Fatalf("record %d out of order", c.n)
	}
	c.prev = r[0]
	c.n++
}

func (c *consumer) check(b *testing.B, want int) {
	if c.n != want {
		b.Fatalf("%d records out of %d", c.n, want)
	}
}
