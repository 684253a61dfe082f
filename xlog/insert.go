package xlog

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heapkv/heapkv/internal/base"
)

// numInsertSlots is PostgreSQL's NUM_XLOGINSERT_LOCKS: how many inserters
// may copy records into the WAL buffers at once.
const numInsertSlots = 8

// insertSlot is one WAL insertion lock. The inserter owning it publishes in
// insertingAt how far it has copied: every byte it reserved below that
// position is in the ring. Zero means the slot is not inserting anything.
type insertSlot struct {
	own sync.Mutex // held by the inserter for the whole insertion

	insertingAt atomic.Uint64
	waiters     atomic.Int32 // goroutines blocked in waitProgress
	mu          sync.Mutex   // guards nothing but cond's wait/broadcast
	cond        sync.Cond    // signalled when insertingAt changes and waiters > 0
	_           [24]byte     // keep slots on separate cache lines
}

// publish stores a new insertingAt and wakes anyone waiting on the slot.
func (s *insertSlot) publish(v base.LSN) {
	s.insertingAt.Store(uint64(v))
	if s.waiters.Load() > 0 {
		s.mu.Lock()
		s.cond.Broadcast()
		s.mu.Unlock()
	}
}

// waitProgress blocks until the slot is free or its inserter has copied
// everything below upto, and returns the slot's insertingAt then (0: free).
// The waiters counter and the atomic store in publish form a Dekker pair
// (both sequentially consistent): either publish sees the waiter and
// broadcasts under mu, or the waiter sees the new value.
func (s *insertSlot) waitProgress(upto base.LSN) base.LSN {
	v := base.LSN(s.insertingAt.Load())
	if v == 0 || v >= upto {
		return v
	}
	s.mu.Lock()
	s.waiters.Add(1)
	for {
		v = base.LSN(s.insertingAt.Load())
		if v == 0 || v >= upto {
			break
		}
		s.cond.Wait()
	}
	s.waiters.Add(-1)
	s.mu.Unlock()
	return v
}

// Insert appends the record b describes and returns where it starts and
// ends. The end LSN is what the caller stamps on every page the record
// changed, and what it passes to Flush to make the record durable.
//
// Insert follows PostgreSQL's XLogInsert: assemble the record against the
// current redo pointer (outside any lock), take an insertion slot, reserve
// space and the prev link under the short insertMu critical section, re-check
// the redo pointer there (a checkpoint may have begun since the record was
// assembled: then retry with full-page images), and copy the record into the
// ring concurrently with other inserters.
func (l *Log) Insert(b *RecordBuilder) (start, end base.LSN, err error) {
	if err := l.usable(); err != nil {
		return 0, 0, err
	}
	fpw := l.cfg.FullPageWrites == base.On
	var a assembled
	for {
		redo := base.LSN(l.redoLSN.Load())
		if err := b.assemble(redo, fpw, l.cfg.WALCompression, &a); err != nil {
			return 0, 0, err
		}
		start, end, ok, err := l.insertAssembled(&a, fpw)
		if err != nil {
			return 0, 0, err
		}
		if ok {
			l.stats.records.Add(1)
			l.stats.fpis.Add(uint64(a.fpis))
			l.stats.bytes.Add(uint64(len(a.buf)))
			if uint64(end)-l.redoLSN.Load() >= uint64(l.ckptDistance) {
				l.requestCheckpoint()
			}
			return start, end, nil
		}
		// A checkpoint moved the redo pointer past a page we meant to log
		// without an image; assemble again.
	}
}

// insertAssembled reserves space for a and copies it into the ring. ok is
// false when the redo pointer moved past a.fpwLSN and the record must be
// assembled again.
func (l *Log) insertAssembled(a *assembled, fpw bool) (start, end base.LSN, ok bool, err error) {
	slot := &l.slots[l.nextSlot.Add(1)%numInsertSlots]
	slot.own.Lock()
	defer slot.own.Unlock()

	size := base.LSN(len(a.buf))
	l.insertMu.Lock()
	if fpw && a.fpwLSN != 0 && a.fpwLSN <= l.insertMu.redo {
		l.insertMu.Unlock()
		return 0, 0, false, nil
	}
	start = l.insertMu.cur
	end = start + size
	prev := l.insertMu.prev
	l.insertMu.cur = end
	l.insertMu.prev = start
	slot.insertingAt.Store(uint64(start)) // no waiter can be interested yet
	l.insertLSN.Store(uint64(end))
	l.insertMu.Unlock()

	a.finish(prev)
	err = l.copyToRing(slot, start, a.buf)
	slot.publish(0)
	if err != nil {
		return 0, 0, false, err
	}
	return start, end, true, nil
}

