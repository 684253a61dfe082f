package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/heapkv/heapkv/kv"
)

// crashload is the write load of the SIGKILL test (crash_test.go). It runs
// transactions until it is killed; its output tells the test what was
// acknowledged. The test's checker replays the same plan (crashPlanner) to
// know exactly what the directory must hold after a kill.
//
// # Transactions
//
// Worker w of run SEED runs transactions n = 0, 1, 2, ... with the id
// SEED-w-n. Each one's contents are drawn from a generator seeded by (SEED,
// w, n), so the checker can compute them again. A transaction may
//
//   - put 0..keys fresh keys f/<id>/<i> (values of 0 bytes to 20kB, so some
//     are TOASTed),
//   - delete all the fresh keys of transaction n-lag,
//   - put or delete the worker's hot keys h/<SEED>-<w>/<j>, j < hot,
//   - put or delete keys <SEED>-<w>/<j> in each shared keyspace (made by
//     the caller before the first run),
//   - with --ddl: create keyspace x<id> with a few keys, write into a live
//     keyspace of its worker, and drop its worker's oldest live keyspace
//     (at most two live at once); transaction 0 also drops every keyspace
//     x<S>-<w>-* that a run S < SEED-1 of the same worker left behind (the
//     last run's stay one run longer, so that a check sees them after the
//     next run commits the prepared transactions that wrote them),
//
// and it puts its marker m/<id>, so every committed transaction leaves a
// trace for ever. One in 16 (never transaction 0) runs all its writes and
// then rolls back; with --2pc one in 8 commits through Prepare (gid
// crash-<id>) and CommitPrepared (--prepare-pause apart), and
// --prepared-ddl lets those also create and drop keyspaces.
//
// A worker starts transaction n+1 only after printing "ack <id>" for n
// (after the commit, or the rollback, returned), and commits are durable,
// so after a kill at most one transaction per worker is in doubt: the one
// after its last ack. A transaction prepared but not committed when the
// process died stays prepared until the next run, which commits every
// crash-* prepared transaction right after Open ("resolved <gid>"), before
// its workers start.
//
// # Output
//
// Only the acks, unless --phases (or --dump) adds the other lines:
//
//	start <unixnano>               before kv.Open
//	open <unixnano> <ns>           Open returned, after <ns> nanoseconds
//	resolved <gid>                 a leftover prepared transaction committed
//	ack <id>                       transaction id committed (or rolled back)
//	stopped                        --stop-after: every worker is done; closing
//	closed                         Close returned (the process then waits)
//
// Each line is one write of less than PIPE_BUF bytes to unbuffered stdout,
// so a kill cannot cut one short.
//
// # Dump
//
// crashload --dump opens the directory (after a kill, that is crash
// recovery), prints "open" as above, then the prepared gids ("prepared
// <gid>"), the named keyspaces ("keyspace <quoted name>") and every pair of
// every keyspace ("pair <quoted keyspace> <quoted key> <quoted value>", ""
// for the default keyspace) from one snapshot; with --probe N it then
// commits p/<N> = "probe <N>" in the default keyspace and in the first
// --shared keyspace ("probe <N>"), to show that the recovered directory
// takes new writes, and closes it ("closed").

// crashConfig is what a crashload run and the checker of its directory
// must agree on.
type crashConfig struct {
	keys        int      // the most fresh keys a transaction puts
	hot         int      // hot keys of each worker
	lag         int      // transaction n deletes transaction n-lag's fresh keys (0: none)
	workers     int      // concurrent writers
	shared      []string // keyspaces that exist before the first run
	ddl         bool     // create, write and drop keyspaces
	twoPhase    bool     // commit some transactions through Prepare
	preparedDDL bool     // prepared transactions may create and drop keyspaces
	// prepared is how long a worker waits between Prepare and
	// CommitPrepared, so that kills find prepared transactions.
	prepared time.Duration
}

// crashTxID names worker w's n-th transaction of run seed.
func crashTxID(seed int64, w, n int) string {
	return fmt.Sprintf("%d-%d-%d", seed, w, n)
}

