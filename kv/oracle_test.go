package kv

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	pvfs "github.com/cockroachdb/pebble/v2/vfs"

	"github.com/heapkv/heapkv/internal/vfs"
)

var (
	oracleSeeds = flag.Int("oracle.seeds", 0, "seeds of the pebble differential test (0: default)")
	oracleSeed  = flag.Uint64("oracle.seed", 0, "first seed of the pebble differential test (0: time-based)")
	oracleOps   = flag.Int("oracle.ops", 0, "operations per seed (0: default)")
)

// TestOracle is the differential test: seeded random sequences of
// transactions (puts, deletes, gets, forward and reverse scans with random
// bounds and limits, commits, rollbacks) run against heapkv, with reopens,
// checkpoints and simulated crashes between transactions; pebble receives
// only the committed transactions, and every read heapkv answers must
// agree with pebble plus the transaction's own writes.
func TestOracle(t *testing.T) {
	seeds, ops := 200, 120
	if testing.Short() || raceEnabled {
		seeds = 20
	}
	if *oracleSeeds > 0 {
		seeds = *oracleSeeds
	}
	if *oracleOps > 0 {
		ops = *oracleOps
	}
	first := *oracleSeed
	if first == 0 {
		first = uint64(time.Now().UnixNano())
	}
	t.Logf("seeds %d.. (%d of them; rerun with -oracle.seed=N -oracle.seeds=1)", first, seeds)
	for s := range uint64(seeds) {
		seed := first + s
		if err := runOracle(t, seed, ops); err != nil {
			t.Fatalf("seed %d: %v (rerun: go test ./kv -run TestOracle -oracle.seed=%d -oracle.seeds=1 -v)", seed, err, seed)
		}
	}
}

type oracle struct {
	t    *testing.T
	r    *rand.Rand
	fs   *vfs.MemFS
	db   *DB
	peb  *pebble.DB
	keys [][]byte
	log  []string // what happened, for the failure message
}

func runOracle(t *testing.T, seed uint64, ops int) (err error) {
	o := &oracle{t: t, r: rand.New(rand.NewPCG(seed, 0xabc)), fs: vfs.NewMemFS()}
	o.peb, err = pebble.Open("", &pebble.Options{FS: pvfs.NewMem(), Logger: quietLogger{}})
	if err != nil {
		return err
	}
	defer o.peb.Close()
	for i := range 40 {
		k := fmt.Appendf(nil, "k%02d", i)
		if o.r.IntN(4) == 0 {
			k = append(k, bytes.Repeat([]byte{byte('a' + i%26)}, 1+o.r.IntN(300))...)
		}
		o.keys = append(o.keys, k)
	}
	slices.SortFunc(o.keys, bytes.Compare)
	opts := &Options{SharedBuffers: 2 << 20, walSegmentSize: 256 << 10}
	if o.db, err = open(o.fs, "/db", opts); err != nil {
		return err
	}
	defer func() {
		if o.db != nil {
			o.db.Close()
		}
		if err != nil {
			n := len(o.log)
			err = fmt.Errorf("%w\nlast steps:\n  %s", err, joinLast(o.log[max(0, n-15):]))
		}
	}()
	for done := 0; done < ops; {
		switch p := o.r.IntN(20); {
		case p == 0:
			o.log = append(o.log, "reopen")
			if err := o.db.Close(); err != nil {
				return err
			}
			if o.db, err = open(o.fs, "/db", opts); err != nil {
				return err
			}
		case p == 1:
			o.log = append(o.log, "crash")
			crashed := o.fs.Clone()
			o.db.Close()
			crashed.Crash(vfs.CrashOptions{Seed: int64(o.r.Uint64()), KeepUnsynced: o.r.Float64(), TearProbability: o.r.Float64()})
			o.fs = crashed
			if o.db, err = open(o.fs, "/db", opts); err != nil {
				return fmt.Errorf("open after crash: %w", err)
			}
			if err := o.db.Check(); err != nil {
				return fmt.Errorf("check after crash: %w", err)
			}
		case p == 2:
			o.log = append(o.log, "checkpoint")
			if err := o.db.Checkpoint(); err != nil {
				return err
			}
		default:
			n, err := o.transaction()
			if err != nil {
				return err
			}
			done += n
		}
	}
	return o.db.Check()
}

func joinLast(s []string) string {
	var b bytes.Buffer
	for i, x := range s {
		if i > 0 {
			b.WriteString("\n  ")
		}
		b.WriteString(x)
	}
	return b.String()
}

// pending is a transaction's own writes: nil value = deleted.
type pending map[string][]byte

