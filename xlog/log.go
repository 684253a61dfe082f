package xlog

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"path"
	"sync"
	"sync/atomic"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/vfs"
)

const (
	stateOpen       = 1 // opened, Recover not yet run
	stateRecovered  = 2 // accepting inserts
	stateClosed     = 3
	stateRecovering = 4 // Recover is replaying
)

// Log is the write-ahead log of one data directory.
//
// Lock order (a goroutine holding one may take only those below it):
//
//	ckptMu          serialises checkpoints, Recover and Close
//	insertSlot.own  one WAL insertion slot, held by an inserter for a whole insertion
//	flushMu         group-commit rendezvous (never held across I/O or another lock)
//	writeMu         WALWriteLock: writing ring bytes to segments, fsync
//	ctlMu           the control file: its copy in memory and every write of it
//	segMu           creating, recycling and removing segment files
//	insertMu        space reservation (leaf)
//	insertSlot.mu   wait/broadcast of one slot's progress (leaf)
//	regMu           resource manager and hook registries (leaf)
//
// waitInsertions blocks on other inserters' progress and is never called
// with writeMu held, because an inserter may need writeMu to make room in
// the ring before it can progress.
type Log struct {
	fs      vfs.FS
	dir     string
	walDir  string
	cfg     Config
	segSize int64
	// ckptDistance is the WAL volume after the redo point that requests a
	// checkpoint: MaxWALSize / (1 + checkpoint_completion_target).
	ckptDistance int64

	// ring holds the WAL buffers. Bytes of LSN x live at ring[x % len(ring)].
	// An inserter may write the bytes of x only while x < written+len(ring),
	// and writeLocked reads the bytes of [written, finishedUpto). Both are
	// ordered through the atomics written and insertingAt.
	ring  []byte
	slots [numInsertSlots]insertSlot
	// nextSlot spreads inserters over the slots.
	nextSlot atomic.Uint32

	insertMu struct {
		sync.Mutex
		cur  base.LSN // CurrBytePos: where the next record will start
		prev base.LSN // PrevBytePos: start of the last reserved record
		redo base.LSN // RedoRecPtr: set by a checkpoint, checked by inserters
	}
	redoLSN   atomic.Uint64 // copy of insertMu.redo for lock-free reads
	insertLSN atomic.Uint64 // copy of insertMu.cur for lock-free reads
	written   atomic.Uint64 // LogwrtResult.Write; advanced under writeMu
	flushed   atomic.Uint64 // LogwrtResult.Flush; advanced under writeMu (equals written: writes are synced at once)
	asyncLSN  atomic.Uint64 // highest asynchronous commit waiting for the WAL writer
	// activeTxns counts the transactions in progress for commit_siblings
	// (SetActiveTransactions); nil until set.
	activeTxns atomic.Pointer[func() int]
	replayed   atomic.Uint64 // during recovery: end of the record being replayed

	writeMu struct {
		sync.Mutex
		cur    vfs.File // segment being written, nil if none is open
		curSeg int64    // its number
	}

	segMu sync.Mutex

	// flushMu guards the group-commit rendezvous: at most one Flush writes
	// at a time; the others wait on done and are all woken together when
	// it closes, instead of being handed writeMu one at a time.
	flushMu struct {
		sync.Mutex
		busy bool          // a flusher is at work
		done chan struct{} // closed when it finishes
	}

	failed  atomic.Pointer[error] // the first write or fsync failure; stops the log
	state   atomic.Int32
	closing atomic.Bool // set by the first Close or Abandon

	ckptMu  sync.Mutex
	pages   Pages    // set by Recover; read by checkpoints under ckptMu
	lastCkp base.LSN // end of the last checkpoint record; guarded by ckptMu

	// ctlMu guards the control file. It is held across the file's
	// replacement and nothing is taken under it, so the flusher (holding
	// writeMu) may take it to raise MustReach.
	ctlMu struct {
		sync.Mutex
		data ControlData // the control file as last written (or read)
	}
	// reach is ctlMu.data.MustReach as last made durable, for lock-free
	// reads by the flusher (see raiseReachLocked).
	reach atomic.Uint64

	regMu sync.Mutex
	rmgrs [256]*rmgr
	hooks []checkpointHook

	ckptRequest chan struct{} // wakes the checkpointer; capacity 1
	ckptForce   atomic.Bool   // the next checkpoint runs even if idle
	precreate   chan int64    // segment the WAL writer should create; capacity 1
	walWake     chan struct{} // asks the WAL writer to flush now; capacity 1
	reachWake   chan struct{} // asks the WAL writer to raise MustReach; capacity 1
	stop        chan struct{} // closed by Close or Abandon
	wg          sync.WaitGroup

	stats counters
}