// copyToRing copies data, reserved at start, into the ring. When the ring has
// no room (the bytes a ring's length back are not written out yet) the
// inserter writes the oldest part out itself, after publishing how far it
// got so that the write does not wait for it (wal_buffers_full).
func (l *Log) copyToRing(slot *insertSlot, start base.LSN, data []byte) error {
	pos := start
	ringSize := base.LSN(len(l.ring))
	for len(data) > 0 {
		written := base.LSN(l.written.Load())
		avail := int64(written) + int64(ringSize) - int64(pos)
		n := int64(len(data))
		n = min(n, avail, int64(ringSize-pos%ringSize))
		if n < int64(len(data)) {
			n &^= recAlign - 1 // keep published positions 8-aligned
		}
		if n <= 0 {
			slot.publish(pos)
			want := min(int64(len(data)), int64(ringSize)/2)
			target := pos + base.LSN(want) - ringSize
			l.stats.buffersFull.Add(1)
			if err := l.writeOut(target); err != nil {
				return err
			}
			continue
		}
		off := pos % ringSize
		copy(l.ring[off:off+base.LSN(n)], data[:n])
		data = data[n:]
		pos += base.LSN(n)
	}
	return nil
}

// reservedLSN returns the end of everything reserved so far.
func (l *Log) reservedLSN() base.LSN {
	l.insertMu.Lock()
	defer l.insertMu.Unlock()
	return l.insertMu.cur
}

// waitInsertions is WaitXLogInsertionsToFinish: it waits until every
// insertion below upto is copied into the ring, and returns the position
// below which everything is copied (at least upto, capped at the reserved
// end). It must not be called with writeMu held: an inserter may need
// writeMu to make room before it can progress.
func (l *Log) waitInsertions(upto base.LSN) base.LSN {
	reserved := l.reservedLSN()
	upto = min(upto, reserved)
	finished := reserved
	for i := range l.slots {
		v := l.slots[i].waitProgress(upto)
		if v != 0 && v < finished {
			finished = v
		}
	}
	return finished
}

// finishedUpto returns, without waiting, the position below which every
// reserved byte is copied into the ring. Inserters that reserved after
// reservedLSN was read have insertingAt at or above it, so they do not lower
// the result; inserters that reserved before published their start under
// insertMu, which reservedLSN also took.
func (l *Log) finishedUpto() base.LSN {
	finished := l.reservedLSN()
	for i := range l.slots {
		v := base.LSN(l.slots[i].insertingAt.Load())
		if v != 0 && v < finished {
			finished = v
		}
	}
	return finished
}

// writeOut makes sure everything below target has been written out of the
// ring, for an inserter that needs ring space.
func (l *Log) writeOut(target base.LSN) error {
	if base.LSN(l.written.Load()) >= target {
		return nil
	}
	if err := l.stopped(); err != nil {
		return err
	}
	l.waitInsertions(target)
	return l.writeFinished(&l.written, target)
}

// writeFinished takes writeMu and writes out (and syncs) every insertion
// finished so far, unless the log has stopped or mark (written or flushed)
// has reached target meanwhile: another writer did the work.
func (l *Log) writeFinished(mark *atomic.Uint64, target base.LSN) error {
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	if err := l.stopped(); err != nil {
		return err
	}
	if base.LSN(mark.Load()) >= target {
		return nil
	}
	return l.writeLocked(l.finishedUpto())
}