func (o *oracle) transaction() (int, error) {
	iso := RepeatableRead
	if o.r.IntN(3) == 0 {
		iso = ReadCommitted
	}
	tx, err := o.db.Begin(context.Background(), TxOptions{Isolation: iso})
	if err != nil {
		return 0, err
	}
	o.log = append(o.log, fmt.Sprintf("begin %v", iso))
	mine := pending{}
	n := 1 + o.r.IntN(12)
	for range n {
		k := o.keys[o.r.IntN(len(o.keys))]
		switch p := o.r.IntN(10); {
		case p < 3:
			v := o.value()
			if v == nil {
				v = []byte{} // a nil value is stored as an empty one
			}
			o.log = append(o.log, fmt.Sprintf("put %s (%d bytes)", trunc(k), len(v)))
			if err := tx.Put(k, v); err != nil {
				return 0, err
			}
			mine[string(k)] = v
		case p < 5:
			o.log = append(o.log, fmt.Sprintf("delete %s", trunc(k)))
			if err := tx.Delete(k); err != nil {
				return 0, err
			}
			mine[string(k)] = nil
		case p < 8:
			o.log = append(o.log, fmt.Sprintf("get %s", trunc(k)))
			got, err := tx.Get(k)
			want, wantOK, perr := o.expect(mine, k)
			if perr != nil {
				return 0, perr
			}
			if errors.Is(err, ErrNotFound) {
				if wantOK {
					return 0, fmt.Errorf("get %s: not found, pebble has %d bytes", trunc(k), len(want))
				}
			} else if err != nil {
				return 0, err
			} else if !wantOK || !bytes.Equal(got, want) {
				return 0, fmt.Errorf("get %s: %d bytes, pebble has %v (%d bytes)", trunc(k), len(got), wantOK, len(want))
			}
		default:
			if err := o.scan(tx, mine); err != nil {
				return 0, err
			}
		}
	}
	if o.r.IntN(4) == 0 {
		o.log = append(o.log, "rollback")
		return n, tx.Rollback()
	}
	o.log = append(o.log, "commit")
	if err := tx.Commit(); err != nil {
		return 0, err
	}
	b := o.peb.NewBatch()
	for k, v := range mine {
		if v == nil {
			b.Delete([]byte(k), nil)
		} else {
			b.Set([]byte(k), v, nil)
		}
	}
	return n, b.Commit(pebble.NoSync)
}

func trunc(k []byte) string {
	if len(k) > 8 {
		return fmt.Sprintf("%s…(%d)", k[:3], len(k))
	}
	return string(k)
}

func (o *oracle) value() []byte {
	switch o.r.IntN(10) {
	case 0:
		return nil
	case 1:
		v := make([]byte, 3000+o.r.IntN(30000)) // compressed or out of line
		for i := range v {
			v[i] = byte(o.r.IntN(256))
		}
		return v
	default:
		return fmt.Appendf(nil, "v%d", o.r.Uint32())
	}
}

// expect returns what a read of k should see: the transaction's own write,
// else pebble's committed value.
func (o *oracle) expect(mine pending, k []byte) ([]byte, bool, error) {
	if v, ok := mine[string(k)]; ok {
		return v, v != nil, nil
	}
	v, closer, err := o.peb.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	defer closer.Close()
	return bytes.Clone(v), true, nil
}

func (o *oracle) scan(tx *Tx, mine pending) error {
	var start, end []byte
	if o.r.IntN(3) > 0 {
		start = o.keys[o.r.IntN(len(o.keys))]
	}
	if o.r.IntN(3) > 0 {
		end = o.keys[o.r.IntN(len(o.keys))]
	}
	opts := &ScanOptions{Reverse: o.r.IntN(2) == 0}
	if o.r.IntN(2) == 0 {
		opts.Limit = 1 + o.r.IntN(10)
	}
	o.log = append(o.log, fmt.Sprintf("scan [%s, %s) reverse=%v limit=%d", trunc(start), trunc(end), opts.Reverse, opts.Limit))
	// Expected: pebble's committed pairs in range, overlaid with ours.
	want := map[string][]byte{}
	it, err := o.peb.NewIter(&pebble.IterOptions{LowerBound: start, UpperBound: end})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		want[string(it.Key())] = bytes.Clone(it.Value())
	}
	it.Close()
	for k, v := range mine {
		if (start == nil || k >= string(start)) && (end == nil || k < string(end)) {
			if v == nil {
				delete(want, k)
			} else {
				want[k] = v
			}
		}
	}
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if start != nil && end != nil && bytes.Compare(start, end) >= 0 {
		keys = nil
	}
	if opts.Reverse {
		slices.Reverse(keys)
	}
	if opts.Limit > 0 && len(keys) > opts.Limit {
		keys = keys[:opts.Limit]
	}
	got := tx.Scan(start, end, opts)
	i := 0
	for got.Next() {
		if i >= len(keys) {
			return fmt.Errorf("scan yielded extra key %s", trunc(got.Key()))
		}
		if string(got.Key()) != keys[i] || !bytes.Equal(got.Value(), want[keys[i]]) {
			return fmt.Errorf("scan position %d: got %s (%d bytes), want %s (%d bytes)", i, trunc(got.Key()), len(got.Value()), trunc([]byte(keys[i])), len(want[keys[i]]))
		}
		i++
	}
	if err := got.Close(); err != nil {
		return err
	}
	if i != len(keys) {
		return fmt.Errorf("scan yielded %d keys, want %d", i, len(keys))
	}
	return nil
}

// quietLogger keeps pebble's informational lines out of the test output.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}