// crashGID is the gid of a transaction committed through Prepare.
func crashGID(id string) string { return "crash-" + id }

// crashOp is one write of a planned transaction.
type crashOp struct {
	ks, key, value string // ks "" is the default keyspace
	del            bool
}

// crashTx is one planned transaction.
type crashTx struct {
	n        int
	id       string
	create   []string // keyspaces it creates before its writes
	ops      []crashOp
	drop     []string // keyspaces it drops after its writes
	sweep    bool     // drop the keyspaces runs before the last of the worker left
	prepare  bool     // commit through Prepare and CommitPrepared
	rollback bool     // roll back after the writes
}

// crashPlanner draws the transactions of one worker of one run, in order.
// Its state (the live keyspaces) follows the transactions that commit, so
// the n-th transaction it returns is the same for crashload and for a
// checker that replays it.
type crashPlanner struct {
	cfg  *crashConfig
	seed int64
	w    int
	n    int      // of the next transaction
	live []string // the worker's keyspaces, oldest first
}

func newCrashPlanner(cfg *crashConfig, seed int64, w int) *crashPlanner {
	return &crashPlanner{cfg: cfg, seed: seed, w: w}
}

// crashValue returns a value that starts with the id of the transaction
// that wrote it, size bytes of letters after that.
func crashValue(rng *rand.Rand, id, tag string, size int) string {
	var b strings.Builder
	b.Grow(len(id) + len(tag) + 2 + size)
	b.WriteString(id)
	b.WriteByte(':')
	b.WriteString(tag)
	if size > 0 {
		b.WriteByte(':')
		// Runs of one letter, so compression has something to do.
		for b.Len() < len(id)+len(tag)+2+size {
			c := byte('a' + rng.IntN(26))
			for range min(1+rng.IntN(16), len(id)+len(tag)+2+size-b.Len()) {
				b.WriteByte(c)
			}
		}
	}
	return b.String()
}

// crashSize draws a value's padding: mostly small, some over a quarter
// page (TOASTed), a few of several pages.
func crashSize(rng *rand.Rand) int {
	switch r := rng.IntN(100); {
	case r < 80:
		return rng.IntN(60)
	case r < 95:
		return 200 + rng.IntN(1800)
	default:
		return 3000 + rng.IntN(17000)
	}
}

func (p *crashPlanner) next() *crashTx {
	cfg := p.cfg
	rng := rand.New(rand.NewPCG(uint64(p.seed)*1_000_003+uint64(p.w), uint64(p.n)))
	t := &crashTx{n: p.n, id: crashTxID(p.seed, p.w, p.n)}
	p.n++
	owner := fmt.Sprintf("%d-%d", p.seed, p.w)
	put := func(ks, key, tag string, size int) {
		t.ops = append(t.ops, crashOp{ks: ks, key: key, value: crashValue(rng, t.id, tag, size)})
	}
	del := func(ks, key string) { t.ops = append(t.ops, crashOp{ks: ks, key: key, del: true}) }
	if t.n == 0 {
		t.sweep = cfg.ddl
	} else {
		t.rollback = rng.IntN(16) == 0
		t.prepare = cfg.twoPhase && !t.rollback && rng.IntN(8) == 0
	}
	ddl := cfg.ddl && (!t.prepare || cfg.preparedDDL)
	if ddl && len(p.live) < 2 && rng.IntN(6) == 0 {
		name := "x" + t.id
		t.create = append(t.create, name)
		for i := range 1 + rng.IntN(3) {
			put(name, fmt.Sprintf("k%d", i), "new", crashSize(rng))
		}
	}
	for i := range rng.IntN(cfg.keys + 1) {
		put("", fmt.Sprintf("f/%s/%d", t.id, i), strconv.Itoa(i), crashSize(rng))
	}
	if cfg.lag > 0 && t.n >= cfg.lag {
		old := crashTxID(p.seed, p.w, t.n-cfg.lag)
		for i := range cfg.keys {
			del("", fmt.Sprintf("f/%s/%d", old, i))
		}
	}
	for j := range cfg.hot {
		switch r := rng.IntN(10); {
		case r < 5:
			put("", fmt.Sprintf("h/%s/%d", owner, j), "hot", crashSize(rng))
		case r == 5:
			del("", fmt.Sprintf("h/%s/%d", owner, j))
		}
	}
	for _, ks := range cfg.shared {
		if rng.IntN(2) == 0 {
			continue
		}
		for range 1 + rng.IntN(3) {
			key := fmt.Sprintf("%s/%d", owner, rng.IntN(8))
			if rng.IntN(4) == 0 {
				del(ks, key)
			} else {
				put(ks, key, "shared", crashSize(rng))
			}
		}
	}
	if cfg.ddl && len(p.live) > 0 && rng.IntN(2) == 0 {
		ks := p.live[rng.IntN(len(p.live))]
		for range 1 + rng.IntN(3) {
			key := fmt.Sprintf("k%d", rng.IntN(8))
			if rng.IntN(4) == 0 {
				del(ks, key)
			} else {
				put(ks, key, "ks", crashSize(rng))
			}
		}
	}
	if ddl && len(p.live) > 0 && rng.IntN(6) == 0 {
		t.drop = append(t.drop, p.live[0])
	}
	kind := "commit"
	switch {
	case t.rollback:
		kind = "rollback"
	case t.prepare:
		kind = "2pc"
	}
	put("", "m/"+t.id, fmt.Sprintf("%s,%d-ops,+%d-%d-ks", kind, len(t.ops), len(t.create), len(t.drop)), 0)
	if !t.rollback {
		p.live = slices.DeleteFunc(p.live, func(name string) bool { return slices.Contains(t.drop, name) })
		p.live = append(p.live, t.create...)
	}
	return t
}