// Open opens the WAL of data directory dir (its control file DIR/control and
// segments DIR/wal/), creating both if the control file does not exist, and
// starts the WAL writer and the checkpointer. The log accepts inserts only
// after Recover.
//
// A directory without a control file is initialised from scratch: any
// segments already in DIR/wal are left over from an initialisation that
// crashed before its control file was written, and are overwritten.
func Open(fsys vfs.FS, dir string, cfg Config) (*Log, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	l := &Log{
		fs:          fsys,
		dir:         dir,
		walDir:      path.Join(dir, "wal"),
		cfg:         cfg,
		ring:        make([]byte, cfg.WALBuffers),
		ckptRequest: make(chan struct{}, 1),
		precreate:   make(chan int64, 1),
		walWake:     make(chan struct{}, 1),
		reachWake:   make(chan struct{}, 1),
		stop:        make(chan struct{}),
	}
	l.ckptDistance = int64(float64(cfg.MaxWALSize) / 1.9)
	for i := range l.slots {
		l.slots[i].cond.L = &l.slots[i].mu
	}
	if err := fsys.MkdirAll(l.walDir); err != nil {
		return nil, fmt.Errorf("xlog: create %s: %w", l.walDir, err)
	}
	l.rmgrs[RmgrXLOG] = &rmgr{name: "XLOG", redo: xlogRedo}

	data, err := vfs.ReadFile(fsys, l.controlPath())
	switch {
	case vfs.IsNotExist(err):
		if err := l.bootstrap(); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, fmt.Errorf("xlog: read control file: %w", err)
	default:
		ctl, err := DecodeControl(data)
		if err != nil {
			return nil, fmt.Errorf("xlog: %s: %w", l.controlPath(), err)
		}
		if cfg.SegmentSize != 0 && cfg.SegmentSize != ctl.SegmentSize {
			return nil, fmt.Errorf("xlog: SegmentSize %d, but %s was created with %d: %w",
				cfg.SegmentSize, dir, ctl.SegmentSize, ErrBadConfig)
		}
		l.ctlMu.data = ctl
		l.reach.Store(uint64(ctl.MustReach))
		l.segSize = ctl.SegmentSize
	}
	l.redoLSN.Store(uint64(l.ctlMu.data.Redo))
	l.state.Store(stateOpen)
	l.wg.Go(l.walWriter)
	l.wg.Go(l.checkpointer)
	return l, nil
}

func (l *Log) controlPath() string { return path.Join(l.dir, "control") }

// Control returns a copy of the control file's contents as last written.
func (l *Log) Control() ControlData {
	l.ctlMu.Lock()
	defer l.ctlMu.Unlock()
	return l.ctlMu.data
}

// bootstrap initialises a new WAL: segment 1 with a shutdown checkpoint
// record at its start, then the control file pointing at it.
func (l *Log) bootstrap() error {
	l.segSize = l.cfg.SegmentSize
	if l.segSize == 0 {
		l.segSize = DefaultSegmentSize
	}
	start := base.LSN(l.segSize) // segment 1, offset 0
	ctl := ControlData{
		SystemID:       rand.Uint64(),
		CheckPoint:     start,
		Redo:           start,
		State:          StateShutdown,
		SegmentSize:    l.segSize,
		CheckpointTime: l.cfg.Clock.Now().UnixNano(),
	}
	cp := CheckpointData{Redo: start, Time: ctl.CheckpointTime}
	var a assembled
	b := NewRecord(RmgrXLOG, InfoCheckpointShutdown, 0).SetPayload(cp.encode())
	if err := b.assemble(start, false, CompressionNone, &a); err != nil {
		return err
	}
	a.finish(0)
	ctl.MustReach = start + base.LSN(len(a.buf))
	// Any segment left by an earlier attempt goes: its contents mean
	// nothing without a control file.
	segs, err := listSegments(l.fs, l.walDir)
	if err != nil {
		return fmt.Errorf("xlog: bootstrap: %w", err)
	}
	for _, s := range segs {
		if err := l.fs.Remove(l.segmentPath(s)); err != nil {
			return fmt.Errorf("xlog: bootstrap: %w", err)
		}
	}
	if err := l.ensureSegment(1); err != nil {
		return fmt.Errorf("xlog: bootstrap: %w", err)
	}
	f, err := l.fs.Open(l.segmentPath(1))
	if err != nil {
		return fmt.Errorf("xlog: bootstrap: %w", err)
	}
	_, err = f.WriteAt(a.buf, 0)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("xlog: bootstrap: write first checkpoint: %w", err)
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		return fmt.Errorf("xlog: bootstrap: %w", err)
	}
	if err := vfs.WriteFileAtomic(l.fs, l.controlPath(), ctl.Encode()); err != nil {
		return fmt.Errorf("xlog: bootstrap: write control file: %w", err)
	}
	l.ctlMu.data = ctl
	l.reach.Store(uint64(ctl.MustReach))
	l.cfg.Logger.Info("xlog: initialised WAL", "dir", l.dir, "system_id", ctl.SystemID, "segment_size", l.segSize)
	return nil
}

