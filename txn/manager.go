package txn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/vfs"
	"github.com/heapkv/heapkv/xlog"
)

// RmgrTxn is the resource manager id of this package's WAL records.
const RmgrTxn = xlog.RmgrTxn

// Info values of RmgrTxn records.
const (
	infoZeroPage       uint8 = 0x10 // CLOG page zeroed; reserves its xids
	infoCommit         uint8 = 0x20 // payload: subxids
	infoAbort          uint8 = 0x30 // payload: subxids
	infoAbortSub       uint8 = 0x40 // payload: aborted subxids; the top goes on
	infoPrepare        uint8 = 0x50 // payload: gid, subxids
	infoCommitPrepared uint8 = 0x60 // payload: gid, subxids
	infoAbortPrepared  uint8 = 0x70 // payload: gid, subxids
	infoTruncate       uint8 = 0x80 // payload: oldest xid kept
	checkpointSection        = "txn"
	defaultCLOGBuffers       = 128
)

// Config configures a Manager. Zero fields take the defaults noted.
type Config struct {
	// CLOGBuffers is the number of 8 KiB CLOG pages cached
	// (transaction_buffers). Default 128 (1 MiB).
	CLOGBuffers int
	// DeadlockTimeout is deadlock_timeout. Default 1 s.
	DeadlockTimeout time.Duration
	// LockTimeout is lock_timeout: a wait for a row lock longer than this
	// fails with ErrLockTimeout. Default 0: no limit.
	LockTimeout time.Duration
	// Halt is the engine's fatal state, shared with the WAL and the data
	// files. The manager stops it when a CLOG fsync fails or a commit's
	// outcome becomes unknown, and once it has stopped (whoever stopped
	// it) every lock waiter is released and every call that would do I/O
	// returns its error. Default: a Halt of the manager's own.
	Halt *base.Halt
	// Logger receives recovery messages. Default: discard.
	Logger *slog.Logger
}

// Manager hands out transaction ids and snapshots, records commits and
// aborts in the WAL and the CLOG, and owns the xid locks. See the package
// documentation for its protocols.
type Manager struct {
	wal   *xlog.Log
	clog  *CLOG
	procs *ProcArray
	locks *LockManager
	log   *slog.Logger
	halt  *base.Halt // never nil

	next     atomic.Uint64 // next xid to hand out
	reserved atomic.Uint64 // xids below it have their CLOG page zeroed and logged
	reserve  sync.Mutex    // serialises extending reserved

	// ckptDelay is PostgreSQL's DELAY_CHKPT_START: a commit holds it in
	// share mode from before its commit record is inserted until the CLOG
	// says committed. The checkpoint hook, which runs once the redo point
	// is fixed, takes it exclusively before writing the CLOG, so a commit
	// whose record lies before the redo point (and is not replayed) is in
	// the CLOG pages the checkpoint writes.
	ckptDelay sync.RWMutex

	prepMu   sync.Mutex
	prepared map[string]*preparedTx // by gid; guarded by prepMu

	// Recovery state, touched only by redo (one goroutine) and Recovered.
	redo struct {
		maxZeroPage int64                       // -1: none seen
		prepared    map[base.XID]preparedRecord // PREPAREs replayed and not ended
		ended       map[base.XID]bool           // prepared xids whose end was replayed
	}

	stats struct {
		commits, aborts atomic.Uint64
	}
}

type preparedTx struct {
	gid  string
	proc *Proc
	xid  base.XID
	subs []base.XID
}

type preparedRecord struct {
	gid  string
	xid  base.XID
	subs []base.XID
}

