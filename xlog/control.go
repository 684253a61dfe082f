package xlog

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/heapkv/heapkv/internal/base"
)

// The control file, DIR/control, is the root of recovery: it names the last
// checkpoint and its redo point. It is small, and always replaced whole with
// vfs.WriteFileAtomic, so a crash leaves the old or the new one. Layout,
// little-endian, 72 bytes:
//
//	 0       4       8               16              24              32
//	+-------+-------+---------------+---------------+---------------+
//	| magic |version|   system id   |checkpoint LSN |   redo LSN    |
//	+-------+-------+---------------+---------------+---------------+
//	32              40      44      48              56              64      68      72
//	+---------------+-------+-------+---------------+---------------+-------+-------+
//	|   next xid    |nextrel| state | segment size  |checkpoint time|   0   |  crc  |
//	+---------------+-------+-------+---------------+---------------+-------+-------+
//
// crc is CRC-32C of bytes [0, 68). checkpoint time is Unix nanoseconds.
const (
	controlMagic   = 0x4356_4b48 // "HKVC" read as little-endian bytes
	ControlVersion = 1
	controlSize    = 72
)

// DBState is the state the control file records.
type DBState uint32

const (
	// StateShutdown: the last run ended with a shutdown checkpoint.
	StateShutdown DBState = 1
	// StateInProduction: the log is (or was, at a crash) running.
	StateInProduction DBState = 2
	// StateInRecovery: crash recovery is (or was, at a crash) running.
	StateInRecovery DBState = 3
)

func (s DBState) String() string {
	switch s {
	case StateShutdown:
		return "shut down"
	case StateInProduction:
		return "in production"
	case StateInRecovery:
		return "in crash recovery"
	}
	return fmt.Sprintf("DBState(%d)", uint32(s))
}

// ControlData is the contents of the control file.
type ControlData struct {
	SystemID        uint64
	CheckPoint      base.LSN // start of the last checkpoint record
	Redo            base.LSN // where recovery starts: that checkpoint's redo point
	NextXID         base.XID
	NextRelFileNode base.RelFileNode
	State           DBState
	SegmentSize     int64
	CheckpointTime  int64 // Unix nanoseconds
}

// Encode returns the control file bytes.
func (c *ControlData) Encode() []byte {
	b := make([]byte, controlSize)
	binary.LittleEndian.PutUint32(b[0:], controlMagic)
	binary.LittleEndian.PutUint32(b[4:], ControlVersion)
	binary.LittleEndian.PutUint64(b[8:], c.SystemID)
	binary.LittleEndian.PutUint64(b[16:], uint64(c.CheckPoint))
	binary.LittleEndian.PutUint64(b[24:], uint64(c.Redo))
	binary.LittleEndian.PutUint64(b[32:], uint64(c.NextXID))
	binary.LittleEndian.PutUint32(b[40:], uint32(c.NextRelFileNode))
	binary.LittleEndian.PutUint32(b[44:], uint32(c.State))
	binary.LittleEndian.PutUint64(b[48:], uint64(c.SegmentSize))
	binary.LittleEndian.PutUint64(b[56:], uint64(c.CheckpointTime))
	binary.LittleEndian.PutUint32(b[68:], crc32.Checksum(b[:68], castagnoli))
	return b
}

// DecodeControl decodes a control file. Any defect gives an error wrapping
// base.ErrCorrupt; it never panics.
func DecodeControl(b []byte) (ControlData, error) {
	var c ControlData
	if len(b) != controlSize {
		return c, base.CorruptionErrorf("xlog: control file is %d bytes, want %d", len(b), controlSize)
	}
	if m := binary.LittleEndian.Uint32(b[0:]); m != controlMagic {
		return c, base.CorruptionErrorf("xlog: control file magic %08x, want %08x", m, controlMagic)
	}
	if got, want := binary.LittleEndian.Uint32(b[68:]), crc32.Checksum(b[:68], castagnoli); got != want {
		return c, base.CorruptionErrorf("xlog: control file CRC %08x, computed %08x", got, want)
	}
	if v := binary.LittleEndian.Uint32(b[4:]); v != ControlVersion {
		// A CRC-valid file of another version is not corruption but a
		// directory this build cannot use.
		return c, fmt.Errorf("xlog: control file format version %d, this build reads %d: %w", v, ControlVersion, ErrBadConfig)
	}
	c.SystemID = binary.LittleEndian.Uint64(b[8:])
	c.CheckPoint = base.LSN(binary.LittleEndian.Uint64(b[16:]))
	c.Redo = base.LSN(binary.LittleEndian.Uint64(b[24:]))
	c.NextXID = base.XID(binary.LittleEndian.Uint64(b[32:]))
	c.NextRelFileNode = base.RelFileNode(binary.LittleEndian.Uint32(b[40:]))
	c.State = DBState(binary.LittleEndian.Uint32(b[44:]))
	c.SegmentSize = int64(binary.LittleEndian.Uint64(b[48:]))
	c.CheckpointTime = int64(binary.LittleEndian.Uint64(b[56:]))
	switch {
	case c.State < StateShutdown || c.State > StateInRecovery:
		return c, base.CorruptionErrorf("xlog: control file state %d unknown", c.State)
	case validSegmentSize(c.SegmentSize) != nil:
		return c, base.CorruptionErrorf("xlog: control file segment size %d invalid", c.SegmentSize)
	case c.Redo == 0 || c.CheckPoint < c.Redo || c.Redo%recAlign != 0 || c.CheckPoint%recAlign != 0:
		return c, base.CorruptionErrorf("xlog: control file redo %s / checkpoint %s inconsistent", c.Redo, c.CheckPoint)
	}
	return c, nil
}

func validSegmentSize(n int64) error {
	if n < MinSegmentSize || n > MaxSegmentSize || n&(n-1) != 0 {
		return fmt.Errorf("xlog: segment size %d must be a power of two from %d to %d: %w", n, MinSegmentSize, MaxSegmentSize, ErrBadConfig)
	}
	return nil
}