// crashKeyspaceOwner parses a keyspace name x<SEED>-<w>-<n>.
func crashKeyspaceOwner(name string) (writer, int, bool) {
	if !strings.HasPrefix(name, "x") {
		return writer{}, 0, false
	}
	return parseTxID(name[1:])
}

// writer is one worker of one crashload run.
type writer struct{ seed, worker int }

// parseTxID splits "SEED-W-N".
func parseTxID(id string) (writer, int, bool) {
	f := strings.Split(id, "-")
	if len(f) != 3 {
		return writer{}, 0, false
	}
	var v [3]int
	for i, s := range f {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || strconv.Itoa(n) != s {
			return writer{}, 0, false
		}
		v[i] = n
	}
	return writer{v[0], v[1]}, v[2], true
}

var errCrashRollback = errors.New("crashload: planned rollback")

// apply runs t's writes in tx.
func (t *crashTx) apply(tx *kv.Tx, seed int64, w int) error {
	if t.sweep {
		names, err := tx.Keyspaces()
		if err != nil {
			return err
		}
		for _, name := range names {
			if r, _, ok := crashKeyspaceOwner(name); ok && r.worker == w && int64(r.seed) < seed-1 {
				if err := tx.DropKeyspace(name); err != nil {
					return fmt.Errorf("drop keyspace %s: %w", name, err)
				}
			}
		}
	}
	for _, name := range t.create {
		if err := tx.CreateKeyspace(name); err != nil {
			return fmt.Errorf("create keyspace %s: %w", name, err)
		}
	}
	for _, op := range t.ops {
		k := tx.Keyspace(op.ks)
		var err error
		if op.del {
			err = k.Delete([]byte(op.key))
		} else {
			err = k.Put([]byte(op.key), []byte(op.value))
		}
		if err != nil {
			return fmt.Errorf("keyspace %q key %s: %w", op.ks, op.key, err)
		}
	}
	for _, name := range t.drop {
		if err := tx.DropKeyspace(name); err != nil {
			return fmt.Errorf("drop keyspace %s: %w", name, err)
		}
	}
	if t.rollback {
		return errCrashRollback
	}
	return nil
}

