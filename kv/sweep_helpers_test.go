package kv

// The fixed workload of the fault sweeps (sweep_test.go), the ledger of
// what it was told, and the checker that judges a recovered database
// against that ledger.
//
// Every transaction of the workload first writes a marker, m/NN in the
// default keyspace, so that after recovery the markers say exactly which
// transactions are visible; the checker then rebuilds the expected contents
// by applying just those transactions' writes in commit order and compares
// every keyspace with it. That is all-or-nothing checked in full: a
// transaction partly visible, or one whose marker is missing while some of
// its writes are there, shows up as a difference.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heapkv/heapkv/internal/vfs"
	"github.com/heapkv/heapkv/internal/vfs/errorfs"
)

// Classes of violation.
const (
	vPanic           = "panic"            // the workload panicked
	vHang            = "hang"             // the workload did not finish in time
	vWrongRead       = "wrong-read"       // a read disagreed with the model before any fault
	vNotStopped      = "not-stopped"      // a call after a fatal fault did not return ErrEngineStopped
	vStmtAbort       = "stmt-abort"       // a transaction with a failed write statement committed or prepared
	vReopen          = "reopen"           // Open without faults failed or hung
	vLostCommit      = "lost-commit"      // an acknowledged commit is missing
	vLostPrepare     = "lost-prepare"     // an acknowledged Prepare is neither prepared nor committed
	vVisible         = "visible"          // a transaction that never committed is visible
	vOutcome         = "outcome"          // another impossible (visible, prepared) combination
	vState           = "state"            // the contents differ from the visible transactions' writes
	vCheck           = "check"            // db.Check failed
	vNewWrites       = "new-writes"       // writing after recovery failed
	vRecoveryDurable = "recovery-durable" // a power loss after recovery lost what recovery had shown
	vBaseline        = "baseline"         // the workload failed without any fault
)

type violation struct {
	class string
	msg   string
}

func (v violation) String() string { return v.class + ": " + v.msg }

// sweepOptions are the options of every open in the sweeps: a tiny buffer
// pool, so that pages are evicted (and the WAL flushed) in the middle of
// transactions, and no background activity on timers (no bgwriter rounds,
// no timed checkpoints, no WAL writer ticks), so that the workload's I/O
// is, as far as the engine allows, the same from run to run.
func sweepOptions() *Options {
	o := &Options{SharedBuffers: 128 << 10, walSegmentSize: 128 << 10}
	for name, v := range map[string]string{
		"bgwriter_lru_maxpages": "0",
		"checkpoint_timeout":    "1h",
		"wal_writer_delay":      "10s",
		"autovacuum":            "off",
	} {
		if err := o.Set(name, v); err != nil {
			panic(err)
		}
	}
	return o
}

// ---- the model ----

// swWrite is one effect of a transaction: a put (val non-nil), a delete,
// or the creation of keyspace ks.
type swWrite struct {
	ks     string // "" is the default keyspace
	key    string
	val    []byte
	del    bool
	create bool
}

// swState is the contents of a database: keyspace -> key -> value.
type swState map[string]map[string][]byte

func newSWState() swState { return swState{"": {}} }

func (s swState) clone() swState {
	c := swState{}
	for ks, m := range s {
		c[ks] = maps.Clone(m)
	}
	return c
}

// apply applies ws; an error says the writes cannot follow each other (a
// write to a keyspace that does not exist).
func (s swState) apply(ws []swWrite) error {
	for _, w := range ws {
		m, ok := s[w.ks]
		switch {
		case w.create && ok:
			return fmt.Errorf("keyspace %q created twice", w.ks)
		case w.create:
			s[w.ks] = map[string][]byte{}
		case !ok:
			return fmt.Errorf("write of %s/%s to a keyspace that does not exist", w.ks, w.key)
		case w.del:
			delete(m, w.key)
		default:
			m[w.key] = w.val
		}
	}
	return nil
}

// diff describes how got differs from want, in at most a few lines.
func (s swState) diff(got swState) []string {
	var out []string
	add := func(format string, args ...any) {
		if len(out) < 6 {
			out = append(out, fmt.Sprintf(format, args...))
		}
	}
	for _, ks := range slices.Sorted(maps.Keys(s)) {
		g, ok := got[ks]
		if !ok {
			add("keyspace %q missing", ks)
			continue
		}
		for _, k := range slices.Sorted(maps.Keys(s[ks])) {
			if gv, ok := g[k]; !ok {
				add("%s/%s missing", ksName(ks), k)
			} else if !bytes.Equal(gv, s[ks][k]) {
				add("%s/%s = %s, want %s", ksName(ks), k, short(gv), short(s[ks][k]))
			}
		}
		for _, k := range slices.Sorted(maps.Keys(g)) {
			if _, ok := s[ks][k]; !ok {
				add("%s/%s = %s should not exist", ksName(ks), k, short(g[k]))
			}
		}
	}
	for _, ks := range slices.Sorted(maps.Keys(got)) {
		if _, ok := s[ks]; !ok {
			add("keyspace %q should not exist", ks)
		}
	}
	return out
}

func ksName(ks string) string {
	if ks == "" {
		return "default"
	}
	return ks
}

