package txn

import (
	"errors"
	"fmt"
	"log/slog"
	"path"
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
)

// Defaults and limits of Config, each declared once: kv's settings table
// shows and checks these, and a zero Config field means the default.
const (
	// CLOGPageSize is the size of one CLOG page, the unit of
	// transaction_buffers.
	CLOGPageSize       = clogPageSize
	DefaultCLOGBuffers = 128 // pages: 1 MiB
	MinCLOGBuffers     = 2
	// DefaultLockTimeout is lock_timeout's default: no limit.
	DefaultLockTimeout = 0
)

// Config configures a Manager. Zero fields take the defaults noted.
type Config struct {
	// CLOGBuffers is the number of CLOG pages cached (transaction_buffers),
	// at least MinCLOGBuffers. Default DefaultCLOGBuffers.
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

// NewManager opens the CLOG in dir/clog and registers the manager's redo
// and checkpoint hook with wal. Call it before wal.Recover, then call
// Recovered with Recover's result before beginning transactions.
func NewManager(fsys vfs.FS, dir string, wal *xlog.Log, cfg Config) (*Manager, error) {
	if cfg.CLOGBuffers == 0 {
		cfg.CLOGBuffers = DefaultCLOGBuffers
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
