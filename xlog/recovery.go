package xlog

import (
	"fmt"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/vfs"
	"github.com/heapkv/heapkv/pagecache"
)

// Pages is what xlog needs from the shared buffer pool.
type Pages interface {
	// LockForRedo pins and exclusively locks block blk of rel, extending the relation if needed.
	// mode is pagecache.ReadNormal or pagecache.ReadZeroAndLock; with ReadZeroAndLock the old contents need not be read
	// (a full-page image will overwrite them; the page comes back zeroed).
	// done unlocks and unpins; dirty says whether the page was changed.
	LockForRedo(rel base.RelFileNode, blk base.BlockNum, mode pagecache.ReadMode) (page []byte, done func(dirty bool), err error)
	// Checkpoint writes every dirty buffer (sorted by file and block, paced by progress) and fsyncs every file written since the last checkpoint.
	Checkpoint(progress func(done, total int)) error
}

// RedoFunc replays one record of a resource manager during recovery.
type RedoFunc func(rec *Record, ctx *RedoContext) error

type rmgr struct {
	name string
	redo RedoFunc
}

// RegisterRmgr registers the redo function of resource manager id. Id 0 is
// xlog's own. Register before Recover.
func (l *Log) RegisterRmgr(id RmgrID, name string, redo RedoFunc) error {
	l.regMu.Lock()
	defer l.regMu.Unlock()
	if l.rmgrs[id] != nil {
		return fmt.Errorf("xlog: rmgr %d (%s), already %s: %w", id, name, l.rmgrs[id].name, ErrRmgrRegistered)
	}
	l.rmgrs[id] = &rmgr{name: name, redo: redo}
	return nil
}

// RedoContext is what a redo function gets besides its record.
type RedoContext struct {
	// Pages is the buffer pool recovery runs against (nil if the caller
	// passed none; block redo then fails).
	Pages Pages
	// Checkpoint is the payload of the last checkpoint record replayed so
	// far (the one recovery started from, at first).
	Checkpoint CheckpointData
}

// RedoBlock replays block reference i of rec with PostgreSQL's rule: the
// page is changed only if its LSN is older than the record's end, and is
// then stamped with the record's end, so replaying a record twice is the
// same as replaying it once. An image is restored onto a page fetched
// without reading it (zero mode, so its LSN reads as 0: images always
// apply); otherwise apply is called with the page and the reference (nil
// apply: the generic image/delta application). It reports whether the page
// was changed.
func (c *RedoContext) RedoBlock(rec *Record, i int, apply func(page []byte, ref *BlockRef) error) (bool, error) {
	ref := &rec.Blocks[i]
	if c.Pages == nil {
		return false, fmt.Errorf("xlog: redo of %s: block reference needs Pages, recovery has none", rec.LSN)
	}
	mode := pagecache.ReadNormal
	if ref.Kind == BlockImage {
		mode = pagecache.ReadZeroAndLock
	}
	page, done, err := c.Pages.LockForRedo(ref.Rel, ref.Block, mode)
	if err != nil {
		return false, fmt.Errorf("xlog: redo of %s: rel %d block %d: %w", rec.LSN, ref.Rel, ref.Block, err)
	}
	p := pagecache.Page(page)
	if p.LSN() >= rec.End {
		done(false)
		return false, nil
	}
	if ref.Kind == BlockImage || apply == nil {
		err = ref.Apply(page)
	} else {
		err = apply(page, ref)
	}
	if err != nil {
		// Apply checks images and deltas before changing the page.
		done(false)
		return false, fmt.Errorf("xlog: redo of %s: rel %d block %d: %w", rec.LSN, ref.Rel, ref.Block, err)
	}
	p.SetLSN(rec.End)
	done(true)
	return true, nil
}

// GenericRedo replays every block reference of rec as an image or a delta.
// A resource manager whose records carry only those can register it as its
// redo function; others call RedoBlock themselves.
func GenericRedo(rec *Record, ctx *RedoContext) error {
	for i := range rec.Blocks {
		if _, err := ctx.RedoBlock(rec, i, nil); err != nil {
			return err
		}
	}
	return nil
}

func xlogRedo(rec *Record, ctx *RedoContext) error {
	switch rec.Info {
	case InfoCheckpointOnline, InfoCheckpointShutdown:
		cp, err := DecodeCheckpoint(rec.Payload)
		if err != nil {
			return err
		}
		ctx.Checkpoint = cp
		return nil
	case InfoPage:
		return GenericRedo(rec, ctx)
	case InfoNoop:
		return nil
	}
	return base.CorruptionErrorf("xlog: unknown XLOG record info %#x", rec.Info)
}