func short(v []byte) string {
	if len(v) > 16 {
		return fmt.Sprintf("%q…(%d bytes)", v[:12], len(v))
	}
	return fmt.Sprintf("%q", v)
}

// ---- the ledger ----

// txPhase is how far a transaction got, as the workload saw it.
type txPhase int8

const (
	phOpen                 txPhase = iota // statements running, no decision asked for
	phRolledBack                          // Rollback called
	phCommitting                          // Commit called, not returned
	phCommitted                           // Commit returned nil
	phCommitFailed                        // Commit returned an error
	phPreparing                           // Prepare called, not returned
	phPrepared                            // Prepare returned nil
	phPrepareFailed                       // Prepare returned an error
	phFinishingCommit                     // CommitPrepared called, not returned
	phFinishCommitted                     // CommitPrepared returned nil
	phFinishCommitFailed                  // CommitPrepared returned an error
	phFinishingRollback                   // RollbackPrepared called, not returned
	phFinishRolledBack                    // RollbackPrepared returned nil
	phFinishRollbackFailed                // RollbackPrepared returned an error
)

var phaseNames = [...]string{"open", "rolled back", "committing", "committed", "commit failed",
	"preparing", "prepared", "prepare failed", "commit-prepared running", "commit-prepared acknowledged",
	"commit-prepared failed", "rollback-prepared running", "rolled back prepared", "rollback-prepared failed"}

func (p txPhase) String() string { return phaseNames[p] }

// swTx is one transaction of the workload.
type swTx struct {
	id      int
	gid     string
	writes  []swWrite // the statements that returned nil, in order
	stmtErr error     // the first write statement that failed
	phase   txPhase
	seq     int // when its commit (or CommitPrepared) was asked for: the commit order
}

func (tx *swTx) name() string {
	if tx.gid != "" {
		return fmt.Sprintf("T%d (%s)", tx.id, tx.gid)
	}
	return fmt.Sprintf("T%d", tx.id)
}

// outcome is what recovery shows of a transaction: is its marker visible,
// is its gid among the prepared.
type outcome struct{ visible, prepared bool }

func (o outcome) String() string {
	switch {
	case o.visible && o.prepared:
		return "visible and still prepared"
	case o.visible:
		return "visible"
	case o.prepared:
		return "prepared"
	}
	return "absent"
}

// allowed lists what recovery may show of tx. A transaction one of whose
// write statements failed may only be absent (it must have been aborted).
func (tx *swTx) allowed() []outcome {
	var (
		absent   = outcome{}
		visible  = outcome{visible: true}
		prepared = outcome{prepared: true}
	)
	switch tx.phase {
	case phOpen, phRolledBack, phFinishRolledBack:
		return []outcome{absent}
	case phCommitting, phCommitFailed:
		if tx.stmtErr != nil {
			return []outcome{absent}
		}
		return []outcome{absent, visible}
	case phCommitted, phFinishCommitted:
		if tx.stmtErr != nil {
			// Acknowledged although a statement failed: the workload has
			// reported that (vStmtAbort); nothing is right after it.
			return []outcome{absent, visible}
		}
		return []outcome{visible}
	case phPreparing, phPrepareFailed:
		if tx.stmtErr != nil {
			return []outcome{absent}
		}
		return []outcome{absent, prepared}
	case phPrepared:
		if tx.stmtErr != nil {
			return []outcome{absent, prepared}
		}
		return []outcome{prepared}
	case phFinishingCommit, phFinishCommitFailed:
		return []outcome{visible, prepared}
	case phFinishingRollback, phFinishRollbackFailed:
		return []outcome{absent, prepared}
	}
	panic("unknown phase")
}

type ledger struct {
	mu  sync.Mutex
	txs []*swTx
	seq int
}

func (l *ledger) add(tx *swTx) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.txs = append(l.txs, tx)
}

func (l *ledger) setPhase(tx *swTx, p txPhase) {
	l.mu.Lock()
	defer l.mu.Unlock()
	tx.phase = p
	if p == phCommitting || p == phFinishingCommit {
		l.seq++
		tx.seq = l.seq
	}
}

func (l *ledger) addWrite(tx *swTx, w swWrite) {
	l.mu.Lock()
	defer l.mu.Unlock()
	tx.writes = append(tx.writes, w)
}

func (l *ledger) failStmt(tx *swTx, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if tx.stmtErr == nil {
		tx.stmtErr = err
	}
}

// snapshot copies the ledger as it is now. Writes only ever append, so the
// copies may share their backing arrays.
func (l *ledger) snapshot() []swTx {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]swTx, len(l.txs))
	for i, tx := range l.txs {
		out[i] = *tx
	}
	return out
}

// committedState is the contents the acknowledged commits make, for the
// reads of the workload itself.
func committedState(txs []swTx) swState {
	s := newSWState()
	for _, tx := range byCommitOrder(txs, func(tx *swTx) bool {
		return tx.phase == phCommitted || tx.phase == phFinishCommitted
	}) {
		if err := s.apply(tx.writes); err != nil {
			panic(err) // the workload only goes on after acknowledged commits
		}
	}
	return s
}

