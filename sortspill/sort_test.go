package sortspill

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/heapkv/heapkv/internal/testutil"
	"github.com/heapkv/heapkv/internal/vfs"
)

const testTempDir = "/db/tmp"

func newTestTemp(t testing.TB, o TempOptions) (*vfs.MemFS, *TempSpace) {
	t.Helper()
	fs := vfs.NewMemFS()
	return fs, NewTempSpace(fs, testTempDir, o)
}

// tempFiles lists what the temp directory holds.
func tempFiles(t testing.TB, fs vfs.FS) []string {
	t.Helper()
	names, err := fs.List(testTempDir)
	if vfs.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func requireNoTempFiles(t testing.TB, fs vfs.FS) {
	t.Helper()
	if names := tempFiles(t, fs); len(names) > 0 {
		t.Fatalf("temp files left: %v", names)
	}
}

// inputs of the sort tests: n records shaped by kind, of sizes up to size.
func makeInput(rng *rand.Rand, kind string, n, size int) [][]byte {
	recs := make([][]byte, n)
	rec := func(i int) []byte {
		l := 0
		if size > 0 {
			l = rng.IntN(size + 1)
		}
		b := make([]byte, l)
		for j := range b {
			b[j] = byte(rng.IntN(256))
		}
		if l >= 4 {
			binary.BigEndian.PutUint32(b, uint32(i)) // sorted and reverse inputs are ordered by this prefix
		}
		return b
	}
	switch kind {
	case "random":
		for i := range recs {
			recs[i] = rec(rng.IntN(n + 1))
		}
	case "sorted":
		for i := range recs {
			recs[i] = rec(i)
		}
		slices.SortFunc(recs, bytes.Compare)
	case "reverse":
		for i := range recs {
			recs[i] = rec(i)
		}
		slices.SortFunc(recs, func(a, b []byte) int { return bytes.Compare(b, a) })
	case "equal":
		one := rec(0)
		for i := range recs {
			recs[i] = one
		}
	case "duplicates":
		pool := make([][]byte, 7)
		for i := range pool {
			pool[i] = rec(i)
		}
		for i := range recs {
			recs[i] = pool[rng.IntN(len(pool))]
		}
	default:
		panic(kind)
	}
	return recs
}

// sortAll runs a Sorter over in and returns its output and stats. It sorts
// twice, with and without abbreviated keys, and fails if the two differ.
func sortAll(t testing.TB, ts *TempSpace, in [][]byte, budget, limit int64) ([][]byte, SortStats) {
	t.Helper()
	out, st := sortOnce(t, ts, in, SortOptions{Budget: budget, Limit: limit, Temp: ts, Abbrev: PrefixAbbrev})
	plain, _ := sortOnce(t, ts, in, SortOptions{Budget: budget, Limit: limit, Temp: ts})
	if len(plain) != len(out) {
		t.Fatalf("%d records with abbreviated keys, %d without", len(out), len(plain))
	}
	for i := range out {
		if !bytes.Equal(out[i], plain[i]) {
			t.Fatalf("record %d: %x with abbreviated keys, %x without", i, out[i], plain[i])
		}
	}
	return out, st
}

func sortOnce(t testing.TB, ts *TempSpace, in [][]byte, o SortOptions) ([][]byte, SortStats) {
	t.Helper()
	s, err := NewSorter(context.Background(), bytes.Compare, o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, r := range in {
		if err := s.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Finish(); err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for s.Next() {
		out = append(out, bytes.Clone(s.Record()))
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	return out, s.Stats()
}

func checkSorted(t testing.TB, in, got [][]byte, limit int64) {
	t.Helper()
	want := slices.Clone(in)
	slices.SortFunc(want, bytes.Compare)
	if limit > 0 && int64(len(want)) > limit {
		want = want[:limit]
	}
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("record %d: got %x, want %x", i, got[i], want[i])
		}
	}
}

func TestSortMatchesSlicesSort(t *testing.T) {
	seed := testutil.Seed(t)
	sizes := []struct {
		name string
		n    int
		size int
	}{
		{"empty", 0, 0},
		{"zero-byte", 3000, 0},
		{"small", 30000, 100},
		{"mixed", 3000, 4096},
		{"large", 12, 1 << 20},
	}
	budgets := []int64{64 << 10, 256 << 10, 64 << 20}
	for _, sz := range sizes {
		for _, kind := range []string{"random", "sorted", "reverse", "equal", "duplicates"} {
			for _, budget := range budgets {
				name := fmt.Sprintf("%s/%s/%dKiB", sz.name, kind, budget>>10)
				t.Run(name, func(t *testing.T) {
					rng := rand.New(rand.NewPCG(uint64(seed), uint64(len(name))))
					in := makeInput(rng, kind, sz.n, sz.size)
					fs, ts := newTestTemp(t, TempOptions{Limit: -1, LogAbove: -1})
					got, st := sortAll(t, ts, in, budget, 0)
					checkSorted(t, in, got, 0)
					total := 0 // what the load counts: the bytes and an index entry per record
					for _, r := range in {
						total += len(r) + itemSize
					}
					if st.Records != int64(len(in)) {
						t.Errorf("stats count %d records, want %d", st.Records, len(in))
					}
					if int64(total)*2 < budget && st.Method != Quicksort {
						t.Errorf("%d bytes under a budget of %d sorted by %v", total, budget, st.Method)
					}
					if st.Method == Quicksort && ts.Stats().Files != 0 {
						t.Errorf("an in-memory sort created %d temp files", ts.Stats().Files)
					}
					requireNoTempFiles(t, fs)
				})
			}
		}
	}
}

func TestSortMultiPassMerge(t *testing.T) {
	rng := rand.New(rand.NewPCG(uint64(testutil.Seed(t)), 1))
	in := makeInput(rng, "random", 40000, 100) // about 2 MB: some forty runs at 64 KiB, merge order 6
	fs, ts := newTestTemp(t, TempOptions{Limit: -1, LogAbove: -1})
	got, st := sortAll(t, ts, in, 64<<10, 0)
	checkSorted(t, in, got, 0)
	if st.Method != ExternalMerge || st.Runs <= st.MergeOrder || st.Passes < 3 {
		t.Fatalf("stats %+v: want an external merge of more runs than the merge order, in 3 or more passes", st)
	}
	if st.DiskBytes == 0 {
		t.Errorf("an external merge reports no disk use: %+v", st)
	}
	requireNoTempFiles(t, fs)
}

func TestTopN(t *testing.T) {
	seed := testutil.Seed(t)
	cases := []struct {
		name   string
		n      int
		limit  int64
		budget int64
		method SortMethod
	}{
		{"fits", 1000, 10, 1 << 20, TopNHeapsort},
		{"limit above input", 100, 1000, 1 << 20, Quicksort},
		{"bounded once full", 100000, 100, 64 << 10, TopNHeapsort},
		{"limit too big for memory", 30000, 20000, 64 << 10, ExternalMerge},
		{"limit one", 5000, 1, 64 << 10, TopNHeapsort},
	}
	for _, c := range cases {
		for _, kind := range []string{"random", "sorted", "reverse", "duplicates"} {
			t.Run(c.name+"/"+kind, func(t *testing.T) {
				rng := rand.New(rand.NewPCG(uint64(seed), uint64(c.n)))
				in := makeInput(rng, kind, c.n, 60)
				fs, ts := newTestTemp(t, TempOptions{Limit: -1, LogAbove: -1})
				got, st := sortAll(t, ts, in, c.budget, c.limit)
				checkSorted(t, in, got, c.limit)
				if st.Method != c.method {
					t.Errorf("method %v, want %v", st.Method, c.method)
				}
				requireNoTempFiles(t, fs)
			})
		}
	}
}

func TestSortRejectsBadOptions(t *testing.T) {
	for _, o := range []SortOptions{{Budget: MinBudget - 1}, {Budget: MinBudget, Limit: -1}} {
		if _, err := NewSorter(context.Background(), bytes.Compare, o); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
	s, err := NewSorter(context.Background(), bytes.Compare, SortOptions{Budget: MinBudget})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Add(make([]byte, MaxRecordSize+1)); err == nil {
		t.Error("a record over MaxRecordSize was accepted")
	}
	if s.Next() {
		t.Error("Next before Finish returned a record")
	}
}

func TestSortWithoutTempSpaceFailsToSpill(t *testing.T) {
	s, err := NewSorter(context.Background(), bytes.Compare, SortOptions{Budget: MinBudget})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var addErr error
	for i := 0; i < 10000 && addErr == nil; i++ {
		addErr = s.Add(make([]byte, 100))
	}
	if !errors.Is(addErr, errNoTempSpace) {
		t.Fatalf("got %v, want errNoTempSpace", addErr)
	}
}

// spillingSort adds records until the sort has written a few runs.
func spillingSort(t *testing.T, ctx context.Context, ts *TempSpace, cmp func(a, b []byte) int) (*Sorter, error) {
	t.Helper()
	s, err := NewSorter(ctx, cmp, SortOptions{Budget: MinBudget, Temp: ts})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 20000; i++ {
		b := make([]byte, 50)
		for j := range b {
			b[j] = byte(rng.IntN(256))
		}
		if err := s.Add(b); err != nil {
			return s, err
		}
	}
	return s, nil
}

func TestSortRemovesTempFiles(t *testing.T) {
	t.Run("success", func(t *testing.T) {
		fs, ts := newTestTemp(t, TempOptions{Limit: -1, LogAbove: -1})
		s, err := spillingSort(t, context.Background(), ts, bytes.Compare)
		if err != nil {
			t.Fatal(err)
		}
		if len(tempFiles(t, fs)) == 0 {
			t.Fatal("the sort wrote no run")
		}
		if err := s.Finish(); err != nil {
			t.Fatal(err)
		}
		for s.Next() {
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		requireNoTempFiles(t, fs)
	})
	t.Run("cancel while adding", func(t *testing.T) {
		fs, ts := newTestTemp(t, TempOptions{Limit: -1, LogAbove: -1})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		calls := 0
		cmp := func(a, b []byte) int {
			if calls++; calls == 50000 {
				cancel()
			}
			return bytes.Compare(a, b)
		}
		_, err := spillingSort(t, ctx, ts, cmp)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
		requireNoTempFiles(t, fs) // removed by the failure, without Close
	})
	t.Run("cancel while reading", func(t *testing.T) {
		fs, ts := newTestTemp(t, TempOptions{Limit: -1, LogAbove: -1})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		s, err := spillingSort(t, ctx, ts, bytes.Compare)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Finish(); err != nil {
			t.Fatal(err)
		}
		n := 0
		for s.Next() {
			if n++; n == 3000 {
				cancel()
			}
		}
		if !errors.Is(s.Err(), context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", s.Err())
		}
		requireNoTempFiles(t, fs)
	})
	t.Run("comparator panics", func(t *testing.T) {
		fs, ts := newTestTemp(t, TempOptions{Limit: -1, LogAbove: -1})
		s, err := spillingSort(t, context.Background(), ts, bytes.Compare)
		if err != nil {
			t.Fatal(err)
		}
		s.cmp = func(a, b []byte) int { panic("comparator bug") }
		func() {
			defer func() {
				if r := recover(); r != "comparator bug" {
					t.Errorf("recovered %v", r)
				}
			}()
			s.Finish()
		}()
		requireNoTempFiles(t, fs)
		if s.Err() == nil {
			t.Error("the sort goes on after a panic")
		}
	})
	t.Run("temp_file_limit", func(t *testing.T) {
		fs, ts := newTestTemp(t, TempOptions{Limit: 200 << 10, LogAbove: -1})
		_, err := spillingSort(t, context.Background(), ts, bytes.Compare)
		if !errors.Is(err, ErrTempFileLimit) {
			t.Fatalf("got %v, want ErrTempFileLimit", err)
		}
		requireNoTempFiles(t, fs)
	})
	t.Run("I/O error", func(t *testing.T) {
		fs, ts := newTestTemp(t, TempOptions{Limit: -1, LogAbove: -1})
		fs.InjectError(vfs.Injection{Op: vfs.OpWrite, Path: testTempDir + "/", Nth: 5})
		_, err := spillingSort(t, context.Background(), ts, bytes.Compare)
		if !errors.Is(err, vfs.ErrInjected) {
			t.Fatalf("got %v, want the injected error", err)
		}
		requireNoTempFiles(t, fs)
	})
}

func TestSweep(t *testing.T) {
	fs, ts := newTestTemp(t, TempOptions{Limit: -1, LogAbove: -1})
	s, err := spillingSort(t, context.Background(), ts, bytes.Compare)
	if err != nil {
		t.Fatal(err)
	}
	_ = s // a crash: the sort is never closed
	left := len(tempFiles(t, fs))
	if left == 0 {
		t.Fatal("the sort wrote no run")
	}
	f, err := fs.Create(testTempDir + "/notes.txt")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	removed, err := NewTempSpace(fs, testTempDir, TempOptions{}).Sweep()
	if err != nil {
		t.Fatal(err)
	}
	if removed != left {
		t.Errorf("swept %d files, want %d", removed, left)
	}
	if names := tempFiles(t, fs); !slices.Equal(names, []string{"notes.txt"}) {
		t.Errorf("after the sweep the directory holds %v, want only the foreign notes.txt", names)
	}
	if n, err := NewTempSpace(fs, "/db/none", TempOptions{}).Sweep(); n != 0 || err != nil {
		t.Errorf("sweep of a missing directory: %d, %v", n, err)
	}
}

func TestArenaGrowsItsChunks(t *testing.T) {
	a := arena{chunkSize: 256 << 10}
	if g := a.growth(10); g != minBlockSize {
		t.Fatalf("a first small record would take %d bytes, want a %d-byte chunk", g, minBlockSize)
	}
	a.alloc(make([]byte, 10))
	if a.memory() != minBlockSize {
		t.Fatalf("memory %d after one small record", a.memory())
	}
	big := make([]byte, 40<<10) // over the next chunk's doubling, under a quarter of chunkSize
	if g := a.growth(len(big)); g != int64(len(big)) {
		t.Fatalf("a %d-byte record would take %d bytes", len(big), g)
	}
	if got := a.alloc(big); len(got) != len(big) || len(a.chunks) != 2 {
		t.Fatalf("the record took %d chunks", len(a.chunks))
	}
	for range 100 {
		a.alloc(make([]byte, 1000))
	}
	if last := cap(a.chunks[len(a.chunks)-1]); last > a.chunkSize {
		t.Fatalf("a chunk of %d bytes, over chunkSize %d", last, a.chunkSize)
	}
	var sum int64
	for _, c := range a.chunks {
		sum += int64(cap(c))
	}
	if a.memory() != sum {
		t.Fatalf("memory %d, chunks hold %d", a.memory(), sum)
	}
}

// PrefixAbbrev's order never contradicts bytes.Compare: a < b in the
// abbreviation means a < b in bytes; equal abbreviations decide nothing.
func TestPrefixAbbrevAgreesWithBytes(t *testing.T) {
	cases := [][2]string{
		{"", ""}, {"", "\x00"}, {"a", "a\x00"}, {"a", "a\x00\x01"}, {"ab", "b"},
		{"abcdefgh", "abcdefgi"}, {"abcdefgh1", "abcdefgh0"}, {"\xff", "\xff\xff"},
	}
	rng := rand.New(rand.NewPCG(uint64(testutil.Seed(t)), 3))
	for range 20000 {
		a, b := make([]byte, rng.IntN(12)), make([]byte, rng.IntN(12))
		for i := range a {
			a[i] = byte(rng.IntN(3))
		}
		for i := range b {
			b[i] = byte(rng.IntN(3))
		}
		cases = append(cases, [2]string{string(a), string(b)})
	}
	for _, c := range cases {
		a, b := []byte(c[0]), []byte(c[1])
		pa, pb := PrefixAbbrev(a), PrefixAbbrev(b)
		if pa < pb && bytes.Compare(a, b) >= 0 || pa > pb && bytes.Compare(a, b) <= 0 {
			t.Fatalf("%q vs %q: abbreviations %x, %x disagree with bytes.Compare", a, b, pa, pb)
		}
	}
}