// NewManager opens the CLOG in dir/clog and registers the manager's redo
// and checkpoint hook with wal. Call it before wal.Recover, then call
// Recovered with Recover's result before beginning transactions.
func NewManager(fsys vfs.FS, dir string, wal *xlog.Log, cfg Config) (*Manager, error) {
	if cfg.CLOGBuffers == 0 {
		cfg.CLOGBuffers = defaultCLOGBuffers
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Halt == nil {
		cfg.Halt = base.NewHalt()
	}
	if cfg.LockTimeout < 0 {
		return nil, fmt.Errorf("txn: lock_timeout %v is negative", cfg.LockTimeout)
	}
	clog, err := OpenCLOG(fsys, path.Join(dir, "clog"), cfg.CLOGBuffers, wal.Flush)
	if err != nil {
		return nil, err
	}
	clog.halt = cfg.Halt
	m := &Manager{
		wal:   wal,
		clog:  clog,
		procs: NewProcArray(FirstNormalXID - 1),
		locks: NewLockManager(LockManagerConfig{
			DeadlockTimeout: cfg.DeadlockTimeout,
			LockTimeout:     cfg.LockTimeout,
			Halt:            cfg.Halt,
		}),
		log:      cfg.Logger,
		halt:     cfg.Halt,
		prepared: make(map[string]*preparedTx),
	}
	m.redo.maxZeroPage = -1
	m.redo.prepared = make(map[base.XID]preparedRecord)
	m.redo.ended = make(map[base.XID]bool)
	if err := wal.RegisterRmgr(RmgrTxn, "Transaction", m.redoRecord); err != nil {
		return nil, err
	}
	wal.RegisterCheckpointHook(checkpointSection, m.checkpoint)
	return m, nil
}

// checkpoint is the manager's checkpoint hook: it makes the CLOG durable
// and records its section of the checkpoint (appendCheckpointState).
func (m *Manager) checkpoint(redo base.LSN, cp *xlog.CheckpointData) error {
	// After a fatal error nothing in memory may be made durable as the
	// state at a redo point, and a committer stuck with an unknown outcome
	// may hold ckptDelay: fail at once.
	if err := m.halt.Err(); err != nil {
		return err
	}
	m.ckptDelay.Lock()
	m.ckptDelay.Unlock() //nolint:staticcheck // waiting out in-flight commits is the point
	if err := m.clog.Checkpoint(); err != nil {
		return err
	}
	// A reservation in progress may have logged its page before the redo
	// point; wait for it, so NextXID covers it.
	m.reserve.Lock()
	reserved := base.XID(m.reserved.Load())
	m.reserve.Unlock()
	oldest := base.XID(m.next.Load())
	for _, x := range m.procs.Running() {
		oldest = min(oldest, x)
	}
	cp.NextXID = reserved
	m.prepMu.Lock()
	preps := make([]preparedRecord, 0, len(m.prepared))
	for _, gid := range slices.Sorted(maps.Keys(m.prepared)) {
		p := m.prepared[gid]
		preps = append(preps, preparedRecord{gid: gid, xid: p.xid, subs: p.subs})
	}
	m.prepMu.Unlock()
	b := appendCheckpointState(nil, oldest, preps)
	if cp.Sections == nil {
		cp.Sections = map[string][]byte{}
	}
	cp.Sections[checkpointSection] = b
	return nil
}

// Recovered finishes recovery: it sets the xid counter past every xid that
// may have been handed out, marks every transaction that was running at
// the crash (and is not prepared) aborted, and restores the prepared
// transactions, holding their xid locks.
func (m *Manager) Recovered(res xlog.RecoveryResult) error {
	cp := res.Checkpoint
	// Every xid below reserved may have been handed out: its CLOG page
	// was zeroed and logged. Both sources are multiples of a page.
	reserved := cp.NextXID
	if m.redo.maxZeroPage >= 0 {
		reserved = max(reserved, base.XID(m.redo.maxZeroPage+1)*xidsPerPage)
	}
	next := max(reserved, FirstNormalXID)
	// Without the manager's checkpoint section (the first checkpoint of a
	// new database) every xid so far may have been running.
	oldest := FirstNormalXID
	prepared := maps.Clone(m.redo.prepared)
	if sec, ok := cp.Sections[checkpointSection]; ok {
		o, preps, err := decodeCheckpointState(sec)
		if err != nil {
			return err
		}
		oldest = o
		for _, p := range preps {
			if !m.redo.ended[p.xid] {
				if _, ok := prepared[p.xid]; !ok {
					prepared[p.xid] = p
				}
			}
		}
	}
	isPrepared := make(map[base.XID]bool)
	for _, p := range prepared {
		isPrepared[p.xid] = true
		for _, s := range p.subs {
			isPrepared[s] = true
		}
	}
	// Whatever was running when the WAL ends never finished: mark it
	// aborted, so that a writer that finds its xid on a row does not wait
	// for ever. (Repeating this after another crash is harmless.)
	crashed := make([]base.XID, 0, 1024)
	flush := func() error {
		err := m.clog.SetStatus(crashed, Aborted, 0)
		crashed = crashed[:0]
		return err
	}
	for x := max(oldest, FirstNormalXID); x < reserved; x++ {
		if isPrepared[x] {
			continue
		}
		st, err := m.clog.Status(x)
		if err != nil {
			return err
		}
		if st == InProgress || st == SubCommitted {
			crashed = append(crashed, x)
			if len(crashed) == cap(crashed) {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	m.next.Store(uint64(next))
	m.reserved.Store(uint64(reserved))
	m.procs.setLatestCompleted(next - 1)
	for _, p := range prepared {
		proc := m.procs.Join()
		m.procs.SetXID(proc, p.xid)
		proc.setSubs(p.subs)
		m.locks.Acquire(p.xid)
		for _, s := range p.subs {
			m.locks.AcquireSub(s, p.xid)
		}
		m.prepared[p.gid] = &preparedTx{gid: p.gid, proc: proc, xid: p.xid, subs: p.subs}
	}
	m.redo.prepared, m.redo.ended = nil, nil
	if len(prepared) > 0 {
		m.log.Info("txn: restored prepared transactions", "count", len(prepared))
	}
	return nil
}

// redoRecord replays the manager's records.
func (m *Manager) redoRecord(rec *xlog.Record, _ *xlog.RedoContext) error {
	r, err := decodeTxnPayload(rec.Info, rec.Payload)
	if err != nil {
		return err
	}
	switch rec.Info {
	case infoZeroPage:
		m.redo.maxZeroPage = max(m.redo.maxZeroPage, r.page)
		return m.clog.ZeroPage(r.page)
	case infoTruncate:
		return m.clog.Truncate(r.oldest)
	}
	if rec.XID < FirstNormalXID {
		return base.CorruptionErrorf("txn: record %#x of xid %d", rec.Info, rec.XID)
	}
	switch rec.Info {
	case infoCommit, infoAbort, infoAbortSub:
		st := Committed
		if rec.Info != infoCommit {
			st = Aborted
		}
		xids := r.subs
		if rec.Info != infoAbortSub {
			xids = append(xids, rec.XID)
		}
		return m.clog.SetStatus(xids, st, rec.End)
	case infoPrepare:
		m.redo.prepared[rec.XID] = preparedRecord{gid: r.gid, xid: rec.XID, subs: r.subs}
		delete(m.redo.ended, rec.XID)
		return nil
	default: // infoCommitPrepared, infoAbortPrepared
		delete(m.redo.prepared, rec.XID)
		m.redo.ended[rec.XID] = true
		st := Committed
		if rec.Info == infoAbortPrepared {
			st = Aborted
		}
		return m.clog.SetStatus(append(r.subs, rec.XID), st, rec.End)
	}
}

// allocXID hands out a new xid to p (as its top xid, or as a subtransaction
// xid when sub). It takes no lock unless the xid is the first of a CLOG
// page, which must be zeroed and logged before any xid on it is used.
func (m *Manager) allocXID(p *Proc, sub bool) (base.XID, error) {
	if sub {
		p.subAssigning.Store(true)
		defer p.subAssigning.Store(false)
	} else {
		m.procs.BeginAssign(p)
	}
	x := base.XID(m.next.Add(1) - 1)
	if x >= base.XID(m.reserved.Load()) {
		if err := m.reserveThrough(x); err != nil {
			if !sub {
				p.xid.Store(0)
			}
			return 0, err
		}
	}
	if sub {
		p.addSub(x)
	} else {
		m.procs.SetXID(p, x)
	}
	return x, nil
}

// reserveThrough zeroes and logs CLOG pages until x is covered.
func (m *Manager) reserveThrough(x base.XID) error {
	m.reserve.Lock()
	defer m.reserve.Unlock()
	for base.XID(m.reserved.Load()) <= x {
		r := base.XID(m.reserved.Load())
		page := clogPage(r)
		if err := m.clog.ZeroPage(page); err != nil {
			return err
		}
		b := appendTxnPayload(nil, infoZeroPage, txnPayload{page: page})
		// Flushed, once per 32768 xids, so that no xid is ever handed out
		// twice, even one that left no other trace before a crash.
		_, end, err := m.wal.Insert(xlog.NewRecord(RmgrTxn, infoZeroPage, 0).SetPayload(b))
		if err == nil {
			err = m.wal.Flush(end)
		}
		if err != nil {
			return fmt.Errorf("txn: log CLOG page %d: %w", page, err)
		}
		m.reserved.Store(uint64(base.XID(page+1) * xidsPerPage))
	}
	return nil
}

// Err returns nil while the engine runs, and once its Halt has stopped
// (whoever stopped it) an error matching base.ErrStopped and the cause.
func (m *Manager) Err() error { return m.halt.Err() }

// stop stops the engine because of cause and returns cause marked so that
// it matches base.ErrStopped too.
func (m *Manager) stop(cause error) error {
	m.halt.Stop(cause)
	if errors.Is(cause, base.ErrStopped) {
		return cause
	}
	return fmt.Errorf("%w: %w", base.ErrStopped, cause)
}

// Status is StatusSource.Status: the CLOG's answer.
func (m *Manager) Status(xid base.XID) (Status, error) { return m.clog.Status(xid) }

// IsDurable is StatusSource.IsDurable: whether xid's commit record has been
// flushed, so a hint bit may say it committed.
func (m *Manager) IsDurable(xid base.XID) bool { return m.clog.IsDurable(xid, m.wal.FlushedLSN()) }

// Horizon is the oldest xid any running transaction or snapshot needs.
func (m *Manager) Horizon() base.XID { return m.procs.Horizon() }

// Active is the number of transactions in progress (for commit_siblings).
func (m *Manager) Active() int { return m.procs.Active() }

// CLOG returns the commit log (for stats).
func (m *Manager) CLOG() *CLOG { return m.clog }

// Locks returns the lock manager (for stats).
func (m *Manager) Locks() *LockManager { return m.locks }

// TruncateCLOG removes CLOG segments wholly below oldest, which must be at
// or below every xid any tuple can still carry without a hint bit.
func (m *Manager) TruncateCLOG(oldest base.XID) error {
	if err := m.halt.Err(); err != nil {
		return err
	}
	b := appendTxnPayload(nil, infoTruncate, txnPayload{oldest: oldest})
	_, end, err := m.wal.Insert(xlog.NewRecord(RmgrTxn, infoTruncate, 0).SetPayload(b))
	if err != nil {
		return err
	}
	if err := m.wal.Flush(end); err != nil {
		return err
	}
	return m.clog.Truncate(oldest)
}

// Stats are the manager's counters, as pg_stat_database's xact_commit and
// xact_rollback.
type Stats struct {
	Commits, Rollbacks uint64
	Active             int
	NextXID            base.XID
	CLOG               CLOGStats
	Locks              LockStats
}

// Stats returns the manager's counters.
func (m *Manager) Stats() Stats {
	return Stats{
		Commits:   m.stats.commits.Load(),
		Rollbacks: m.stats.aborts.Load(),
		Active:    m.procs.Active(),
		NextXID:   base.XID(m.next.Load()),
		CLOG:      m.clog.Stats(),
		Locks:     m.locks.Stats(),
	}
}

// Errors of transaction control.
var (
	// ErrTxDone is returned by a transaction that has ended.
	ErrTxDone = errors.New("txn: transaction has already committed or rolled back")
	// ErrUnknownGID names a prepared transaction that does not exist.
	ErrUnknownGID = errors.New("txn: no prepared transaction with that gid")
	// ErrDuplicateGID is returned by Prepare when the gid is in use.
	ErrDuplicateGID = errors.New("txn: a prepared transaction with that gid exists")
	// ErrNoSavepoint names a savepoint that does not exist.
	ErrNoSavepoint = errors.New("txn: no such savepoint")
)

// Tx is one transaction. It is not safe for concurrent use.
type Tx struct {
	m    *Manager
	proc *Proc
	xid  base.XID // top-level xid, InvalidXID until the first write
	// levels are the open savepoints, innermost last: each has the subxid
	// of its writes (InvalidXID until it writes) and the number of live
	// subxids when it began.
	levels []savepoint
	done   bool
	// lost is set, with done, when the flush of tx's commit or prepare
	// record failed: its outcome is unknown until recovery, it keeps its
	// xid and locks, and every later call returns lost.
	lost error
}

type savepoint struct {
	xid       base.XID
	liveStart int
}

// doneErr is what a call on an ended transaction returns.
func (tx *Tx) doneErr() error {
	if tx.lost != nil {
		return tx.lost
	}
	return ErrTxDone
}

// Begin starts a transaction. It has no xid until it first writes. Begin
// does no I/O and cannot fail; once the engine has stopped (Err), every
// call of the transaction that would write returns the stop's error, and
// the caller checks Err first to refuse new transactions.
func (m *Manager) Begin() *Tx {
	return &Tx{m: m, proc: m.procs.Join()}
}

// Snapshot fills dst with a new snapshot for tx: the reader's own xids are
// set so that its own writes are visible.
func (tx *Tx) Snapshot(dst *Snapshot) error {
	if tx.done {
		return tx.doneErr()
	}
	tx.m.procs.TakeSnapshot(dst, tx.proc)
	dst.Cur = tx.xid
	dst.Subs = append(dst.Subs[:0], tx.proc.subs()...)
	slices.Sort(dst.Subs)
	return nil
}

// SetOwn refreshes the reader's own xids in s (Cur and Subs): a snapshot
// kept for the whole transaction must learn the xids the transaction got
// after taking it, or its own later writes would be invisible to it.
func (tx *Tx) SetOwn(s *Snapshot) {
	s.Cur = tx.xid
	s.Subs = append(s.Subs[:0], tx.proc.subs()...)
}

// XID returns tx's top-level xid, or InvalidXID if it has not written.
func (tx *Tx) XID() base.XID { return tx.xid }

// WriteXID returns the xid to stamp on tx's writes: that of the innermost
// savepoint, or the top-level one, assigning them on first use (the parent
// before the child, so a subtransaction's xid is always the larger). Once
// the engine has stopped it returns the stop's error: nothing may be
// written any more.
func (tx *Tx) WriteXID() (base.XID, error) {
	if tx.done {
		return 0, tx.doneErr()
	}
	if err := tx.m.halt.Err(); err != nil {
		return 0, err
	}
	if tx.xid == base.InvalidXID {
		x, err := tx.m.allocXID(tx.proc, false)
		if err != nil {
			return 0, err
		}
		tx.xid = x
		tx.m.locks.Acquire(x)
	}
	if len(tx.levels) == 0 {
		return tx.xid, nil
	}
	sp := &tx.levels[len(tx.levels)-1]
	if sp.xid == base.InvalidXID {
		x, err := tx.m.allocXID(tx.proc, true)
		if err != nil {
			return 0, err
		}
		sp.xid = x
		tx.m.locks.AcquireSub(x, tx.xid)
	}
	return sp.xid, nil
}

// Wait blocks until the transaction holding xid ends (or, for a
// subtransaction xid, rolls back). It returns at once if holder holds no
// lock (it has ended, or never began). It returns ErrDeadlock if waiting
// would deadlock, ErrLockTimeout after Config.LockTimeout, the context's
// error if ctx is done first, and the engine's stop error (base.ErrStopped)
// if the engine stops, or has stopped.
//
// When it returns nil, holder's outcome is in the CLOG (it records it
// before it lets go of its locks), so the caller's next look at the row
// makes progress. If the CLOG still says holder is running although it
// holds no lock, holder can never end: Wait reports that as corruption
// rather than let the caller's loop spin on it for ever.
func (tx *Tx) Wait(ctx context.Context, holder base.XID) error {
	if tx.done {
		return tx.doneErr()
	}
	m := tx.m
	if err := m.halt.Err(); err != nil {
		return fmt.Errorf("txn: waiting for xid %d: %w", holder, err)
	}
	waiter := tx.xid
	if waiter == base.InvalidXID {
		// A transaction that has not written can be waited for by nobody,
		// so it cannot be on a cycle; it still needs a name in the graph.
		if _, err := tx.WriteXID(); err != nil {
			return err
		}
		waiter = tx.xid
	}
	if err := m.locks.Wait(ctx, waiter, holder); err != nil {
		return err
	}
	// The holder may have ended by stopping the engine (rule 3 of the
	// fatal state), with no outcome in the CLOG.
	if err := m.halt.Err(); err != nil {
		return fmt.Errorf("txn: waiting for xid %d: %w", holder, err)
	}
	st, err := m.clog.Status(holder)
	if err != nil {
		return fmt.Errorf("txn: status of xid %d after waiting for it: %w", holder, err)
	}
	if st == InProgress || st == SubCommitted {
		return base.CorruptionErrorf("txn: xid %d holds no lock but the CLOG says it is %v: it can never end", holder, st)
	}
	return nil
}

// Savepoint opens a savepoint and returns its depth (1 for the first).
func (tx *Tx) Savepoint() (int, error) {
	if tx.done {
		return 0, tx.doneErr()
	}
	tx.levels = append(tx.levels, savepoint{liveStart: len(tx.proc.subs())})
	return len(tx.levels), nil
}

// ReleaseSavepoint closes savepoint depth and every one inside it, keeping
// their writes as part of the enclosing level.
func (tx *Tx) ReleaseSavepoint(depth int) error {
	if tx.done {
		return tx.doneErr()
	}
	if depth < 1 || depth > len(tx.levels) {
		return ErrNoSavepoint
	}
	tx.levels = tx.levels[:depth-1]
	return nil
}

// RollbackToSavepoint undoes every write made since savepoint depth was
// opened: the subtransaction xids used since then are marked aborted, their
// locks released, and the savepoint stays open (empty) as in SQL.
func (tx *Tx) RollbackToSavepoint(depth int) error {
	if tx.done {
		return tx.doneErr()
	}
	if err := tx.m.halt.Err(); err != nil {
		return err // the caller rolls the whole transaction back
	}
	if depth < 1 || depth > len(tx.levels) {
		return ErrNoSavepoint
	}
	live := tx.proc.subs()
	start := tx.levels[depth-1].liveStart
	gone := slices.Clone(live[start:])
	if len(gone) > 0 {
		b := appendTxnPayload(nil, infoAbortSub, txnPayload{subs: gone})
		_, end, err := tx.m.wal.Insert(xlog.NewRecord(RmgrTxn, infoAbortSub, tx.xid).SetPayload(b))
		if err != nil {
			return err
		}
		if err := tx.m.clog.SetStatus(gone, Aborted, end); err != nil {
			return err
		}
		tx.proc.setSubs(live[:start])
		for _, x := range gone {
			tx.m.locks.Release(x)
		}
	}
	tx.levels = tx.levels[:depth]
	tx.levels[depth-1] = savepoint{liveStart: start}
	return nil
}

// Commit makes tx's writes visible to later snapshots. With the WAL's
// synchronous commit on, it returns once the commit record is durable
// (group commit). A transaction that wrote nothing just ends.
//
// If the engine has stopped, Commit rolls tx back and returns the stop's
// error. If the commit record cannot be inserted, tx aborts. If it was
// inserted but its flush fails, the outcome is unknown (the record may be
// on disk): Commit stops the engine, which releases every waiter, and
// returns an error matching base.ErrStopped and the cause; tx keeps its
// xid, unmarked in the CLOG, and its locks, for recovery to decide.
func (tx *Tx) Commit() error {
	if tx.done {
		return tx.doneErr()
	}
	m := tx.m
	if err := m.halt.Err(); err != nil {
		tx.Rollback() // in memory only, and never fails to end tx
		return fmt.Errorf("txn: commit of xid %d: %w", tx.xid, err)
	}
	tx.done = true
	if tx.xid == base.InvalidXID {
		m.procs.Leave(tx.proc)
		m.stats.commits.Add(1)
		return nil
	}
	b := appendTxnPayload(nil, infoCommit, txnPayload{subs: tx.proc.subs()})
	m.ckptDelay.RLock()
	defer m.ckptDelay.RUnlock()
	_, end, err := m.wal.Insert(xlog.NewRecord(RmgrTxn, infoCommit, tx.xid).SetPayload(b))
	if err != nil {
		// No whole record is in the log: the transaction aborted.
		tx.end(Aborted, 0)
		return fmt.Errorf("txn: commit of xid %d: %w", tx.xid, err)
	}
	if err := m.wal.FlushCommit(end); err != nil {
		return tx.loseOutcome("commit", err)
	}
	if err := tx.end(Committed, end); err != nil {
		return err
	}
	m.stats.commits.Add(1)
	return nil
}

// loseOutcome handles the failed flush of tx's commit or prepare record:
// the record may be durable, so tx may not be marked aborted, and its
// locks stay held; the engine stops, which releases their waiters, and
// recovery decides. tx is done; every later call returns the error.
func (tx *Tx) loseOutcome(what string, cause error) error {
	tx.done = true
	tx.lost = tx.m.stop(fmt.Errorf("txn: %s of xid %d, outcome unknown until recovery: flush of its record: %w", what, tx.xid, cause))
	return tx.lost
}

// Rollback ends tx, discarding its writes. It always ends tx, releasing
// its locks; once the engine has stopped it does so in memory only
// (recovery aborts whatever never finished).
func (tx *Tx) Rollback() error {
	if tx.done {
		return tx.doneErr()
	}
	tx.done = true
	m := tx.m
	m.stats.aborts.Add(1)
	if tx.xid == base.InvalidXID {
		m.procs.Leave(tx.proc)
		return nil
	}
	var end base.LSN
	if m.halt.Err() == nil {
		b := appendTxnPayload(nil, infoAbort, txnPayload{subs: tx.proc.subs()})
		if _, e, err := m.wal.Insert(xlog.NewRecord(RmgrTxn, infoAbort, tx.xid).SetPayload(b)); err == nil {
			end = e
		} // else recovery will find it unfinished and abort it
	}
	return tx.end(Aborted, end)
}

// testHookBeforeEndXID, when set by a test, runs in end between the CLOG
// update and leaving the ProcArray.
var testHookBeforeEndXID func(xid base.XID)

// end records st for tx's xids in the CLOG, leaves the ProcArray (in that
// order: a snapshot that no longer lists the xid must find its outcome) and
// releases the locks, waking waiters. If the CLOG cannot record the
// outcome the engine stops (PostgreSQL's critical section): the xid ends
// with no outcome in memory, which only recovery can give it, and the
// stop's error is what its waiters get.
func (tx *Tx) end(st Status, lsn base.LSN) error {
	m := tx.m
	subs := tx.proc.subs()
	xids := append(slices.Clone(subs), tx.xid)
	err := m.clog.SetStatus(xids, st, lsn)
	if err != nil {
		err = m.stop(fmt.Errorf("txn: record outcome %v of xid %d in the CLOG: %w", st, tx.xid, err))
	}
	if testHookBeforeEndXID != nil {
		testHookBeforeEndXID(tx.xid)
	}
	tx.proc.setSubs(nil)
	m.procs.EndXID(tx.proc, tx.xid)
	m.procs.Leave(tx.proc)
	for _, x := range xids {
		m.locks.Release(x)
	}
	return err
}

// Prepare turns tx into a prepared transaction named gid (the first phase
// of two-phase commit): its outcome is decided later by CommitPrepared or
// RollbackPrepared, from any session, and survives a crash until then. tx
// itself is over when Prepare returns. If the prepare record's flush
// fails, the outcome is unknown, as for Commit: the engine stops and tx
// keeps its locks.
func (tx *Tx) Prepare(gid string) error {
	if tx.done {
		return tx.doneErr()
	}
	m := tx.m
	if err := m.halt.Err(); err != nil {
		return err
	}
	if len(gid) == 0 || len(gid) > maxGIDLen {
		return fmt.Errorf("txn: gid must be 1 to %d bytes, got %d", maxGIDLen, len(gid))
	}
	if _, err := tx.WriteXID(); err != nil { // a prepared transaction has an xid
		return err
	}
	subs := slices.Clone(tx.proc.subs())
	m.prepMu.Lock()
	if _, dup := m.prepared[gid]; dup {
		m.prepMu.Unlock()
		return ErrDuplicateGID
	}
	// Registered before the record is written, so a checkpoint that runs
	// meanwhile lists it (recovery ignores the duplicate).
	p := &preparedTx{gid: gid, proc: tx.proc, xid: tx.xid, subs: subs}
	m.prepared[gid] = p
	m.prepMu.Unlock()

	b := appendTxnPayload(nil, infoPrepare, txnPayload{gid: gid, subs: subs})
	_, end, err := m.wal.Insert(xlog.NewRecord(RmgrTxn, infoPrepare, tx.xid).SetPayload(b))
	if err != nil {
		m.prepMu.Lock()
		delete(m.prepared, gid)
		m.prepMu.Unlock()
		return fmt.Errorf("txn: prepare %q: %w", gid, err)
	}
	if err := m.wal.Flush(end); err != nil {
		// It may be prepared on disk: leave it registered (nothing can
		// finish it now the engine stops), holding its locks.
		return tx.loseOutcome(fmt.Sprintf("prepare %q", gid), err)
	}
	tx.done = true
	return nil
}

// CommitPrepared commits the prepared transaction gid.
func (m *Manager) CommitPrepared(gid string) error { return m.finishPrepared(gid, Committed) }

// RollbackPrepared rolls back the prepared transaction gid.
func (m *Manager) RollbackPrepared(gid string) error { return m.finishPrepared(gid, Aborted) }

// finishPrepared logs the decision on gid and ends it. If the decision's
// flush fails its outcome is unknown: the engine stops, and gid stays
// prepared, holding its locks, for recovery to decide.
func (m *Manager) finishPrepared(gid string, st Status) error {
	if err := m.halt.Err(); err != nil {
		return fmt.Errorf("txn: finish prepared %q: %w", gid, err)
	}
	m.prepMu.Lock()
	p, ok := m.prepared[gid]
	if ok {
		delete(m.prepared, gid)
	}
	m.prepMu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownGID, gid)
	}
	restore := func() {
		m.prepMu.Lock()
		m.prepared[gid] = p
		m.prepMu.Unlock()
	}
	info := infoCommitPrepared
	if st == Aborted {
		info = infoAbortPrepared
	}
	b := appendTxnPayload(nil, info, txnPayload{gid: gid, subs: p.subs})
	m.ckptDelay.RLock()
	defer m.ckptDelay.RUnlock()
	_, end, err := m.wal.Insert(xlog.NewRecord(RmgrTxn, info, p.xid).SetPayload(b))
	if err != nil {
		restore()
		return fmt.Errorf("txn: finish prepared %q: %w", gid, err)
	}
	if err := m.wal.Flush(end); err != nil {
		restore()
		return m.stop(fmt.Errorf("txn: finish prepared %q (xid %d), outcome unknown until recovery: flush of its record: %w", gid, p.xid, err))
	}
	tx := &Tx{m: m, proc: p.proc, xid: p.xid}
	if st == Committed {
		m.stats.commits.Add(1)
	} else {
		m.stats.aborts.Add(1)
	}
	return tx.end(st, end)
}

// Prepared lists the gids of the prepared transactions.
func (m *Manager) Prepared() []string {
	m.prepMu.Lock()
	defer m.prepMu.Unlock()
	return slices.Sorted(maps.Keys(m.prepared))
}