func byCommitOrder(txs []swTx, keep func(*swTx) bool) []*swTx {
	var out []*swTx
	for i := range txs {
		if keep(&txs[i]) {
			out = append(out, &txs[i])
		}
	}
	slices.SortFunc(out, func(a, b *swTx) int { return a.seq - b.seq })
	return out
}

// ---- the run ----

// sweepRun is one run of the workload over an errorfs-wrapped MemFS.
type sweepRun struct {
	mem  *vfs.MemFS
	efs  *errorfs.FS
	led  ledger
	db   *DB
	step atomic.Pointer[string]
	// fatal is the index of the first failed operation, in the database
	// now open, after which the engine must stop; 0 if none.
	fatal atomic.Int64
	// checkReads: compare the workload's reads with the model until the
	// first fault.
	checkReads bool
	// onStep, if set, runs before every call of the workload.
	onStep func(step string)

	mu        sync.Mutex
	viols     []violation
	faultStep string // the workload's step when the first fault fired
	next      int    // id of the next transaction
}

func newSweepRun(mem *vfs.MemFS, inj errorfs.Injector) *sweepRun {
	r := &sweepRun{mem: mem, efs: errorfs.Wrap(mem, inj), checkReads: true}
	r.efs.SetBackground(engineBackground)
	r.efs.OnDone(func(op errorfs.Op, err error) {
		var e *errorfs.Error
		if !errors.As(err, &e) {
			return
		}
		r.mu.Lock()
		if r.faultStep == "" {
			r.faultStep = r.currentStep()
		}
		r.mu.Unlock()
		if stopsEngine(op) {
			r.fatal.CompareAndSwap(0, op.Index)
		}
	})
	s := "not started"
	r.step.Store(&s)
	return r
}

// engineBackground reports whether the calling goroutine is one the
// engine runs on its own schedule (the WAL writer, which creates segments
// ahead; the checkpointer; the background writer), so that errorfs numbers
// its operations apart and the workload's own sequence is the same in
// every run.
func engineBackground() bool {
	var pcs [64]uintptr
	n := runtime.Callers(3, pcs[:])
	if n == len(pcs) {
		return false // deep: not one of those goroutines
	}
	frames := runtime.CallersFrames(pcs[max(0, n-3):n])
	for {
		f, more := frames.Next()
		switch {
		case strings.HasSuffix(f.Function, "xlog.(*Log).walWriter"),
			strings.HasSuffix(f.Function, "xlog.(*Log).checkpointer"),
			strings.Contains(f.Function, "pagecache.(*Pool).StartBgWriter"):
			return true
		}
		if !more {
			return false
		}
	}
}

// stopsEngine reports whether a failure of op must stop the engine: a
// failed fsync of a WAL segment, of a CLOG segment or the CLOG directory,
// or of a relation file, or a failed write to a WAL segment (issue 11, "one
// fatal state"). Segment creation ahead of the writer (segment.tmp), saved
// free-space maps and the other directories are not in that list.
func stopsEngine(op errorfs.Op) bool {
	p := op.Path
	walSeg := strings.HasPrefix(p, "/db/wal/") && !strings.HasSuffix(p, ".tmp")
	switch op.Kind {
	case errorfs.OpWrite:
		return walSeg
	case errorfs.OpSync:
		rel := strings.HasPrefix(p, "/db/base/") && strings.Trim(p[len("/db/base/"):], "0123456789") == ""
		return walSeg || rel || strings.HasPrefix(p, "/db/clog/")
	case errorfs.OpSyncDir:
		return p == "/db/clog"
	}
	return false
}

func (r *sweepRun) violate(class, format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.viols = append(r.viols, violation{class, fmt.Sprintf(format, args...)})
}

func (r *sweepRun) violations() []violation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.viols)
}

func (r *sweepRun) currentStep() string { return *r.step.Load() }

// faulted reports whether any fault has been injected yet.
func (r *sweepRun) faulted() bool { return len(r.efs.Injected()) > 0 }

// call runs one call of the workload. Once the engine must have stopped,
// every call but Rollback and Close must fail with ErrEngineStopped.
func (r *sweepRun) call(step string, fn func() error) error {
	r.step.Store(&step)
	if r.onStep != nil {
		r.onStep(step)
	}
	stopped := r.fatal.Load()
	err := fn()
	if stopped != 0 && !strings.HasPrefix(step, "rollback") && !strings.HasPrefix(step, "close") {
		if err == nil {
			r.violate(vNotStopped, "%s succeeded after the fatal fault at op %d", step, stopped)
		} else if !errors.Is(err, ErrEngineStopped) {
			r.violate(vNotStopped, "%s after the fatal fault at op %d: %v, want ErrEngineStopped", step, stopped, err)
		}
	}
	return err
}

// open opens the database; false means the workload cannot go on.
func (r *sweepRun) open(step string) bool {
	r.fatal.Store(0)
	err := r.call(step, func() (err error) {
		r.db, err = open(r.efs, "/db", sweepOptions())
		return err
	})
	if err != nil {
		r.db = nil
		if !r.faulted() {
			r.violate(vBaseline, "%s: %v", step, err)
		}
		return false
	}
	return true
}