// Flush makes the log durable up to lsn (group commit). It returns at once
// if that is already so. Otherwise it waits for the insertions below lsn to
// finish; then, if another Flush is writing, it waits for that one to end
// (woken together with every other waiter) and looks again; if none is, it
// becomes the flusher and writes and fsyncs everything copied so far, so
// that every commit inserted meanwhile rides on its fsync. With CommitDelay
// set, the flusher first sleeps so that more commits can join, if at least
// CommitSiblings transactions are active.
//
// Once the log or the engine has stopped (see Config.Halt), Flush returns the
// error it stopped with, even for an LSN already durable, and does no I/O;
// every Flush waiting for the leader is released with that error.
func (l *Log) Flush(lsn base.LSN) error {
	if base.LSN(l.flushed.Load()) >= lsn {
		return l.stopped()
	}
	if l.state.Load() == stateRecovering {
		if err := l.stopped(); err != nil {
			return err
		}
		// Recovery synced the WAL it replays before it began, so pages
		// stamped by redo may be written freely.
		if lsn <= base.LSN(l.replayed.Load()) {
			return nil
		}
		return fmt.Errorf("xlog: flush to %s during recovery, replayed to %s: %w", lsn, base.LSN(l.replayed.Load()), ErrNotRecovered)
	}
	if err := l.usable(); err != nil {
		return err
	}
	if reserved := l.reservedLSN(); lsn > reserved {
		return fmt.Errorf("xlog: flush to %s, log ends at %s: %w", lsn, reserved, ErrFlushBeyondEnd)
	}
	l.waitInsertions(lsn)
	for {
		if err := l.stopped(); err != nil {
			return err
		}
		if base.LSN(l.flushed.Load()) >= lsn {
			return nil
		}
		l.flushMu.Lock()
		if l.flushMu.busy {
			done := l.flushMu.done
			l.flushMu.Unlock()
			<-done
			continue
		}
		l.flushMu.busy = true
		l.flushMu.done = make(chan struct{})
		l.flushMu.Unlock()

		err := l.flushAsLeader(lsn)

		l.flushMu.Lock()
		l.flushMu.busy = false
		close(l.flushMu.done)
		l.flushMu.Unlock()
		return err
	}
}

// flushAsLeader is the group-commit leader's part of Flush.
func (l *Log) flushAsLeader(lsn base.LSN) error {
	if l.cfg.CommitDelay > 0 && l.siblingsActive() {
		l.cfg.Clock.Sleep(l.cfg.CommitDelay)
	}
	return l.writeFinished(&l.flushed, lsn)
}

func (l *Log) siblingsActive() bool {
	count := l.activeTxns.Load()
	if count == nil {
		return true
	}
	return (*count)() >= l.cfg.CommitSiblings
}

// SetActiveTransactions sets where the commit_siblings check gets the
// number of transactions in progress: the transaction manager's count,
// which is built after the log (it logs through it), so the owner of both
// wires them once both exist. Until then the check passes, as if enough
// siblings were always active; with commit_delay at its default of 0 it
// decides nothing.
func (l *Log) SetActiveTransactions(count func() int) { l.activeTxns.Store(&count) }

// FlushCommit is what a committing transaction calls with its commit
// record's end: with SynchronousCommit on it is Flush; with it off it only
// notes the LSN for the WAL writer, which flushes it within WALWriterDelay
// (PostgreSQL's XLogSetAsyncXactLSN).
func (l *Log) FlushCommit(lsn base.LSN) error {
	if l.cfg.SynchronousCommit == base.On {
		return l.Flush(lsn)
	}
	l.SetAsyncLSN(lsn)
	return l.stopped()
}

// walWriterFlushAfter is wal_writer_flush_after: once this much WAL of
// asynchronous commits is unflushed, the WAL writer is woken at once rather
// than at its next WALWriterDelay tick, so that hint bits can be set and
// dirty pages evicted without a flush of their own.
const walWriterFlushAfter = 1 << 20

// SetAsyncLSN asks the WAL writer to flush up to lsn soon.
func (l *Log) SetAsyncLSN(lsn base.LSN) {
	for {
		old := l.asyncLSN.Load()
		if uint64(lsn) <= old || l.asyncLSN.CompareAndSwap(old, uint64(lsn)) {
			break
		}
	}
	if uint64(lsn)-min(uint64(lsn), l.flushed.Load()) >= walWriterFlushAfter {
		select {
		case l.walWake <- struct{}{}:
		default:
		}
	}
}

