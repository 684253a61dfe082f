package sortspill

import (
	"context"
	"encoding/binary"
	"flag"
	"math/rand/v2"
	"testing"

	"github.com/heapkv/heapkv/internal/vfs"
)

var (
	benchAggRows   = flag.Int("sortspill.bench.aggrows", 1_000_000, "rows of BenchmarkHashAgg (the issue's figure: 10000000)")
	benchAggGroups = flag.Int("sortspill.bench.agggroups", 100_000, "groups of BenchmarkHashAgg (the issue's figure: 1000000)")
)

// aggRow returns row i's group and value: groups drawn at random, values
// their index, both 8 bytes.
func aggRow(rng *rand.Rand, groups int, g, v *[8]byte, i int) {
	binary.BigEndian.PutUint64(g[:], rng.Uint64N(uint64(groups)))
	binary.LittleEndian.PutUint64(v[:], uint64(i))
}

// BenchmarkHashAgg groups -sortspill.bench.aggrows rows into about
// -sortspill.bench.agggroups groups with a count and a sum, in a Go map and
// through HashAgg at several budgets. Rows are made on the fly from one
// seed, the same for every sub-benchmark.
func BenchmarkHashAgg(b *testing.B) {
	rows, groups := *benchAggRows, *benchAggGroups
	b.Run("in-memory map", func(b *testing.B) {
		for range b.N {
			rng := rand.New(rand.NewPCG(1, 2))
			m := make(map[[8]byte][2]int64)
			var g, v [8]byte
			for i := range rows {
				aggRow(rng, groups, &g, &v, i)
				s := m[g]
				s[0]++
				s[1] += int64(binary.LittleEndian.Uint64(v[:]))
				m[g] = s
			}
			n := 0
			for range m {
				n++
			}
			b.ReportMetric(float64(n), "groups")
		}
	})
	for _, budget := range []struct {
		name string
		n    int64
	}{{"work_mem=4MB", 4 << 20}, {"work_mem=64MB", 64 << 20}, {"work_mem=2GB", 2 << 30}} {
		b.Run(budget.name, func(b *testing.B) {
			for range b.N {
				ts := NewTempSpace(vfs.Default, b.TempDir(), TempOptions{Limit: NoTempFileLimit, LogAbove: NoTempFileLimit})
				a, err := NewHashAgg(context.Background(), sumStep, HashOptions{Budget: budget.n, Temp: ts})
				if err != nil {
					b.Fatal(err)
				}
				rng := rand.New(rand.NewPCG(1, 2))
				var g, v [8]byte
				for i := range rows {
					aggRow(rng, groups, &g, &v, i)
					if err := a.Add(g[:], v[:]); err != nil {
						b.Fatal(err)
					}
				}
				if err := a.Finish(); err != nil {
					b.Fatal(err)
				}
				n := 0
				for a.Next() {
					n++
				}
				if err := a.Err(); err != nil {
					b.Fatal(err)
				}
				st := a.Stats()
				a.Close()
				b.ReportMetric(float64(n), "groups")
				b.ReportMetric(float64(st.Batches), "batches")
				b.ReportMetric(float64(st.DiskBytes>>20), "disk-MiB")
			}
		})
	}
}