// run runs t to its end: committed, or rolled back if planned so.
func (t *crashTx) run(ctx context.Context, db *kv.DB, cfg *crashConfig, seed int64, w int) error {
	if t.prepare {
		tx, err := db.Begin(ctx, kv.TxOptions{})
		if err != nil {
			return err
		}
		if err := t.apply(tx, seed, w); err != nil {
			tx.Rollback()
			return err
		}
		gid := crashGID(t.id)
		if err := tx.Prepare(gid); err != nil {
			return fmt.Errorf("prepare %s: %w", gid, err)
		}
		time.Sleep(cfg.prepared)
		if err := db.CommitPrepared(gid); err != nil {
			return fmt.Errorf("commit prepared %s: %w", gid, err)
		}
		return nil
	}
	err := db.Update(ctx, func(tx *kv.Tx) error { return t.apply(tx, seed, w) })
	if t.rollback {
		if !errors.Is(err, errCrashRollback) {
			return fmt.Errorf("planned rollback returned %v", err)
		}
		return nil
	}
	return err
}

// lineWriter writes whole lines, one write each, from any goroutine.
type lineWriter struct {
	mu     sync.Mutex
	w      io.Writer
	phases bool // print the phase lines too
}

// phase prints a line other than an ack, if asked to.
func (l *lineWriter) phase(format string, args ...any) error {
	if !l.phases {
		return nil
	}
	return l.printf(format, args...)
}

func (l *lineWriter) printf(format string, args ...any) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, err := fmt.Fprintf(l.w, format+"\n", args...)
	return err
}

func runCrashload(e *env, args []string) error {
	fs := e.flags("crashload")
	seed := fs.Int64("seed", time.Now().UnixNano()%1_000_000_000, "run `N`, the first part of every transaction id (>= 0; unique per run)")
	cfg := &crashConfig{}
	fs.IntVar(&cfg.keys, "keys", 4, "the most fresh keys a transaction writes")
	fs.IntVar(&cfg.hot, "hot", 0, "keys of its worker a transaction may overwrite or delete")
	fs.IntVar(&cfg.lag, "delete-lag", 0, "delete the fresh keys of the transaction `N` before (0: none)")
	fs.IntVar(&cfg.workers, "workers", 1, "concurrent writers")
	shared := fs.String("shared", "", "comma-separated existing keyspaces transactions also write")
	fs.BoolVar(&cfg.ddl, "ddl", false, "create, write and drop keyspaces")
	fs.BoolVar(&cfg.twoPhase, "2pc", false, "commit one transaction in 8 through Prepare and CommitPrepared")
	fs.BoolVar(&cfg.preparedDDL, "prepared-ddl", false, "with --2pc and --ddl: prepared transactions create and drop keyspaces too")
	fs.DurationVar(&cfg.prepared, "prepare-pause", 0, "with --2pc: wait this long between Prepare and CommitPrepared")
	ckpt := fs.Int("checkpoint-every", 0, "force a checkpoint after every `N` commits of a worker (0: never)")
	stopAfter := fs.Int("stop-after", 0, "each worker stops after `N` transactions, then the directory is closed (0: never)")
	dump := fs.Bool("dump", false, "print the directory's contents instead of writing")
	probe := fs.Int("probe", -1, "with --dump: then commit p/`N` (-1: none)")
	phases := fs.Bool("phases", false, "print start, open, resolved, stopped and closed lines too")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	if *shared != "" {
		cfg.shared = strings.Split(*shared, ",")
	}
	if *seed < 0 || cfg.keys < 0 || cfg.hot < 0 || cfg.lag < 0 || cfg.workers < 1 || *ckpt < 0 || *stopAfter < 0 {
		return usageErrorf("crashload: --seed, --keys, --hot, --delete-lag, --checkpoint-every and --stop-after must not be negative, --workers at least 1")
	}
	if *probe >= 0 && len(cfg.shared) == 0 {
		return usageErrorf("crashload: --probe needs a --shared keyspace")
	}
	out := &lineWriter{w: e.stdout, phases: *phases || *dump} // e.stdout is unbuffered (os.Stdout)
	out.phase("start %d", time.Now().UnixNano())
	began := time.Now()
	db, err := e.open(false)
	if err != nil {
		return err
	}
	out.phase("open %d %d", time.Now().UnixNano(), time.Since(began).Nanoseconds())
	if *dump {
		return runCrashDump(db, out, cfg, *probe)
	}
	// No Close unless --stop-after: the load ends when the process is
	// killed (or fails).
	for _, s := range db.Settings() {
		if s.Name == "synchronous_commit" && s.Value != "on" {
			return fmt.Errorf("crashload: synchronous_commit is %s; acks would not mean durable", s.Value)
		}
	}
	gids, err := db.Prepared()
	if err != nil {
		return err
	}
	for _, gid := range gids {
		if strings.HasPrefix(gid, "crash-") {
			if err := db.CommitPrepared(gid); err != nil {
				return fmt.Errorf("crashload: commit leftover prepared %s: %w", gid, err)
			}
			if err := out.phase("resolved %s", gid); err != nil {
				return err
			}
		}
	}
	errc := make(chan error, cfg.workers)
	for w := range cfg.workers {
		go func() {
			errc <- crashWorker(db, cfg, *seed, w, *ckpt, *stopAfter, out)
		}()
	}
	for range cfg.workers {
		if err := <-errc; err != nil {
			return err
		}
	}
	out.phase("stopped")
	if err := db.Close(); err != nil {
		return err
	}
	out.phase("closed")
	// Wait for the kill, as the test expects to kill every run.
	time.Sleep(time.Hour)
	return nil
}

