package kv

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	pvfs "github.com/cockroachdb/pebble/v2/vfs"

	"github.com/heapkv/heapkv/internal/vfs"
)

var (
	oracleSeeds  = flag.Int("oracle.seeds", 0, "seeds of the pebble differential test (0: default)")
	oracleSeed   = flag.Uint64("oracle.seed", 0, "first seed of the pebble differential test (0: time-based)")
	oracleOps    = flag.Int("oracle.ops", 0, "operations per seed (0: default)")
	oracleConfig = flag.String("oracle.config", "", "TestOracleMatrix: run only the configuration of this name")
	matrixSeeds  = flag.Int("oracle.matrix.seeds", 0, "TestOracleMatrix: seeds per configuration (0: default)")
)

// oracleConf is one configuration of the metamorphic matrix. The same seed
// makes the same random operations under every configuration, and every
// read must agree with pebble under each.
type oracleConf struct {
	name string
	// set are Options.Set calls over the base options.
	set map[string]string
	// untorn: crashes never tear a write. full_page_writes off is only
	// safe on storage that writes a page atomically, so that is the
	// storage it is tested on.
	untorn bool
	// ckptEvery forces a checkpoint every that many operations, in the
	// middle of transactions too.
	ckptEvery int
	// syncOff: synchronous_commit off. A crash may lose the last
	// acknowledged commits, but what survives must be the state after a
	// prefix of the commit order, no older than the last checkpoint or
	// clean reopen.
	syncOff bool
}

// oracleConfs is the matrix. The base options have 2 MB of shared buffers,
// whose derived wal_buffers is the 64 kB minimum already; the wal_buffers
// configuration sets it beside a pool that would derive 512 kB.
// full_page_writes off runs with the smallest pool, so that evicted pages
// are often unsynced at a crash: with torn writes allowed it fails (a torn
// page has no image in the WAL to restore it), as it must.
var oracleConfs = []oracleConf{
	{name: "default"},
	{name: "shared_buffers=128kB", set: map[string]string{"shared_buffers": "128kB"}},
	{name: "wal_buffers=64kB", set: map[string]string{"shared_buffers": "16MB", "wal_buffers": "64kB"}},
	{name: "wal_compression=s2", set: map[string]string{"wal_compression": "s2"}, ckptEvery: 7},
	{name: "wal_compression=zstd", set: map[string]string{"wal_compression": "zstd"}, ckptEvery: 7},
	{name: "full_page_writes=off", set: map[string]string{"full_page_writes": "off", "shared_buffers": "128kB"}, untorn: true},
	{name: "checkpoint every 3 ops", ckptEvery: 3},
	{name: "synchronous_commit=off", set: map[string]string{"synchronous_commit": "off", "wal_writer_delay": "1ms"}, syncOff: true},
	{name: "small and compressed", set: map[string]string{"shared_buffers": "128kB", "wal_compression": "zstd"}, ckptEvery: 5},
}

func (c *oracleConf) options() *Options {
	opts := &Options{SharedBuffers: 2 << 20, walSegmentSize: 256 << 10}
	for _, name := range slices.Sorted(maps.Keys(c.set)) {
		if err := opts.Set(name, c.set[name]); err != nil {
			panic(err)
		}
	}
	return opts
}

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
		if err := runOracle(t, &oracleConfs[0], seed, ops); err != nil {
			t.Fatalf("seed %d: %v (rerun: go test ./kv -run 'TestOracle$' -oracle.seed=%d -oracle.seeds=1 -v)", seed, err, seed)
		}
	}
}

// TestOracleMatrix is the metamorphic run: the differential test under
// every configuration of oracleConfs, a few seeds each (more with
// -oracle.matrix.seeds), the same seeds for every configuration.
func TestOracleMatrix(t *testing.T) {
	seeds, ops := 4, 120
	if testing.Short() || raceEnabled {
		seeds = 1
	}
	if *matrixSeeds > 0 {
		seeds = *matrixSeeds
	}
	if *oracleOps > 0 {
		ops = *oracleOps
	}
	first := *oracleSeed
	if first == 0 {
		first = uint64(time.Now().UnixNano())
	}
	t.Logf("seeds %d.. (%d per configuration, %d configurations)", first, seeds, len(oracleConfs))
	ran := 0
	for i := range oracleConfs {
		c := &oracleConfs[i]
		if *oracleConfig != "" && c.name != *oracleConfig {
			continue
		}
		ran++
		t.Run(c.name, func(t *testing.T) {
			for s := range uint64(seeds) {
				seed := first + s
				if err := runOracle(t, c, seed, ops); err != nil {
					t.Fatalf("seed %d: %v (rerun: go test ./kv -run TestOracleMatrix -oracle.config='%s' -oracle.seed=%d -oracle.matrix.seeds=1 -v)", seed, err, c.name, seed)
				}
			}
		})
	}
	if ran == 0 {
		t.Fatalf("no configuration named %q", *oracleConfig)
	}
}

type oracle struct {
	t    *testing.T
	cfg  *oracleConf
	r    *rand.Rand
	fs   *vfs.MemFS
	db   *DB
	peb  *pebble.DB
	keys [][]byte
	log  []string // what happened, for the failure message
	ops  int      // operations inside transactions so far
	// durable holds, with synchronous_commit off, the committed states
	// since the last point where every commit was durable (checkpoint,
	// clean reopen, recovery): durable[0] at that point, then one per
	// commit. A crash must leave one of them.
	durable []map[string][]byte
}