// writeLocked writes the ring's bytes [written, upto) to the segment files
// and fsyncs each write before issuing the next, so that at most one WAL
// write is ever in flight (rule 6 in doc.go). upto must not pass
// finishedUpto. The caller holds writeMu.
//
// No byte of segment s is written before MustReach in the control file is
// at least the start of segment s-1 (rule 8 in doc.go). The WAL writer
// normally sees to that, asked each time a write fills a segment; when it
// has fallen behind, writeLocked raises MustReach itself.
func (l *Log) writeLocked(upto base.LSN) error {
	ringSize := base.LSN(len(l.ring))
	written := base.LSN(l.written.Load())
	for written < upto {
		seg := int64(written) / l.segSize
		off := int64(written) % l.segSize
		n := min(int64(upto-written), l.segSize-off, int64(ringSize-written%ringSize))
		if need := base.LSN((seg - 1) * l.segSize); base.LSN(l.reach.Load()) < need {
			l.ctlMu.Lock()
			err := l.raiseReachLocked(written) // all of it fsynced
			l.ctlMu.Unlock()
			if err != nil {
				return err
			}
		}
		f, err := l.segmentForWriteLocked(seg)
		if err != nil {
			return l.fail(fmt.Errorf("xlog: open segment %s: %w: %w", segmentName(seg), ErrWALWriteFailed, err))
		}
		t0 := l.cfg.Clock.Now()
		r := written % ringSize
		_, err = f.WriteAt(l.ring[r:r+base.LSN(n)], off)
		t1 := l.cfg.Clock.Now()
		l.stats.writeTime.Add(int64(t1.Sub(t0)))
		l.stats.writes.Add(1)
		if err != nil {
			return l.fail(fmt.Errorf("xlog: write %d bytes at %s to segment %s: %w: %w", n, written, segmentName(seg), ErrWALWriteFailed, err))
		}
		err = f.Sync()
		l.stats.syncTime.Add(int64(l.cfg.Clock.Now().Sub(t1)))
		l.stats.syncs.Add(1)
		if err != nil {
			return l.fail(fmt.Errorf("xlog: fsync segment %s: %w: %w", segmentName(seg), ErrWALSyncFailed, err))
		}
		written += base.LSN(n)
		l.written.Store(uint64(written))
		l.flushed.Store(uint64(written))
		if off+n == l.segSize {
			select {
			case l.reachWake <- struct{}{}:
			default:
			}
		}
	}
	return nil
}

// failure returns the error that stopped the log, or nil.
func (l *Log) failure() error {
	if p := l.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// stopped returns why the log may do no more I/O: the failure that stopped
// it, or, if another subsystem stopped the engine first, Config.Halt's
// error. nil while both run.
func (l *Log) stopped() error {
	if err := l.failure(); err != nil {
		return err
	}
	return l.cfg.Halt.Err()
}

// fail stops the log with err (the first failure wins), stops the engine
// through Config.Halt, and returns the error the log is stopped with. That
// error matches base.ErrStopped as well as err.
func (l *Log) fail(err error) error {
	if !errors.Is(err, base.ErrStopped) {
		err = fmt.Errorf("%w: %w", base.ErrStopped, err)
	}
	if l.failed.CompareAndSwap(nil, &err) {
		l.cfg.Logger.Error("xlog: WAL stopped", "err", err)
		l.cfg.Halt.Stop(err)
	}
	return *l.failed.Load()
}

// usable returns why the log cannot take inserts and flushes, or nil.
func (l *Log) usable() error {
	if err := l.stopped(); err != nil {
		return err
	}
	switch l.state.Load() {
	case stateOpen:
		return ErrNotRecovered
	case stateClosed:
		return ErrClosed
	}
	return nil
}

// Stats is a snapshot of the log's counters, as pg_stat_wal.
type Stats struct {
	Records     uint64        // wal_records
	FPI         uint64        // wal_fpi: full-page images
	Bytes       uint64        // wal_bytes, padding included
	BuffersFull uint64        // wal_buffers_full: writes forced by a full ring
	Writes      uint64        // wal_write: write calls on segments
	Syncs       uint64        // wal_sync: fsyncs of segments
	WriteTime   time.Duration // wal_write_time
	SyncTime    time.Duration // wal_sync_time
}

type counters struct {
	records, fpis, bytes, buffersFull, writes, syncs atomic.Uint64
	writeTime, syncTime                              atomic.Int64
}

// Stats returns the current counters.
func (l *Log) Stats() Stats {
	s := &l.stats
	return Stats{
		Records:     s.records.Load(),
		FPI:         s.fpis.Load(),
		Bytes:       s.bytes.Load(),
		BuffersFull: s.buffersFull.Load(),
		Writes:      s.writes.Load(),
		Syncs:       s.syncs.Load(),
		WriteTime:   time.Duration(s.writeTime.Load()),
		SyncTime:    time.Duration(s.syncTime.Load()),
	}
}

// FlushedLSN returns the position below which the log is durable.
func (l *Log) FlushedLSN() base.LSN { return base.LSN(l.flushed.Load()) }

// InsertLSN returns the end of everything reserved so far: where the next
// record will start.
func (l *Log) InsertLSN() base.LSN { return base.LSN(l.insertLSN.Load()) }

// RedoLSN returns the current redo pointer: the redo LSN of the checkpoint
// in progress or last completed. A page whose LSN is at or below it gets a
// full-page image with its next change.
func (l *Log) RedoLSN() base.LSN { return base.LSN(l.redoLSN.Load()) }