func (r *sweepRun) close(step string) {
	r.call(step, func() error { return r.db.Close() })
	r.db = nil
	r.fatal.Store(0)
}

func (r *sweepRun) checkpoint(step string) {
	if err := r.call(step, func() error { return r.db.Checkpoint() }); err != nil && !r.faulted() {
		r.violate(vBaseline, "%s: %v", step, err)
	}
}

// value returns the deterministic value transaction id writes to key;
// big ones are incompressible and stored out of line.
func value(id int, key string, big int) []byte {
	if big == 0 {
		return fmt.Appendf(nil, "v%d-%s", id, key)
	}
	r := rand.New(rand.NewPCG(uint64(id), uint64(len(key))))
	v := make([]byte, big)
	for i := range v {
		v[i] = byte(r.Uint32())
	}
	return v
}

// wtx is a transaction of the workload. After its first error it issues
// no more statements; its end is still asked for, as a careless
// application would commit after a failed write (the engine must refuse),
// but it rolls back after a failed read or Begin.
type wtx struct {
	r       *sweepRun
	tx      *Tx
	rec     *swTx
	err     error // the first error
	readErr bool  // the first error came from a read
}

func (r *sweepRun) begin(iso Isolation) *wtx {
	r.next++
	rec := &swTx{id: r.next}
	w := &wtx{r: r, rec: rec}
	r.led.add(rec)
	w.err = r.call(fmt.Sprintf("begin T%d", rec.id), func() (err error) {
		w.tx, err = r.db.Begin(context.Background(), TxOptions{Isolation: iso})
		return err
	})
	if w.err != nil {
		w.readErr = true // nothing to commit
		r.led.setPhase(rec, phRolledBack)
		return w
	}
	w.put("", fmt.Sprintf("m/%02d", rec.id), fmt.Appendf(nil, "T%d", rec.id))
	return w
}

// val is the value the transaction writes to key (see value).
func (w *wtx) val(key string, big int) []byte { return value(w.rec.id, key, big) }

// keyspace returns the handle of keyspace ks.
func (w *wtx) keyspace(ks string) *Keyspace { return w.tx.Keyspace(ks) }

// keyspaceAnswer reports whether err is an answer about keyspaces, not a
// failure (a keyspace an uncertain commit did not create): the statement
// did nothing and the transaction goes on, as kv's Tx.fail has it.
func keyspaceAnswer(err error) bool {
	return errors.Is(err, ErrNoKeyspace) || errors.Is(err, ErrKeyspaceExists)
}

// stmt runs a write statement and records it if it succeeds.
func (w *wtx) stmt(step string, eff swWrite, fn func() error) {
	if w.err != nil {
		return
	}
	if err := w.r.call(fmt.Sprintf("T%d %s", w.rec.id, step), fn); err != nil {
		if keyspaceAnswer(err) {
			if !w.r.faulted() {
				w.r.violate(vBaseline, "T%d %s: %v", w.rec.id, step, err)
			}
			return
		}
		w.err = err
		w.r.led.failStmt(w.rec, err)
		if !w.r.faulted() {
			w.r.violate(vBaseline, "T%d %s: %v", w.rec.id, step, err)
		}
		return
	}
	if eff.create || eff.key != "" {
		w.r.led.addWrite(w.rec, eff)
	}
}

func (w *wtx) put(ks, key string, val []byte) {
	w.stmt(fmt.Sprintf("put %s/%s", ksName(ks), key), swWrite{ks: ks, key: key, val: val}, func() error {
		return w.keyspace(ks).Put([]byte(key), val)
	})
}

func (w *wtx) del(ks, key string) {
	w.stmt(fmt.Sprintf("delete %s/%s", ksName(ks), key), swWrite{ks: ks, key: key, del: true}, func() error {
		return w.keyspace(ks).Delete([]byte(key))
	})
}

func (w *wtx) createKeyspace(name string) {
	w.stmt("create keyspace "+name, swWrite{ks: name, create: true}, func() error {
		return w.tx.CreateKeyspace(name)
	})
}

// expect returns what the transaction should read of ks: the committed
// state with its own writes on top. ok is false once a fault has fired
// (the model no longer knows which uncertain commits happened).
func (w *wtx) expect(ks string) (map[string][]byte, bool) {
	if !w.r.checkReads || w.r.faulted() {
		return nil, false
	}
	s := committedState(w.r.led.snapshot())
	mine := []swWrite{}
	for _, tx := range w.r.led.snapshot() {
		if tx.id == w.rec.id {
			mine = tx.writes
		}
	}
	if err := s.apply(mine); err != nil {
		panic(err)
	}
	return s[ks], true
}

// getForUpdate locks key and checks its value; ErrNotFound is an answer,
// not a failure.
func (w *wtx) getForUpdate(ks, key string) {
	if w.err != nil {
		return
	}
	var got []byte
	step := fmt.Sprintf("T%d get-for-update %s/%s", w.rec.id, ksName(ks), key)
	err := w.r.call(step, func() (err error) {
		got, err = w.keyspace(ks).GetForUpdate([]byte(key))
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return err
	})
	if keyspaceAnswer(err) && w.r.faulted() {
		return
	}
	if err != nil {
		w.err = err
		w.r.led.failStmt(w.rec, err)
		if !w.r.faulted() {
			w.r.violate(vBaseline, "%s: %v", step, err)
		}
		return
	}
	if want, ok := w.expect(ks); ok {
		if wv, exists := want[key]; exists != (got != nil) || !bytes.Equal(wv, got) {
			w.r.violate(vWrongRead, "%s: got %s, want %s (exists %v)", step, short(got), short(wv), exists)
		}
	}
}