// RecoveryResult says what Recover found and did.
type RecoveryResult struct {
	// Control is the control file as Open found it.
	Control ControlData
	// Crashed is true when the control file did not say shut down.
	Crashed bool
	// Records is the number of records replayed, from Control.Redo on.
	Records int
	// End is where the log ended; the log continues there.
	End ReadEnd
	// Checkpoint is the payload of the last checkpoint record replayed.
	Checkpoint CheckpointData
}

// Recover replays the log from the control file's redo LSN to its end
// through the registered resource managers, cuts off a torn tail, and opens
// the log for inserts at the recovered end. It must run once after Open,
// before anything is inserted; pages is the buffer pool redo works on and
// that checkpoints write (nil: no buffer pool, for tools and tests).
//
// Recovery fails, with an error wrapping base.ErrCorrupt that names the LSN
// and the segment file, when the log cannot be read as far as the control
// file's MustReach says it is durable (a damaged record, a missing
// segment), when a damaged record or a missing segment is followed by
// records of the log (see Reader), or when the log ends before the
// checkpoint record the control file names. It then changes no WAL file,
// so that the evidence stays for whoever repairs the damage.
//
// The reader is bounded by rule 8 of doc.go: the log never writes into a
// segment before MustReach has reached the start of the segment before it,
// so nothing of it lies beyond the end of the segment after MustReach's.
// A control file of version 1 has no MustReach; then the look-ahead reads
// every segment file present.
func (l *Log) Recover(pages Pages) (RecoveryResult, error) {
	l.ckptMu.Lock()
	defer l.ckptMu.Unlock()
	switch l.state.Load() {
	case stateRecovered:
		return RecoveryResult{}, ErrAlreadyRecovered
	case stateClosed:
		return RecoveryResult{}, ErrClosed
	}
	if err := l.stopped(); err != nil {
		return RecoveryResult{}, fmt.Errorf("xlog: recovery: %w", err)
	}
	ctl := l.Control()
	res := RecoveryResult{Control: ctl, Crashed: ctl.State != StateShutdown}
	if res.Crashed {
		l.cfg.Logger.Warn("xlog: database was not shut down cleanly; crash recovery", "redo", ctl.Redo, "state", ctl.State)
		if err := l.updateControl(func(c *ControlData) { c.State = StateInRecovery }); err != nil {
			return res, fmt.Errorf("xlog: recovery: %w", err)
		}
	}

	// The WAL about to be replayed may sit in the OS cache only (the
	// process died, not the machine). Make it durable before redo lets the
	// buffer pool write pages that depend on it (PostgreSQL's
	// SyncDataDirectory); then a Flush during replay has nothing to do.
	if err := l.syncSegments(); err != nil {
		return res, fmt.Errorf("xlog: recovery: %w", err)
	}
	l.state.Store(stateRecovering)
	defer l.state.CompareAndSwap(stateRecovering, stateOpen) // on failure

	ctx := &RedoContext{Pages: pages}
	r := NewReader(l.fs, l.dir, l.segSize, ctl.Redo, max(ctl.MustReach, ctl.CheckPoint+1))
	if ctl.MustReach != 0 {
		r.limit = base.LSN((int64(ctl.MustReach)/l.segSize + 2) * l.segSize)
	}
	l.regMu.Lock()
	rmgrs := l.rmgrs
	l.regMu.Unlock()
	var ckptEnd base.LSN
	for r.Next() {
		rec := r.Record()
		if rec.LSN == ctl.CheckPoint {
			if rec.Rmgr != RmgrXLOG || (rec.Info != InfoCheckpointOnline && rec.Info != InfoCheckpointShutdown) {
				return res, base.CorruptionErrorf("xlog: record at %s named by the control file is not a checkpoint", rec.LSN)
			}
			ckptEnd = rec.End
		}
		l.replayed.Store(uint64(rec.End))
		rm := rmgrs[rec.Rmgr]
		if rm == nil {
			return res, fmt.Errorf("xlog: record at %s: rmgr %d: %w", rec.LSN, rec.Rmgr, ErrUnknownRmgr)
		}
		if err := rm.redo(rec, ctx); err != nil {
			return res, fmt.Errorf("xlog: redo of record at %s (rmgr %s, info %#x): %w", rec.LSN, rm.name, rec.Info, err)
		}
		res.Records++
	}
	if err := r.Err(); err != nil {
		return res, fmt.Errorf("xlog: recovery: %w", err)
	}
	end := r.End()
	res.End, res.Checkpoint = end, ctx.Checkpoint
	if ckptEnd == 0 {
		// Only a version-1 control file can get here: MustReach lies past
		// the checkpoint record.
		return res, base.CorruptionErrorf("xlog: recovery: WAL ends at %s (%s) before the checkpoint record at %s in segment %s named by the control file",
			end.LSN, end.Reason, ctl.CheckPoint, l.segmentPath(int64(ctl.CheckPoint)/l.segSize))
	}
	if end.Dropped > 0 {
		l.cfg.Logger.Warn("xlog: cut off torn WAL tail", "end", end.LSN, "reason", end.Reason, "dropped", end.Dropped)
	}
	// MustReach becomes the end: everything below it was fsynced by
	// syncSegments before it was read. It may have been higher, when the
	// log ends with a torn record that began below it (a flush that filled
	// a segment raised it in the middle of that record). The bytes from the
	// end on belong to a dead record now and new records will take their
	// place, so the bound comes down, durably, before trimTail zeroes any
	// of them.
	if ctl.MustReach > end.LSN {
		if err := l.updateControl(func(c *ControlData) { c.MustReach = end.LSN }); err != nil {
			return res, fmt.Errorf("xlog: recovery: %w", err)
		}
	}
	if err := l.trimTail(end.LSN); err != nil {
		return res, l.fail(fmt.Errorf("xlog: recovery: clear WAL after %s: %w: %w", end.LSN, ErrWALWriteFailed, err))
	}

	l.insertMu.Lock()
	l.insertMu.cur, l.insertMu.prev, l.insertMu.redo = end.LSN, end.Prev, ctl.Redo
	l.insertMu.Unlock()
	l.insertLSN.Store(uint64(end.LSN))
	l.written.Store(uint64(end.LSN))
	l.flushed.Store(uint64(end.LSN))
	if ckptEnd == end.LSN {
		l.lastCkp = end.LSN
	}

	err := l.updateControl(func(c *ControlData) {
		c.State = StateInProduction
		c.MustReach = end.LSN
	})
	if err != nil {
		return res, fmt.Errorf("xlog: recovery: %w", err)
	}
	l.pages = pages
	l.state.Store(stateRecovered)
	l.cfg.Logger.Info("xlog: recovery complete", "redo", ctl.Redo, "end", end.LSN, "records", res.Records)
	return res, nil
}

