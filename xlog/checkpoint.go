package xlog

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/vfs"
)

// CheckpointData is the payload of a checkpoint record. Hooks fill it in
// during a checkpoint; recovery hands back the one of the last checkpoint
// it replayed.
//
// Layout (little-endian):
//
//	+------+---------+---------+------+---------+------+------+-------+-------+~~~
//	| redo | nextxid | nextrel | time |nsections|namlen| name |datalen| data  | ...
//	+------+---------+---------+------+---------+------+------+-------+-------+~~~
//	  u64     u64       u32      i64     u16      u8            u32
type CheckpointData struct {
	Redo            base.LSN
	NextXID         base.XID         // set by the hook that owns the xid counter
	NextRelFileNode base.RelFileNode // set by the hook that owns relfilenodes
	Time            int64            // Unix nanoseconds
	// Sections holds each hook's own bytes under its name (at most 255
	// bytes of name). Hooks add to it; recovery returns it.
	Sections map[string][]byte
}

func (cp *CheckpointData) encode() []byte {
	b := make([]byte, 0, 32)
	b = binary.LittleEndian.AppendUint64(b, uint64(cp.Redo))
	b = binary.LittleEndian.AppendUint64(b, uint64(cp.NextXID))
	b = binary.LittleEndian.AppendUint32(b, uint32(cp.NextRelFileNode))
	b = binary.LittleEndian.AppendUint64(b, uint64(cp.Time))
	names := slices.Sorted(maps.Keys(cp.Sections))
	b = binary.LittleEndian.AppendUint16(b, uint16(len(names)))
	for _, name := range names {
		b = append(b, byte(len(name)))
		b = append(b, name...)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(cp.Sections[name])))
		b = append(b, cp.Sections[name]...)
	}
	return b
}

// DecodeCheckpoint decodes a checkpoint record's payload. Errors wrap
// base.ErrCorrupt.
func DecodeCheckpoint(b []byte) (CheckpointData, error) {
	var cp CheckpointData
	if len(b) < 30 {
		return cp, base.CorruptionErrorf("xlog: checkpoint payload of %d bytes", len(b))
	}
	cp.Redo = base.LSN(binary.LittleEndian.Uint64(b[0:]))
	cp.NextXID = base.XID(binary.LittleEndian.Uint64(b[8:]))
	cp.NextRelFileNode = base.RelFileNode(binary.LittleEndian.Uint32(b[16:]))
	cp.Time = int64(binary.LittleEndian.Uint64(b[20:]))
	n := int(binary.LittleEndian.Uint16(b[28:]))
	p := b[30:]
	cp.Sections = make(map[string][]byte, min(n, len(p)/5)) // a section takes at least 5 bytes
	for i := range n {
		if len(p) < 1 || len(p) < 1+int(p[0])+4 {
			return cp, base.CorruptionErrorf("xlog: checkpoint section %d truncated", i)
		}
		name := string(p[1 : 1+p[0]])
		p = p[1+len(name):]
		dlen := int64(binary.LittleEndian.Uint32(p))
		p = p[4:]
		if dlen > int64(len(p)) {
			return cp, base.CorruptionErrorf("xlog: checkpoint section %q claims %d bytes, %d left", name, dlen, len(p))
		}
		// A copy: b usually points into a reader's buffer, which the
		// next record overwrites, and recovery hands the sections on
		// after reading many more records.
		cp.Sections[name] = bytes.Clone(p[:dlen])
		p = p[dlen:]
	}
	if len(p) != 0 {
		return cp, base.CorruptionErrorf("xlog: %d stray bytes after checkpoint payload", len(p))
	}
	return cp, nil
}

// CheckpointHook is called by every checkpoint once the redo point is
// fixed, before shared buffers are written. It writes out the state its
// layer keeps outside shared buffers (the CLOG, say) and may fill in cp:
// NextXID, NextRelFileNode, or its own bytes in cp.Sections. It runs on the
// checkpointing goroutine and may insert and flush WAL.
type CheckpointHook func(redo base.LSN, cp *CheckpointData) error

type checkpointHook struct {
	name string
	fn   CheckpointHook
}

// RegisterCheckpointHook adds a hook; hooks run in registration order. A
// hook registered again under the same name replaces the old one.
func (l *Log) RegisterCheckpointHook(name string, fn CheckpointHook) {
	l.regMu.Lock()
	defer l.regMu.Unlock()
	for i := range l.hooks {
		if l.hooks[i].name == name {
			l.hooks[i].fn = fn
			return
		}
	}
	l.hooks = append(l.hooks, checkpointHook{name: name, fn: fn})
}

// UnregisterCheckpointHook removes the hook registered under name, if any
// (a dropped relation's, say). A checkpoint already running may still call
// it once.
func (l *Log) UnregisterCheckpointHook(name string) {
	l.regMu.Lock()
	defer l.regMu.Unlock()
	for i := range l.hooks {
		if l.hooks[i].name == name {
			l.hooks = append(l.hooks[:i], l.hooks[i+1:]...)
			return
		}
	}
}

type checkpointKind uint8

const (
	checkpointForced   checkpointKind = iota // Checkpoint: always runs
	checkpointTimed                          // checkpointer: skipped if idle
	checkpointShutdown                       // Close
)

// Checkpoint runs a checkpoint now and returns when it is done: the redo
// point is fixed at the current insert position (so every page changed from
// now on logs a full-page image first), the hooks run, shared buffers are
// written and fsynced through Pages, a checkpoint record is written and
// flushed, the control file is updated, and segments wholly below the redo
// point are recycled.
//
// Checkpoint refuses to run once the log or the engine has stopped (see
// Config.Halt) and returns the error it stopped with: a data file whose
// fsync failed may have lost writes, and a checkpoint would move the redo
// point past the WAL that can restore them. A stop that comes while a
// checkpoint runs keeps it from writing its record and the control file.
func (l *Log) Checkpoint() error { return l.checkpoint(checkpointForced) }

