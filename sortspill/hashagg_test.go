package sortspill

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"math/rand/v2"
	"testing"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/testutil"
	"github.com/heapkv/heapkv/internal/vfs"
)

// newHashTemp is newTestTemp with only a limit to choose.
func newHashTemp(t testing.TB, limit int64) (*vfs.MemFS, *TempSpace) {
	t.Helper()
	return newTestTemp(t, TempOptions{Limit: limit, LogAbove: NoTempFileLimit})
}

// Steps of the tests. count and sum keep 8-byte little-endian int64 states;
// concat keeps every value in order, a state that grows.
func countStep(state, _ []byte) []byte {
	if state == nil {
		state = make([]byte, 8)
	}
	binary.LittleEndian.PutUint64(state, binary.LittleEndian.Uint64(state)+1)
	return state
}

func sumStep(state, value []byte) []byte {
	if state == nil {
		state = make([]byte, 8)
	}
	binary.LittleEndian.PutUint64(state, binary.LittleEndian.Uint64(state)+binary.LittleEndian.Uint64(value))
	return state
}

func concatStep(state, value []byte) []byte { return append(state, value...) }

// hashInput is an input of the aggregate, generated again for the model.
type hashInput func() iter.Seq2[[]byte, []byte]

func groupKey(i int) []byte { return binary.BigEndian.AppendUint64(nil, uint64(i)) }

func int64Value(rng *rand.Rand) []byte {
	return binary.LittleEndian.AppendUint64(nil, uint64(rng.Int64N(1<<40)-1<<39))
}

// distinct gives each of n groups two values, in two shuffled passes.
func distinct(seed int64, n int) hashInput {
	return func() iter.Seq2[[]byte, []byte] {
		return func(yield func([]byte, []byte) bool) {
			rng := rand.New(rand.NewPCG(uint64(seed), uint64(n)))
			for range 2 {
				for _, i := range rng.Perm(n) {
					if !yield(groupKey(i), int64Value(rng)) {
						return
					}
				}
			}
		}
	}
}

// drawn takes n pairs whose groups come from group(rng).
func drawn(seed int64, n int, group func(rng *rand.Rand) []byte, value func(rng *rand.Rand) []byte) hashInput {
	return func() iter.Seq2[[]byte, []byte] {
		return func(yield func([]byte, []byte) bool) {
			rng := rand.New(rand.NewPCG(uint64(seed), uint64(n)+1))
			for range n {
				if !yield(group(rng), value(rng)) {
					return
				}
			}
		}
	}
}

// hashModel folds the input with a Go map.
func hashModel(in hashInput, step Step) map[string][]byte {
	m := make(map[string][]byte)
	for g, v := range in() {
		m[string(g)] = step(m[string(g)], v)
	}
	return m
}

// longestRecord returns the length of the input's longest spill record.
func longestRecord(in hashInput) int {
	n := 0
	for g, v := range in() {
		n = max(n, uvarintLen(len(g))+len(g)+len(v))
	}
	return n
}

// aggregate runs a HashAgg over in and returns every group's state.
func aggregate(t testing.TB, ts *TempSpace, budget int64, step Step, in hashInput) (map[string][]byte, HashStats) {
	t.Helper()
	return aggregateWith(t, ts, budget, step, in, nil)
}