// scan reads [start, end) of ks and checks it against the model.
func (w *wtx) scan(ks, start, end string, reverse bool, limit int) {
	if w.err != nil {
		return
	}
	var got []string
	step := fmt.Sprintf("T%d scan %s [%s,%s) reverse=%v limit=%d", w.rec.id, ksName(ks), start, end, reverse, limit)
	err := w.r.call(step, func() error {
		var s, e []byte
		if start != "" {
			s = []byte(start)
		}
		if end != "" {
			e = []byte(end)
		}
		it := w.keyspace(ks).Scan(s, e, &ScanOptions{Reverse: reverse, Limit: limit})
		for it.Next() {
			got = append(got, string(it.Key())+"="+string(it.Value()))
		}
		return it.Close()
	})
	if keyspaceAnswer(err) && w.r.faulted() {
		return
	}
	if err != nil {
		w.err, w.readErr = err, true
		return
	}
	want, ok := w.expect(ks)
	if !ok {
		return
	}
	var exp []string
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if (start == "" || k >= start) && (end == "" || k < end) {
			exp = append(exp, k+"="+string(want[k]))
		}
	}
	if reverse {
		slices.Reverse(exp)
	}
	if limit > 0 && len(exp) > limit {
		exp = exp[:limit]
	}
	if !slices.Equal(got, exp) {
		w.r.violate(vWrongRead, "%s: got %d pairs, want %d", step, len(got), len(exp))
	}
}

// commit ends the transaction with Commit, or with Rollback if it failed
// on a read.
func (w *wtx) commit() {
	if w.readErr {
		w.rollback()
		return
	}
	l := &w.r.led
	l.setPhase(w.rec, phCommitting)
	err := w.r.call(fmt.Sprintf("commit T%d", w.rec.id), func() error { return w.tx.Commit() })
	switch {
	case err != nil:
		l.setPhase(w.rec, phCommitFailed)
		if !w.r.faulted() {
			w.r.violate(vBaseline, "commit T%d: %v", w.rec.id, err)
		}
	case w.err != nil:
		l.setPhase(w.rec, phCommitted)
		w.r.violate(vStmtAbort, "commit T%d returned nil after its statement failed: %v", w.rec.id, w.err)
	default:
		l.setPhase(w.rec, phCommitted)
	}
}

func (w *wtx) rollback() {
	w.r.led.setPhase(w.rec, phRolledBack)
	if w.tx != nil {
		w.r.call(fmt.Sprintf("rollback T%d", w.rec.id), func() error { return w.tx.Rollback() })
	}
}

// prepare ends the transaction with Prepare(gid); true if acknowledged.
func (w *wtx) prepare(gid string) {
	if w.readErr {
		w.rollback()
		return
	}
	l := &w.r.led
	l.mu.Lock()
	w.rec.gid = gid
	l.mu.Unlock()
	l.setPhase(w.rec, phPreparing)
	err := w.r.call(fmt.Sprintf("prepare T%d as %s", w.rec.id, gid), func() error { return w.tx.Prepare(gid) })
	switch {
	case err != nil:
		l.setPhase(w.rec, phPrepareFailed)
		if !w.r.faulted() {
			w.r.violate(vBaseline, "prepare T%d: %v", w.rec.id, err)
		}
	case w.err != nil:
		l.setPhase(w.rec, phPrepared)
		w.r.violate(vStmtAbort, "prepare T%d returned nil after its statement failed: %v", w.rec.id, w.err)
	default:
		l.setPhase(w.rec, phPrepared)
	}
}

// finish decides a prepared transaction, if its Prepare was acknowledged.
func (r *sweepRun) finish(w *wtx, commit bool) {
	l := &r.led
	l.mu.Lock()
	ph := w.rec.phase
	l.mu.Unlock()
	if ph != phPrepared && ph != phFinishCommitFailed && ph != phFinishRollbackFailed {
		return
	}
	running, done, failed, verb := phFinishingRollback, phFinishRolledBack, phFinishRollbackFailed, "rollback-prepared"
	fn := r.db.RollbackPrepared
	if commit {
		running, done, failed, verb = phFinishingCommit, phFinishCommitted, phFinishCommitFailed, "commit-prepared"
		fn = r.db.CommitPrepared
	}
	l.setPhase(w.rec, running)
	if err := r.call(fmt.Sprintf("%s %s", verb, w.rec.gid), func() error { return fn(w.rec.gid) }); err != nil {
		l.setPhase(w.rec, failed)
		if !r.faulted() {
			r.violate(vBaseline, "%s %s: %v", verb, w.rec.gid, err)
		}
		return
	}
	l.setPhase(w.rec, done)
}

// waiterTx is a transaction whose write waits for another's row lock.
type waiterTx struct {
	w    *wtx
	done chan struct{}
}