func (l *Log) checkpoint(kind checkpointKind) error {
	l.ckptMu.Lock()
	defer l.ckptMu.Unlock()
	if err := l.usable(); err != nil {
		return err
	}
	// Fix the redo point. Publishing it under insertMu orders it with every
	// reservation: a record reserved before it starts below redo; a record
	// reserved after it sees the new pointer and logs images (see Insert).
	l.insertMu.Lock()
	redo := l.insertMu.cur
	if kind == checkpointTimed && redo == l.lastCkp {
		l.insertMu.Unlock()
		return nil // nothing happened since the last checkpoint
	}
	l.insertMu.redo = redo
	l.redoLSN.Store(uint64(redo))
	l.insertMu.Unlock()

	t0 := l.cfg.Clock.Now()
	prev := l.Control()
	cp := CheckpointData{
		Redo:            redo,
		NextXID:         prev.NextXID,
		NextRelFileNode: prev.NextRelFileNode,
		Sections:        map[string][]byte{},
	}
	l.regMu.Lock()
	hooks := slices.Clone(l.hooks)
	l.regMu.Unlock()
	for _, h := range hooks {
		if err := h.fn(redo, &cp); err != nil {
			return fmt.Errorf("xlog: checkpoint hook %q: %w", h.name, err)
		}
	}
	if l.pages != nil {
		if err := l.pages.Checkpoint(func(done, total int) {}); err != nil {
			return fmt.Errorf("xlog: checkpoint: write shared buffers: %w", err)
		}
	}
	// A hook or the buffer pool may have stopped the engine (a failed
	// fsync of a data file it reported, or one of another goroutine's).
	if err := l.stopped(); err != nil {
		return fmt.Errorf("xlog: checkpoint: %w", err)
	}
	cp.Time = l.cfg.Clock.Now().UnixNano()
	info := InfoCheckpointOnline
	if kind == checkpointShutdown {
		info = InfoCheckpointShutdown
	}
	start, end, err := l.Insert(NewRecord(RmgrXLOG, info, 0).SetPayload(cp.encode()))
	if err != nil {
		return fmt.Errorf("xlog: checkpoint: %w", err)
	}
	if err := l.Flush(end); err != nil {
		return fmt.Errorf("xlog: checkpoint: %w", err)
	}
	l.ctlMu.Lock()
	ctl := l.ctlMu.data
	ctl.CheckPoint, ctl.Redo = start, redo
	ctl.NextXID, ctl.NextRelFileNode = cp.NextXID, cp.NextRelFileNode
	ctl.CheckpointTime = cp.Time
	ctl.State = StateInProduction
	if kind == checkpointShutdown {
		ctl.State = StateShutdown
	}
	ctl.MustReach = max(ctl.MustReach, base.LSN(l.flushed.Load()))
	err = l.writeControlLocked(ctl)
	l.ctlMu.Unlock()
	if err != nil {
		return fmt.Errorf("xlog: checkpoint: %w", err)
	}
	l.lastCkp = end
	if l.stopped() != nil {
		return nil // the checkpoint is complete; recycling can wait for the next run
	}

	keep := int(max(2, l.cfg.MaxWALSize/l.segSize))
	recycled, removed, err := l.recycleSegments(int64(redo)/l.segSize, int64(l.written.Load())/l.segSize, keep)
	if err != nil {
		// The checkpoint itself is complete; the old segments are only
		// wasted space, and the next checkpoint tries again.
		l.cfg.Logger.Warn("xlog: recycling segments failed", "err", err)
	}
	l.cfg.Logger.Info("xlog: checkpoint complete", "redo", redo, "lsn", start,
		"shutdown", kind == checkpointShutdown, "recycled", recycled, "removed", removed,
		"took", l.cfg.Clock.Now().Sub(t0))
	return nil
}

// writeControlLocked replaces the control file with ctl. The caller holds
// ctlMu. It does nothing but return the error once the log or the engine
// has stopped. A failed write stops the log, as PostgreSQL PANICs when it
// cannot write pg_control: what the file holds is no longer known.
func (l *Log) writeControlLocked(ctl ControlData) error {
	if err := l.stopped(); err != nil {
		return err
	}
	if err := vfs.WriteFileAtomic(l.fs, l.controlPath(), ctl.Encode()); err != nil {
		return l.fail(fmt.Errorf("xlog: write control file %s: %w: %w", l.controlPath(), ErrControlWriteFailed, err))
	}
	l.ctlMu.data = ctl
	l.reach.Store(uint64(ctl.MustReach))
	return nil
}

// updateControl replaces the control file with what change makes of it.
func (l *Log) updateControl(change func(*ControlData)) error {
	l.ctlMu.Lock()
	defer l.ctlMu.Unlock()
	ctl := l.ctlMu.data
	change(&ctl)
	return l.writeControlLocked(ctl)
}

// raiseReachLocked raises MustReach in the control file to to, which must be
// durable (fsynced) WAL; it does nothing if MustReach is there already. The
// caller holds ctlMu.
func (l *Log) raiseReachLocked(to base.LSN) error {
	if to <= l.ctlMu.data.MustReach {
		return nil
	}
	ctl := l.ctlMu.data
	ctl.MustReach = to
	return l.writeControlLocked(ctl)
}