func runOracle(t *testing.T, cfg *oracleConf, seed uint64, ops int) (err error) {
	o := &oracle{t: t, cfg: cfg, r: rand.New(rand.NewPCG(seed, 0xabc)), fs: vfs.NewMemFS()}
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
	opts := cfg.options()
	if o.db, err = open(o.fs, "/db", opts); err != nil {
		return err
	}
	o.markDurable()
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
			if err := o.verifyAll("after reopen"); err != nil {
				return err
			}
			o.markDurable()
		case p == 1:
			if err := o.crash("crash"); err != nil {
				return err
			}
		case p == 2:
			if err := o.checkpoint(); err != nil {
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

// crash simulates a power loss: the clone keeps every write the moment
// before, Close stops the engine (its later writes go to the old file
// system), and the clone loses what a power loss may lose.
func (o *oracle) crash(what string) (err error) {
	o.log = append(o.log, what)
	crashed := o.fs.Clone()
	o.db.Close()
	opts := vfs.CrashOptions{Seed: int64(o.r.Uint64()), KeepUnsynced: o.r.Float64(), TearProbability: o.r.Float64()}
	if o.cfg.untorn {
		opts.TearProbability = 0
	}
	crashed.Crash(opts)
	o.fs = crashed
	if o.db, err = open(o.fs, "/db", o.cfg.options()); err != nil {
		return fmt.Errorf("open after %s: %w", what, err)
	}
	if err := o.db.Check(); err != nil {
		return fmt.Errorf("check after %s: %w", what, err)
	}
	if o.cfg.syncOff {
		if err := o.durablePrefix(what); err != nil {
			return err
		}
	} else if err := o.verifyAll("after " + what); err != nil {
		return err
	}
	o.markDurable()
	return nil
}

func (o *oracle) checkpoint() error {
	o.log = append(o.log, "checkpoint")
	if err := o.db.Checkpoint(); err != nil {
		return err
	}
	o.markDurable()
	return nil
}

// committed returns pebble's contents: every committed pair.
func (o *oracle) committed() (map[string][]byte, error) {
	m := map[string][]byte{}
	it, err := o.peb.NewIter(nil)
	if err != nil {
		return nil, err
	}
	for it.First(); it.Valid(); it.Next() {
		m[string(it.Key())] = bytes.Clone(it.Value())
	}
	return m, it.Close()
}

// markDurable notes that every commit so far is durable.
func (o *oracle) markDurable() {
	if !o.cfg.syncOff {
		return
	}
	m, err := o.committed()
	if err != nil {
		panic(err)
	}
	o.durable = []map[string][]byte{m}
}

// heapkvAll reads all of heapkv's default keyspace in one transaction.
func (o *oracle) heapkvAll() (map[string][]byte, error) {
	m := map[string][]byte{}
	err := o.db.View(context.Background(), func(tx *Tx) error {
		it := tx.Scan(nil, nil, nil)
		for it.Next() {
			m[string(it.Key())] = bytes.Clone(it.Value())
		}
		return it.Close()
	})
	return m, err
}

func diffPairs(got, want map[string][]byte) string {
	var d []string
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if g, ok := got[k]; !ok {
			d = append(d, fmt.Sprintf("%s missing", trunc([]byte(k))))
		} else if !bytes.Equal(g, want[k]) {
			d = append(d, fmt.Sprintf("%s has %d bytes, want %d", trunc([]byte(k)), len(g), len(want[k])))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			d = append(d, fmt.Sprintf("%s should not exist", trunc([]byte(k))))
		}
	}
	return strings.Join(d[:min(len(d), 6)], "; ")
}

// verifyAll compares all of heapkv with pebble.
func (o *oracle) verifyAll(when string) error {
	got, err := o.heapkvAll()
	if err != nil {
		return fmt.Errorf("read all %s: %w", when, err)
	}
	want, err := o.committed()
	if err != nil {
		return err
	}
	if d := diffPairs(got, want); d != "" {
		return fmt.Errorf("%s, heapkv differs from pebble: %s", when, d)
	}
	return nil
}

// durablePrefix checks, with synchronous_commit off, that a crash left
// the state after some prefix of the commits since the last durable
// point, and rewinds pebble to it.
func (o *oracle) durablePrefix(what string) error {
	got, err := o.heapkvAll()
	if err != nil {
		return fmt.Errorf("read all after %s: %w", what, err)
	}
	for i := len(o.durable) - 1; i >= 0; i-- {
		if diffPairs(got, o.durable[i]) != "" {
			continue
		}
		o.log = append(o.log, fmt.Sprintf("  kept %d of %d commits since the last durable point", i, len(o.durable)-1))
		b := o.peb.NewBatch()
		for _, k := range o.keys {
			if v, ok := got[string(k)]; ok {
				b.Set(k, v, nil)
			} else {
				b.Delete(k, nil)
			}
		}
		return b.Commit(pebble.NoSync)
	}
	return fmt.Errorf("after %s heapkv holds none of the %d states since the last durable point (not a prefix of the commit order); against the newest: %s",
		what, len(o.durable), diffPairs(got, o.durable[len(o.durable)-1]))
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
	for i := range n {
		o.ops++
		if o.cfg.ckptEvery > 0 && o.ops%o.cfg.ckptEvery == 0 {
			if err := o.checkpoint(); err != nil {
				return 0, err
			}
		}
		if o.r.IntN(100) == 0 {
			// The transaction is open, with some of its writes made: none
			// of them may survive.
			return i, o.crash("crash in the middle of a transaction")
		}
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
	if err := b.Commit(pebble.NoSync); err != nil {
		return 0, err
	}
	if o.cfg.syncOff {
		m, err := o.committed()
		if err != nil {
			return 0, err
		}
		o.durable = append(o.durable, m)
	}
	return n, nil
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