// syncSegments fsyncs every WAL segment file.
func (l *Log) syncSegments() error {
	segs, err := listSegments(l.fs, l.walDir)
	if err != nil {
		return err
	}
	for _, seg := range segs {
		f, err := l.fs.Open(l.segmentPath(seg))
		if err != nil {
			return err
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return l.fail(fmt.Errorf("%w: segment %d: %w", ErrWALSyncFailed, seg, err))
		}
	}
	return l.fs.SyncDir(l.walDir)
}

// trimTail makes sure no byte past end can pass for a record: it zeroes the
// rest of end's segment and removes every later segment. Those may hold the
// torn tail of the run that crashed, whose records sit at the very addresses
// new records will take; a new record that happened to end where an old one
// began, linked back to the same start, would otherwise bring the old one
// back after the next crash. Recycled segments from lower addresses could
// not, but they cannot be told apart cheaply, so they go too.
func (l *Log) trimTail(end base.LSN) error {
	l.segMu.Lock()
	defer l.segMu.Unlock()
	seg := int64(end) / l.segSize
	f, err := l.fs.Open(l.segmentPath(seg))
	switch {
	case err == nil:
		// A segment cut short (by a crash, or by hand) is zeroed up to
		// its end and grown back to full size.
		var size, from int64
		size, err = f.Size()
		limit := min(size, l.segSize)
		if err == nil {
			from, err = firstNonZero(f, min(int64(end)%l.segSize, limit), limit)
		}
		if err == nil && from < limit {
			err = writeZeros(f, from&^(recAlign-1), limit)
		}
		if err == nil && size != l.segSize {
			err = f.Truncate(l.segSize)
		}
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	case !vfs.IsNotExist(err):
		return err
	}
	segs, err := listSegments(l.fs, l.walDir)
	if err != nil {
		return err
	}
	removed := false
	for _, s := range segs {
		if s > seg {
			if err := l.fs.Remove(l.segmentPath(s)); err != nil {
				return err
			}
			removed = true
		}
	}
	if removed {
		return l.fs.SyncDir(l.walDir)
	}
	return nil
}

// firstNonZero returns the offset of the first non-zero byte of f in
// [off, end), or end.
func firstNonZero(f vfs.File, off, end int64) (int64, error) {
	buf := make([]byte, 64<<10)
	for off < end {
		n := min(int64(len(buf)), end-off)
		if _, err := f.ReadAt(buf[:n], off); err != nil {
			return 0, err
		}
		for i, c := range buf[:n] {
			if c != 0 {
				return off + int64(i), nil
			}
		}
		off += n
	}
	return end, nil
}
