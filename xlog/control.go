package xlog

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/heapkv/heapkv/internal/base"
)

// The control file, DIR/control, is the root of recovery: it names the last
// checkpoint and its redo point, and how far the log is known to be durable.
// It is small, and always replaced whole with vfs.WriteFileAtomic, so a crash
// leaves the old or the new one. Layout of version 2, little-endian, 80
// bytes:
//
//	 0       4       8               16              24              32
//	+-------+-------+---------------+---------------+---------------+
//	| magic |version|   system id   |checkpoint LSN |   redo LSN    |
//	+-------+-------+---------------+---------------+---------------+
//	32              40      44      48              56              64
//	+---------------+-------+-------+---------------+---------------+
//	|   next xid    |nextrel| state | segment size  |checkpoint time|
//	+---------------+-------+-------+---------------+---------------+
//	64              72      76      80
//	+---------------+-------+-------+
//	|  must reach   |   0   |  crc  |
//	+---------------+-------+-------+
//
// crc is CRC-32C of every byte before it; checkpoint time is Unix
// nanoseconds. Version 1 (the builds before must reach existed) is the same
// up to byte 64, then 4 zero bytes and the crc: 72 bytes. This build reads
// both and writes version 2. Every version keeps magic and version first
// and the crc last, over all bytes before it, so that any build can tell a
// damaged file from one of a version it does not know.
const (
	controlMagic   = 0x4356_4b48 // "HKVC" read as little-endian bytes
	ControlVersion = 2
	controlSize    = 80
	controlSizeV1  = 72
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
	// MustReach is a lower bound of the durable end of the log: every WAL
	// byte below it was fsynced before the control file said so, so
	// recovery that cannot read that far has lost WAL (PostgreSQL's
	// minRecoveryPoint plays this part for archive recovery). It is set
	// by checkpoints and recovery and raised as segments fill (see doc.go,
	// "Recovery and the torn-tail rule"). It only grows, but for
	// recovery, which sets it to the end it found. 0: unknown, as in a
	// version-1 file, until the next recovery or checkpoint sets it.
	MustReach base.LSN
}

// Encode returns the control file bytes (always the current version).
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
	binary.LittleEndian.PutUint64(b[64:], uint64(c.MustReach))
	binary.LittleEndian.PutUint32(b[76:], crc32.Checksum(b[:76], castagnoli))
	return b
}

// DecodeControl decodes a control file of version 1 or 2. Any defect gives
// an error wrapping base.ErrCorrupt; a sound file of another version gives
// one wrapping ErrBadConfig. It never panics.
func DecodeControl(b []byte) (ControlData, error) {
	var c ControlData
	if len(b) < 8 || len(b) > 4096 {
		return c, base.CorruptionErrorf("xlog: control file is %d bytes", len(b))
	}
	if m := binary.LittleEndian.Uint32(b[0:]); m != controlMagic {
		return c, base.CorruptionErrorf("xlog: control file magic %08x, want %08x", m, controlMagic)
	}
	n := len(b) - 4
	if got, want := binary.LittleEndian.Uint32(b[n:]), crc32.Checksum(b[:n], castagnoli); got != want {
		return c, base.CorruptionErrorf("xlog: control file CRC %08x, computed %08x", got, want)
	}
	v := binary.LittleEndian.Uint32(b[4:])
	var reserved []byte
	switch v {
	case 1:
		if len(b) != controlSizeV1 {
			return c, base.CorruptionErrorf("xlog: control file version 1 is %d bytes, want %d", len(b), controlSizeV1)
		}
		reserved = b[64:68]
	case ControlVersion:
		if len(b) != controlSize {
			return c, base.CorruptionErrorf("xlog: control file version %d is %d bytes, want %d", v, len(b), controlSize)
		}
		c.MustReach = base.LSN(binary.LittleEndian.Uint64(b[64:]))
		reserved = b[72:76]
	default:
		// A CRC-valid file of another version is not corruption but a
		// directory this build cannot use.
		return c, fmt.Errorf("xlog: control file format version %d, this build reads 1 and %d: %w", v, ControlVersion, ErrBadConfig)
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
	case !base.IsZero(reserved):
		return c, base.CorruptionErrorf("xlog: control file reserved bytes %x are not zero", reserved)
	case c.State < StateShutdown || c.State > StateInRecovery:
		return c, base.CorruptionErrorf("xlog: control file state %d unknown", c.State)
	case validSegmentSize(c.SegmentSize) != nil:
		return c, base.CorruptionErrorf("xlog: control file segment size %d invalid", c.SegmentSize)
	case c.Redo == 0 || c.CheckPoint < c.Redo || c.Redo%recAlign != 0 || c.CheckPoint%recAlign != 0:
		return c, base.CorruptionErrorf("xlog: control file redo %s / checkpoint %s inconsistent", c.Redo, c.CheckPoint)
	case c.MustReach != 0 && (c.MustReach <= c.CheckPoint || c.MustReach%recAlign != 0):
		// The checkpoint record was flushed before the file named it. (0
		// is a version-1 file's unknown, kept until recovery ends.)
		return c, base.CorruptionErrorf("xlog: control file must-reach %s not past checkpoint %s", c.MustReach, c.CheckPoint)
	}
	return c, nil
}

func validSegmentSize(n int64) error {
	if n < MinSegmentSize || n > MaxSegmentSize || n&(n-1) != 0 {
		return fmt.Errorf("xlog: segment size %d must be a power of two from %d to %d: %w", n, MinSegmentSize, MaxSegmentSize, ErrBadConfig)
	}
	return nil
}