func crashWorker(db *kv.DB, cfg *crashConfig, seed int64, w, ckpt, stopAfter int, out *lineWriter) error {
	ctx := context.Background()
	p := newCrashPlanner(cfg, seed, w)
	commits := 0
	for stopAfter == 0 || p.n < stopAfter {
		t := p.next()
		if err := t.run(ctx, db, cfg, seed, w); err != nil {
			return fmt.Errorf("crashload: transaction %s: %w", t.id, err)
		}
		if err := out.printf("ack %s", t.id); err != nil {
			return err
		}
		if t.rollback {
			continue
		}
		commits++
		if ckpt > 0 && commits%ckpt == 0 {
			if err := db.Checkpoint(); err != nil {
				return fmt.Errorf("crashload: checkpoint after %s: %w", t.id, err)
			}
		}
	}
	return nil
}

// runCrashDump prints the directory's contents, then commits the probe.
func runCrashDump(db *kv.DB, out *lineWriter, cfg *crashConfig, probe int) (err error) {
	defer func() {
		if cerr := db.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = out.printf("closed")
		}
	}()
	gids, err := db.Prepared()
	if err != nil {
		return err
	}
	// Buffered: no kill is expected here, and a dump has many lines.
	w := bufio.NewWriterSize(out.w, 64<<10)
	for _, gid := range gids {
		fmt.Fprintf(w, "prepared %s\n", gid)
	}
	err = db.View(context.Background(), func(tx *kv.Tx) error {
		names, err := tx.Keyspaces()
		if err != nil {
			return err
		}
		for _, name := range names {
			fmt.Fprintf(w, "keyspace %s\n", strconv.Quote(name))
		}
		for _, name := range append([]string{""}, names...) {
			it := tx.Keyspace(name).Scan(nil, nil, nil)
			for it.Next() {
				fmt.Fprintf(w, "pair %s %s %s\n", strconv.Quote(name), strconv.Quote(string(it.Key())), strconv.Quote(string(it.Value())))
			}
			if err := it.Close(); err != nil {
				return fmt.Errorf("scan keyspace %q: %w", name, err)
			}
		}
		return nil
	})
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	if err != nil || probe < 0 {
		return err
	}
	key, value := fmt.Appendf(nil, "p/%d", probe), fmt.Appendf(nil, "probe %d", probe)
	err = db.Update(context.Background(), func(tx *kv.Tx) error {
		if err := tx.Put(key, value); err != nil {
			return err
		}
		return tx.Keyspace(cfg.shared[0]).Put(key, value)
	})
	if err != nil {
		return fmt.Errorf("probe write: %w", err)
	}
	return out.printf("probe %d", probe)
}