// waiter begins a Read Committed transaction that writes ks/key, which
// holder has written, in a goroutine of its own, and returns once that
// write sleeps on holder's lock (or has returned). When holder commits the
// write goes ahead; when the engine stops instead, the waiter must be
// released with ErrEngineStopped, not left asleep (issue 11, one fatal
// state).
func (r *sweepRun) waiter(holder *wtx, ks, key string) *waiterTx {
	w := r.begin(ReadCommitted)
	wt := &waiterTx{w: w, done: make(chan struct{})}
	go func() {
		defer close(wt.done)
		w.put(ks, key, value(w.rec.id, key, 0))
	}()
	if r.db == nil {
		<-wt.done
		return wt
	}
	deadline := time.Now().Add(time.Second)
	for r.db.txm.Stats().Locks.Waiting == 0 && time.Now().Before(deadline) {
		select {
		case <-wt.done:
			return wt
		case <-time.After(50 * time.Microsecond):
		}
	}
	return wt
}

// finish waits for the waiter's write and commits it. If the engine
// stopped while it waited, the write must have failed with
// ErrEngineStopped.
func (wt *waiterTx) finish() {
	w := wt.w
	w.r.step.Store(ptr(fmt.Sprintf("T%d waiting for its row lock", w.rec.id)))
	<-wt.done
	if stopped := w.r.fatal.Load(); stopped != 0 && !errors.Is(w.err, ErrEngineStopped) {
		w.r.violate(vNotStopped, "T%d, waiting for a row lock when the engine stopped at op %d, was released with %v, want ErrEngineStopped", w.rec.id, stopped, w.err)
	}
	w.commit()
}

// verifyAll reads every keyspace in one transaction and compares it with
// the acknowledged commits, while no fault has fired.
func (r *sweepRun) verifyAll(step string) {
	var obs *observed
	err := r.call(step, func() (err error) {
		obs, err = observe(r.db)
		return err
	})
	if err != nil {
		if !r.faulted() {
			r.violate(vBaseline, "%s: %v", step, err)
		}
		return
	}
	if r.faulted() {
		return
	}
	want := committedState(r.led.snapshot())
	if d := want.diff(obs.state); len(d) > 0 {
		r.violate(vWrongRead, "%s: %s", step, strings.Join(d, "; "))
	}
}

// workload is the fixed workload: Open, two keyspaces, puts, deletes,
// scans and GetForUpdate over several transactions, one of them rolled
// back and one waiting for another's row lock, prepared transactions (one
// committed before the restart, one carried over it that creates a third
// keyspace, one left prepared), a checkpoint, Close, Open, and more of the
// same with a second checkpoint. It leaves the database open, with a
// transaction running: the caller crashes it.
func (r *sweepRun) workload() {
	if !r.open("open 1") {
		return
	}
	t := r.begin(RepeatableRead) // T1
	t.createKeyspace("alpha")
	t.createKeyspace("beta")
	t.commit()

	t = r.begin(RepeatableRead) // T2: the initial rows
	for i := range 16 {
		k := fmt.Sprintf("a%02d", i)
		t.put("alpha", k, t.val(k, 0))
	}
	t.put("alpha", "big", t.val("big", 6000))
	for i := range 8 {
		k := fmt.Sprintf("b%02d", i)
		t.put("beta", k, t.val(k, 0))
	}
	t.commit()

	t = r.begin(RepeatableRead) // T3
	t.del("alpha", "a03")
	t.del("alpha", "a07")
	t.put("beta", "b02", t.val("b02", 0))
	t.scan("alpha", "a00", "a10", false, 0)
	t.commit()

	t = r.begin(ReadCommitted) // T4
	t.getForUpdate("alpha", "a01")
	t.put("alpha", "a01", t.val("a01", 0))
	t.getForUpdate("beta", "b05")
	t.del("beta", "b05")
	t.scan("beta", "", "", true, 3)
	t.put("", "d1", t.val("d1", 0))
	t.commit()

	t = r.begin(RepeatableRead) // T5: rolled back
	t.put("alpha", "a20", t.val("a20", 0))
	t.del("alpha", "a00")
	t.put("alpha", "a21", t.val("a21", 0))
	t.rollback()

	g1 := r.begin(RepeatableRead) // T6: prepared, committed before the restart
	g1.put("alpha", "p1", g1.val("p1", 0))
	g1.put("beta", "p2", g1.val("p2", 0))
	g1.prepare("g1")

	r.checkpoint("checkpoint 1")

	t = r.begin(RepeatableRead) // T7
	t.put("", "d2", t.val("d2", 4000))
	t.put("alpha", "a02", t.val("a02", 0))
	t.del("beta", "b00")
	t.commit()

	r.finish(g1, true)

	g2 := r.begin(RepeatableRead) // T8: prepared, carried over the restart
	g2.put("beta", "q1", g2.val("q1", 0))
	g2.createKeyspace("gamma") // its files must survive the restart (defect 2)
	g2.put("gamma", "c1", g2.val("c1", 0))
	g2.prepare("g2")

	t = r.begin(RepeatableRead) // T9
	for i := 8; i <= 12; i++ {
		k := fmt.Sprintf("a%02d", i)
		t.put("alpha", k, t.val(k, 0))
	}
	wt := r.waiter(t, "alpha", "a08") // T10 waits for T9's row lock
	t.getForUpdate("alpha", "a09")
	t.scan("alpha", "", "", false, 0)
	t.commit()
	wt.finish()

	r.close("close 1")
	if !r.open("open 2") {
		return
	}
	r.verifyAll("verify after reopen")

	t = r.begin(RepeatableRead) // T11
	t.put("alpha", "a13", t.val("a13", 0))
	t.del("alpha", "a14")
	t.put("beta", "b01", t.val("b01", 0))
	t.commit()

	r.finish(g2, true)

	g3 := r.begin(RepeatableRead) // T12: left prepared
	g3.put("alpha", "r1", g3.val("r1", 0))
	g3.prepare("g3")

	t = r.begin(RepeatableRead) // T13
	t.put("", "d3", t.val("d3", 0))
	t.getForUpdate("alpha", "a13")
	t.scan("", "", "", false, 0)
	t.scan("gamma", "", "", false, 0)
	t.commit()

	r.checkpoint("checkpoint 2")

	t = r.begin(RepeatableRead) // T14: after the second checkpoint
	t.put("beta", "b03", t.val("b03", 0))
	t.del("", "d1")
	t.commit()

	t = r.begin(RepeatableRead) // T15: open when the run ends
	t.put("alpha", "a15", t.val("a15", 0))
	r.step.Store(ptr("done"))
}