// aggregateWith is aggregate with a change made to the HashAgg before its
// first record.
func aggregateWith(t testing.TB, ts *TempSpace, budget int64, step Step, in hashInput, tweak func(*HashAgg)) (map[string][]byte, HashStats) {
	t.Helper()
	a, err := NewHashAgg(context.Background(), step, HashOptions{Budget: budget, Temp: ts})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if tweak != nil {
		tweak(a)
	}
	for g, v := range in() {
		if err := a.Add(g, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Finish(); err != nil {
		t.Fatal(err)
	}
	got := make(map[string][]byte)
	for a.Next() {
		if _, dup := got[string(a.Group())]; dup {
			t.Fatalf("group %x emitted twice", a.Group())
		}
		got[string(a.Group())] = bytes.Clone(a.State())
	}
	if err := a.Err(); err != nil {
		t.Fatal(err)
	}
	return got, a.Stats()
}

func checkGroups(t testing.TB, got, want map[string][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("got %d groups, want %d", len(got), len(want))
	}
	bad := 0
	for g, w := range want {
		s, ok := got[g]
		switch {
		case !ok:
			t.Errorf("group %x missing", g)
		case !bytes.Equal(s, w):
			t.Errorf("group %x: state %x, want %x", g, s, w)
		default:
			continue
		}
		if bad++; bad == 10 {
			t.Fatal("more groups wrong")
		}
	}
}

// Spill expectations of a case.
const (
	mayspill = iota
	nospill
	spills
)

func TestHashAggMatchesMap(t *testing.T) {
	seed := testutil.Seed(t)
	many := 1_000_000
	if testing.Short() {
		many = 100_000
	}
	small := func(rng *rand.Rand) []byte { return int64Value(rng) }
	cases := []struct {
		name   string
		in     hashInput
		budget int64
		steps  []string
		spill  int
		fixed  bool // every state has the same size: the memory bound holds
	}{
		{"many distinct", distinct(seed, many), 64 << 10, []string{"count", "sum"}, spills, true},
		{"many distinct at 1 MiB", distinct(seed, many/4), 1 << 20, []string{"sum"}, spills, true},
		{"few groups", drawn(seed, 20000, func(rng *rand.Rand) []byte { return groupKey(rng.IntN(100)) }, small),
			64 << 10, []string{"count", "sum"}, nospill, true},
		{"one group", drawn(seed, 50000, func(*rand.Rand) []byte { return []byte("g") }, small),
			64 << 10, []string{"count", "sum"}, nospill, true},
		{"skewed", drawn(seed, 100000, func(rng *rand.Rand) []byte {
			if rng.IntN(2) == 0 {
				return []byte("hot")
			}
			return groupKey(rng.IntN(30000))
		}, small), 64 << 10, []string{"count", "sum"}, spills, true},
		{"empty input", distinct(seed, 0), 64 << 10, []string{"count"}, nospill, true},
		{"empty group key", drawn(seed, 30000, func(rng *rand.Rand) []byte {
			switch rng.IntN(4) {
			case 0:
				return nil
			case 1:
				return []byte{}
			}
			return groupKey(rng.IntN(5000))
		}, small), 64 << 10, []string{"count", "sum"}, spills, true},
		{"keys of 0 to 4 KiB", drawn(seed, 6000, func(rng *rand.Rand) []byte {
			i := rng.IntN(2000)
			k := bytes.Repeat([]byte{byte(i)}, i*4096/2000)
			return append(k, groupKey(i)...)
		}, small), 64 << 10, []string{"count", "sum"}, spills, true},
		{"growing states", drawn(seed, 60000, func(rng *rand.Rand) []byte { return groupKey(rng.IntN(15000)) },
			func(rng *rand.Rand) []byte { return []byte(fmt.Sprint(rng.IntN(1000), ",")) }),
			64 << 10, []string{"concat"}, spills, false},
		{"one growing state", drawn(seed, 20000, func(*rand.Rand) []byte { return nil },
			func(rng *rand.Rand) []byte { return []byte(fmt.Sprint(rng.IntN(1000), ",")) }),
			64 << 10, []string{"concat"}, nospill, false},
	}
	steps := map[string]Step{"count": countStep, "sum": sumStep, "concat": concatStep}
	for _, c := range cases {
		for _, name := range c.steps {
			t.Run(c.name+"/"+name, func(t *testing.T) {
				step := steps[name]
				fs, ts := newHashTemp(t, -1)
				got, st := aggregate(t, ts, c.budget, step, c.in)
				checkGroups(t, got, hashModel(c.in, step))
				t.Logf("stats %+v, %d temp files", st, ts.Stats().Files)
				if st.Groups != int64(len(got)) {
					t.Errorf("stats count %d groups, %d were emitted", st.Groups, len(got))
				}
				switch c.spill {
				case nospill:
					if st.Batches != 1 || st.Partitions != 0 || st.Depth != 0 || st.DiskBytes != 0 || ts.Stats().Files != 0 {
						t.Errorf("an aggregate that fits spilled: %+v, %d temp files", st, ts.Stats().Files)
					}
				case spills:
					if st.Batches <= 1 || st.Depth < 1 || st.Partitions < minPartitions || st.DiskBytes == 0 {
						t.Errorf("an aggregate over budget did not spill: %+v", st)
					}
				}
				if c.fixed {
					// The bound of the HashAgg doc, with S = 0.
					bound := c.budget
					bs, _ := hashSpillLayout(c.budget)
					if r := longestRecord(c.in); r > bs/16 {
						bound += c.budget/4 + 3*int64(r)
					}
					if st.PeakMemory > bound {
						t.Errorf("peak memory %d passes the bound %d", st.PeakMemory, bound)
					}
				}
				requireNoTempFiles(t, fs)
			})
		}
	}
}

func TestHashSpillLayout(t *testing.T) {
	cases := []struct {
		budget    int64
		blockSize int
		parts     int
	}{
		{64 << 10, 1 << 10, 4},
		{128 << 10, 2 << 10, 4},
		{256 << 10, 4 << 10, 4},
		{4 << 20, 4 << 10, 64},
		{16 << 20, 4 << 10, 256},
		{64 << 20, 4 << 10, 256},
		{1 << 40, 4 << 10, 256},
	}
	for _, c := range cases {
		bs, parts := hashSpillLayout(c.budget)
		if bs != c.blockSize || parts != c.parts {
			t.Errorf("budget %d: %d partitions of %d-byte blocks, want %d of %d", c.budget, parts, bs, c.parts, c.blockSize)
		}
		if r := hashWritersReserve(parts, bs); r > c.budget/4 {
			t.Errorf("budget %d: the writers' reserve of %d passes a quarter of it", c.budget, r)
		}
	}
}

func TestHashAggDepthLimit(t *testing.T) {
	in := distinct(testutil.Seed(t), 20000)
	fs, ts := newHashTemp(t, -1)
	got, st := aggregateWith(t, ts, MinBudget, sumStep, in, func(a *HashAgg) {
		a.maxDepth = 1 // partitions of the input are aggregated whole, over budget
	})
	checkGroups(t, got, hashModel(in, sumStep))
	if st.Depth != 1 || st.Batches != 1+st.Partitions || st.PeakMemory <= MinBudget {
		t.Errorf("stats %+v: want one level of %d partitions, aggregated over budget", st, st.Partitions)
	}
	requireNoTempFiles(t, fs)
}

func TestHashAggRejectsBadInput(t *testing.T) {
	if _, err := NewHashAgg(context.Background(), sumStep, HashOptions{Budget: MinBudget - 1}); err == nil {
		t.Error("a budget below MinBudget was accepted")
	}
	if _, err := NewHashAgg(context.Background(), nil, HashOptions{Budget: MinBudget}); err == nil {
		t.Error("a nil step was accepted")
	}
	a, err := NewHashAgg(context.Background(), countStep, HashOptions{Budget: MinBudget})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.Add(make([]byte, MaxRecordSize-1), []byte("v")); err == nil {
		t.Error("a record over MaxRecordSize was accepted")
	}
	if a.Next() {
		t.Error("Next before Finish returned a group")
	}
	if err := a.Add([]byte("g"), nil); err != nil {
		t.Fatalf("a refused record stopped the aggregate: %v", err)
	}
	if err := a.Finish(); err != nil {
		t.Fatal(err)
	}
	if err := a.Add([]byte("g"), nil); err == nil {
		t.Error("Add after Finish was accepted")
	}
	if !a.Next() || string(a.Group()) != "g" || a.Next() {
		t.Error("want the one group g")
	}
	a.Close()
	if err := a.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if a.Next() {
		t.Error("Next after Close returned a group")
	}
}

func TestHashAggWithoutTempSpaceFailsToSpill(t *testing.T) {
	a, err := NewHashAgg(context.Background(), countStep, HashOptions{Budget: MinBudget})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	var addErr error
	for i := 0; i < 100000 && addErr == nil; i++ {
		addErr = a.Add(groupKey(i), nil)
	}
	if !errors.Is(addErr, errNoTempSpace) {
		t.Fatalf("got %v, want errNoTempSpace", addErr)
	}
}

// spillingHashAgg adds pairs of many groups, so that the aggregate spills,
// and returns the first error.
func spillingHashAgg(t *testing.T, ctx context.Context, ts *TempSpace, step Step) (*HashAgg, error) {
	t.Helper()
	a, err := NewHashAgg(ctx, step, HashOptions{Budget: MinBudget, Temp: ts})
	if err != nil {
		t.Fatal(err)
	}
	for g, v := range distinct(1, 30000)() {
		if err := a.Add(g, v); err != nil {
			return a, err
		}
	}
	return a, nil
}

// finishedSpill returns an aggregate that has spilled and finished its
// input.
func finishedSpill(t *testing.T, ts *TempSpace) *HashAgg {
	t.Helper()
	a, err := spillingHashAgg(t, context.Background(), ts, sumStep)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Finish(); err != nil {
		t.Fatal(err)
	}
	return a
}

// drain reads every group and returns the aggregate's error.
func drain(a *HashAgg) error {
	for a.Next() {
	}
	return a.Err()
}

func TestHashAggRemovesTempFiles(t *testing.T) {
	t.Run("success", func(t *testing.T) {
		fs, ts := newHashTemp(t, -1)
		a := finishedSpill(t, ts)
		if len(tempFiles(t, fs)) == 0 {
			t.Fatal("the aggregate wrote no partition")
		}
		most := 0
		for a.Next() {
			most = max(most, len(tempFiles(t, fs)))
		}
		if err := a.Err(); err != nil {
			t.Fatal(err)
		}
		// Depth first: the files of one spill per level at most.
		if st := a.Stats(); most > st.Depth*a.maxParts {
			t.Errorf("%d partition files at once, more than %d levels of %d", most, st.Depth, a.maxParts)
		}
		requireNoTempFiles(t, fs) // each partition is removed once read
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("closed early", func(t *testing.T) {
		fs, ts := newHashTemp(t, -1)
		a := finishedSpill(t, ts)
		for range 3000 {
			a.Next()
		}
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		requireNoTempFiles(t, fs)
	})
	t.Run("cancel while adding", func(t *testing.T) {
		fs, ts := newHashTemp(t, -1)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		a, err := NewHashAgg(ctx, sumStep, HashOptions{Budget: MinBudget, Temp: ts})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for g, v := range distinct(1, 30000)() {
			if n++; n == 20000 {
				if len(tempFiles(t, fs)) == 0 {
					t.Error("no partition file to remove yet")
				}
				cancel()
			}
			if err = a.Add(g, v); err != nil {
				break
			}
		}
		if n-20000 > 1024 {
			t.Errorf("the aggregate took %d records after the cancel", n-20000)
		}
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
		requireNoTempFiles(t, fs) // removed by the failure, without Close
	})
	t.Run("cancel while reading", func(t *testing.T) {
		fs, ts := newHashTemp(t, -1)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		a, err := spillingHashAgg(t, ctx, ts, sumStep)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Finish(); err != nil {
			t.Fatal(err)
		}
		for n := 0; a.Next(); n++ {
			if n == 3000 {
				if len(tempFiles(t, fs)) == 0 {
					t.Error("no partition file to remove yet")
				}
				cancel()
			}
		}
		if !errors.Is(a.Err(), context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", a.Err())
		}
		requireNoTempFiles(t, fs)
	})
	for _, when := range []string{"adding", "reading"} {
		t.Run("step panics while "+when, func(t *testing.T) {
			fs, ts := newHashTemp(t, -1)
			a, err := spillingHashAgg(t, context.Background(), ts, sumStep)
			if err != nil {
				t.Fatal(err)
			}
			held := bytes.Clone(a.t.entries[0].key)
			a.step = func(state, value []byte) []byte { panic("step bug") }
			func() {
				defer func() {
					if r := recover(); r != "step bug" {
						t.Errorf("recovered %v", r)
					}
				}()
				if when == "adding" {
					a.Add(held, groupKey(0))
				} else {
					a.Finish()
					drain(a)
				}
			}()
			requireNoTempFiles(t, fs)
			if a.Err() == nil {
				t.Error("the aggregate goes on after a panic")
			}
		})
	}
	t.Run("temp_file_limit", func(t *testing.T) {
		fs, ts := newHashTemp(t, 64<<10)
		a, err := spillingHashAgg(t, context.Background(), ts, sumStep)
		if err == nil {
			err = a.Finish()
		}
		if err == nil {
			err = drain(a)
		}
		if !errors.Is(err, ErrTempFileLimit) {
			t.Fatalf("got %v, want ErrTempFileLimit", err)
		}
		requireNoTempFiles(t, fs)
	})
	for _, op := range []vfs.Op{vfs.OpCreate, vfs.OpWrite, vfs.OpRead} {
		t.Run("I/O error in "+op.String(), func(t *testing.T) {
			fs, ts := newHashTemp(t, -1)
			fs.InjectError(vfs.Injection{Op: op, Path: testTempDir + "/", Nth: 3})
			a, err := spillingHashAgg(t, context.Background(), ts, sumStep)
			if err == nil {
				err = a.Finish()
			}
			if err == nil {
				err = drain(a)
			}
			if !errors.Is(err, vfs.ErrInjected) {
				t.Fatalf("got %v, want the injected error", err)
			}
			requireNoTempFiles(t, fs)
		})
	}
	t.Run("corrupt partition", func(t *testing.T) {
		fs, ts := newHashTemp(t, -1)
		a := finishedSpill(t, ts)
		for _, name := range tempFiles(t, fs) {
			f, err := fs.Open(testTempDir + "/" + name)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt([]byte{0xff}, 20); err != nil {
				t.Fatal(err)
			}
			f.Close()
		}
		if err := drain(a); !errors.Is(err, base.ErrCorrupt) {
			t.Fatalf("got %v, want a corruption error", err)
		}
		requireNoTempFiles(t, fs)
	})
}