// SegmentSize returns the segment size of the log.
func (l *Log) SegmentSize() int64 { return l.segSize }

// Close stops the WAL writer and the checkpointer and, if the log was
// recovered and has not stopped, writes a shutdown checkpoint, so that the
// next Open finds the control file in state shut down. If the log (or, through
// Config.Halt, the engine) has stopped, Close only releases the log and
// returns the error it stopped with: the next Open recovers from the WAL.
// Inserts must have stopped; every call after Close returns ErrClosed.
func (l *Log) Close() error { return l.shutdown(true) }

// Abandon releases the log's goroutines and files without writing a
// shutdown checkpoint or touching the control file, as if the process had
// died at this point: the next Open runs crash recovery. It is for a caller
// that cannot vouch for the state a checkpoint would record (an Open that
// failed after replay, an engine that has stopped). Every call after it
// returns ErrClosed.
func (l *Log) Abandon() error { return l.shutdown(false) }

func (l *Log) shutdown(checkpoint bool) error {
	if !l.closing.CompareAndSwap(false, true) {
		return ErrClosed
	}
	close(l.stop)
	l.wg.Wait()

	var err error
	if checkpoint && l.state.Load() == stateRecovered {
		if err = l.stopped(); err == nil {
			err = l.checkpoint(checkpointShutdown)
		}
	}
	l.ckptMu.Lock()
	l.state.Store(stateClosed)
	l.ckptMu.Unlock()
	l.writeMu.Lock()
	if l.writeMu.cur != nil {
		l.writeMu.cur.Close()
		l.writeMu.cur = nil
	}
	l.writeMu.Unlock()
	return err
}

// flushAsync is the WAL writer's flush of asynchronous commits.
func (l *Log) flushAsync() {
	if l.state.Load() != stateRecovered || l.stopped() != nil {
		return
	}
	if async := base.LSN(l.asyncLSN.Load()); async > l.FlushedLSN() {
		if err := l.Flush(async); err != nil && !errors.Is(err, ErrClosed) {
			l.cfg.Logger.Error("xlog: WAL writer flush failed", "err", err)
		}
	}
}

// walWriter is PostgreSQL's WAL writer: every WALWriterDelay it flushes the
// asynchronous commits noted by FlushCommit/SetAsyncLSN; it creates the next
// segment ahead of the writer when asked; and when a flush fills a segment it
// raises MustReach in the control file to what is flushed, so that the
// flusher seldom has to (see writeLocked). Once the log or the engine has
// stopped it does no more I/O.
func (l *Log) walWriter() {
	for {
		select {
		case <-l.stop:
			return
		case seg := <-l.precreate:
			if l.stopped() != nil {
				continue
			}
			if err := l.ensureSegmentAhead(seg); err != nil {
				l.cfg.Logger.Warn("xlog: could not create segment ahead", "segment", segmentName(seg), "err", err)
			}
		case <-l.reachWake:
			if l.state.Load() != stateRecovered || l.stopped() != nil {
				continue
			}
			l.ctlMu.Lock()
			err := l.raiseReachLocked(base.LSN(l.flushed.Load()))
			l.ctlMu.Unlock()
			if err != nil {
				l.cfg.Logger.Error("xlog: WAL writer could not raise must-reach", "err", err)
			}
		case <-l.walWake:
			l.flushAsync()
		case <-l.cfg.Clock.After(l.cfg.WALWriterDelay):
			l.flushAsync()
		}
	}
}

// checkpointer runs a checkpoint every CheckpointTimeout, or sooner when one
// is requested (RequestCheckpoint, or the WAL passed its share of
// MaxWALSize).
func (l *Log) checkpointer() {
	for {
		select {
		case <-l.stop:
			return
		case <-l.ckptRequest:
		case <-l.cfg.Clock.After(l.cfg.CheckpointTimeout):
		}
		if l.state.Load() != stateRecovered || l.stopped() != nil {
			continue
		}
		kind := checkpointTimed
		if l.ckptForce.Swap(false) {
			kind = checkpointForced
		}
		if err := l.checkpoint(kind); err != nil && !errors.Is(err, ErrClosed) {
			l.cfg.Logger.Error("xlog: checkpoint failed", "err", err)
		}
	}
}

// RequestCheckpoint asks the checkpointer to run a checkpoint soon, even if
// nothing was logged since the last one, and returns at once.
func (l *Log) RequestCheckpoint() {
	l.ckptForce.Store(true)
	l.requestCheckpoint()
}

// requestCheckpoint wakes the checkpointer; an idle log skips the
// checkpoint.
func (l *Log) requestCheckpoint() {
	select {
	case l.ckptRequest <- struct{}{}:
	default:
	}
}