func ptr[T any](v T) *T { return &v }

// runWorkload runs the workload, turning a panic into a violation, and
// waits at most timeout. It reports whether the workload finished.
func (r *sweepRun) runWorkload(timeout time.Duration) bool {
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if p := recover(); p != nil {
				r.violate(vPanic, "at %q: %v\n%s", r.currentStep(), p, debug.Stack())
			}
		}()
		r.workload()
	}()
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		r.violate(vHang, "workload stuck at %q for %v", r.currentStep(), timeout)
		return false
	}
}

// closeDB closes the run's database, if open, waiting at most timeout.
func (r *sweepRun) closeDB(timeout time.Duration) bool {
	if r.db == nil {
		return true
	}
	db := r.db
	return within(timeout, func() { db.Close() })
}

// within runs fn and reports whether it returned within timeout; if not,
// fn is left running.
func within(timeout time.Duration, fn func()) bool {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// ---- the checker ----

// observed is what a database holds: every keyspace's contents and the
// prepared transactions.
type observed struct {
	state    swState
	prepared []string
}

// observe reads all of db in one read-only transaction.
func observe(db *DB) (*observed, error) {
	obs := &observed{state: newSWState()}
	var err error
	if obs.prepared, err = db.Prepared(); err != nil {
		return nil, err
	}
	tx, err := db.Begin(context.Background(), TxOptions{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	names, err := tx.Keyspaces()
	if err != nil {
		return nil, fmt.Errorf("list keyspaces: %w", err)
	}
	for _, ks := range append([]string{""}, names...) {
		m := map[string][]byte{}
		it := tx.Keyspace(ks).Scan(nil, nil, nil)
		for it.Next() {
			m[string(it.Key())] = bytes.Clone(it.Value())
		}
		if err := it.Close(); err != nil {
			return nil, fmt.Errorf("scan %s: %w", ksName(ks), err)
		}
		obs.state[ks] = m
	}
	return obs, nil
}

// judge compares what recovery shows with the ledger.
func judge(obs *observed, txs []swTx) []violation {
	var out []violation
	add := func(class, format string, args ...any) {
		out = append(out, violation{class, fmt.Sprintf(format, args...)})
	}
	visible := map[int]bool{}
	for k := range obs.state[""] {
		var id int
		if _, err := fmt.Sscanf(k, "m/%d", &id); err == nil {
			visible[id] = true
		}
	}
	prepared := map[string]bool{}
	for _, g := range obs.prepared {
		prepared[g] = true
	}
	known := map[string]bool{}
	for i := range txs {
		tx := &txs[i]
		if tx.gid != "" {
			known[tx.gid] = true
		}
		got := outcome{visible: visible[tx.id], prepared: tx.gid != "" && prepared[tx.gid]}
		allowed := tx.allowed()
		if slices.Contains(allowed, got) {
			continue
		}
		class := vOutcome
		switch {
		case tx.stmtErr != nil && got.visible:
			class = vStmtAbort
		case tx.stmtErr != nil && got.prepared:
			class = vStmtAbort
		case allowed[0].visible && !got.visible:
			class = vLostCommit
		case allowed[0].prepared && !got.prepared && !got.visible:
			class = vLostPrepare
		case got.visible:
			class = vVisible
		}
		what := ""
		if tx.stmtErr != nil {
			what = fmt.Sprintf(" (a statement failed: %v)", tx.stmtErr)
		}
		add(class, "%s %s%s is %s after recovery, allowed %v", tx.name(), tx.phase, what, got, allowed)
	}
	for g := range prepared {
		if !known[g] {
			add(vOutcome, "unknown prepared transaction %q", g)
		}
	}
	// The contents must be exactly the visible transactions' writes.
	want := newSWState()
	for _, tx := range byCommitOrder(txs, func(tx *swTx) bool { return visible[tx.id] }) {
		if err := want.apply(tx.writes); err != nil {
			add(vState, "%s is visible but cannot apply: %v", tx.name(), err)
		}
	}
	if d := want.diff(obs.state); len(d) > 0 {
		add(vState, "contents differ from the visible transactions %v: %s", slices.Sorted(maps.Keys(visible)), strings.Join(d, "; "))
	}
	return out
}

// openWithin opens fsys, failing a hang as an error.
func openWithin(fsys vfs.FS, timeout time.Duration) (*DB, error) {
	var db *DB
	var err error
	if !within(timeout, func() { db, err = open(fsys, "/db", sweepOptions()) }) {
		return nil, fmt.Errorf("open hung for %v", timeout)
	}
	return db, err
}

// checkRecovered opens fsys without faults and judges it against txs:
// every acknowledged commit present, nothing else visible, all or nothing,
// Check passes, new writes work across a restart. It returns the
// observation for callers that compare it with a later one.
func checkRecovered(fsys vfs.FS, txs []swTx, timeout time.Duration) []violation {
	db, err := openWithin(fsys, timeout)
	if err != nil {
		return []violation{{vReopen, err.Error()}}
	}
	var out []violation
	if obs, err := observe(db); err != nil {
		out = append(out, violation{vReopen, fmt.Sprintf("read after recovery: %v", err)})
	} else {
		out = append(out, judge(obs, txs)...)
		for _, g := range obs.prepared {
			if err := db.RollbackPrepared(g); err != nil {
				out = append(out, violation{vNewWrites, fmt.Sprintf("rollback-prepared %s: %v", g, err)})
			}
		}
	}
	if err := db.Check(); err != nil {
		out = append(out, violation{vCheck, err.Error()})
	}
	out = append(out, newWritesWork(db, fsys, timeout)...)
	return out
}

// newWritesWork writes, closes db, reopens and reads back; it closes
// the database it opened.
func newWritesWork(db *DB, fsys vfs.FS, timeout time.Duration) []violation {
	fail := func(format string, args ...any) []violation {
		return []violation{{vNewWrites, fmt.Sprintf(format, args...)}}
	}
	if err := db.Put([]byte("post"), []byte("after")); err != nil {
		db.Close()
		return fail("put after recovery: %v", err)
	}
	if !within(timeout, func() { err := db.Close(); _ = err }) {
		return fail("close after recovery hung")
	}
	db, err := openWithin(fsys, timeout)
	if err != nil {
		return fail("reopen after recovery: %v", err)
	}
	defer db.Close()
	if v, err := db.Get([]byte("post")); err != nil || string(v) != "after" {
		return fail("write after recovery read back as %q, %v", v, err)
	}
	if err := db.Check(); err != nil {
		return []violation{{vCheck, "after new writes: " + err.Error()}}
	}
	return nil
}

// checkProcessThenPowerLoss is the compound failure: the process dies
// (fsys holds every write), recovery runs and a commit is acknowledged,
// then the power fails (unsynced writes dropped or torn) and the database
// is opened again. Everything the first recovery showed, and the commit
// after it, must still be there: recovery must have made durable what it
// relied on. It consumes fsys.
func checkProcessThenPowerLoss(fsys *vfs.MemFS, txs []swTx, crash vfs.CrashOptions, timeout time.Duration) []violation {
	db, err := openWithin(fsys, timeout)
	if err != nil {
		return []violation{{vReopen, err.Error()}}
	}
	obs1, err := observe(db)
	if err != nil {
		db.Close()
		return []violation{{vReopen, fmt.Sprintf("read after recovery: %v", err)}}
	}
	out := judge(obs1, txs)
	if err := db.Put([]byte("post"), []byte("after")); err != nil {
		out = append(out, violation{vNewWrites, fmt.Sprintf("put after recovery: %v", err)})
	} else {
		obs1.state[""]["post"] = []byte("after")
	}
	lost := fsys.Clone() // the power fails while the recovered engine runs
	within(timeout, func() { db.Close() })
	lost.Crash(crash)
	db, err = openWithin(lost, timeout)
	if err != nil {
		return append(out, violation{vRecoveryDurable, fmt.Sprintf("open after the power loss that followed recovery: %v", err)})
	}
	defer db.Close()
	obs2, err := observe(db)
	if err != nil {
		return append(out, violation{vRecoveryDurable, fmt.Sprintf("read after the second recovery: %v", err)})
	}
	if d := obs1.state.diff(obs2.state); len(d) > 0 {
		out = append(out, violation{vRecoveryDurable, "a power loss after recovery changed the contents: " + strings.Join(d, "; ")})
	}
	if !slices.Equal(obs1.prepared, obs2.prepared) {
		out = append(out, violation{vRecoveryDurable, fmt.Sprintf("prepared %v after the first recovery, %v after the second", obs1.prepared, obs2.prepared)})
	}
	if err := db.Check(); err != nil {
		out = append(out, violation{vCheck, "after the second recovery: " + err.Error()})
	}
	return out
}
