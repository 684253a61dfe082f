package base

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// LSN is a log sequence number: a byte position in the WAL stream. A page
// carries the LSN just past the last WAL record that changed it.
type LSN uint64

// InvalidLSN is the zero LSN; no record ends there.
const InvalidLSN LSN = 0

func (l LSN) String() string { return fmt.Sprintf("%X/%08X", uint64(l)>>32, uint32(l)) }

// XID is a 64-bit transaction id. Ids are never reused and never wrap.
type XID uint64

// InvalidXID is the zero XID; no transaction has it.
const InvalidXID XID = 0

// RelFileNode names a relation's file, DIR/base/<n>.
type RelFileNode uint32

// BlockNum is a block's position within a relation, counted in pages.
type BlockNum uint32

// InvalidBlock is never the number of a real block.
const InvalidBlock BlockNum = ^BlockNum(0)

// ErrCorrupt marks data read from disk that fails a check: a checksum, a CRC,
// a length or a link. Any layer wraps it with where it was found, so callers
// can test errors.Is(err, ErrCorrupt) and still read the place.
var ErrCorrupt = errors.New("heapkv: data corruption")

// CorruptionErrorf returns an error that matches ErrCorrupt and says what was
// wrong where.
func CorruptionErrorf(format string, args ...any) error {
	return &corruptionError{msg: fmt.Sprintf(format, args...)}
}

type corruptionError struct{ msg string }

func (e *corruptionError) Error() string        { return e.msg }
func (e *corruptionError) Is(target error) bool { return target == ErrCorrupt }

// TID is a tuple id: the place of a heap tuple, as block and line pointer
// number (1-based; 0 is invalid). The B+tree maps each key to the TID of its
// newest version; a version links to its predecessor by TID.
type TID struct {
	Block  BlockNum
	Offset uint16
}

// InvalidTID points nowhere.
var InvalidTID = TID{Block: InvalidBlock, Offset: 0}

// Valid reports whether t can point at a tuple.
func (t TID) Valid() bool { return t.Offset != 0 && t.Block != InvalidBlock }

func (t TID) String() string { return fmt.Sprintf("(%d,%d)", t.Block, t.Offset) }

// IsZero reports whether every byte of b is zero (an unused page, the
// unwritten tail of a WAL segment).
func IsZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// The engine's limits on keys and values, declared once: a key is stored
// whole in its heap tuple and in its B+tree item, so both access methods and
// the kv boundary check the same MaxKeySize; a value over a page goes out of
// line (TOAST) up to MaxValueSize.
const (
	MaxKeySize   = 1024
	MaxValueSize = 64 << 20
)

// CheckKey validates a key against the engine's limit: empty for a key of
// zero bytes, tooLarge, wrapped with the length, for one over MaxKeySize. Each
// layer that checks keys passes its own sentinels, so what it returns keeps
// its package's message and errors.Is identity.
func CheckKey(key []byte, empty, tooLarge error) error {
	if len(key) == 0 {
		return empty
	}
	if len(key) > MaxKeySize {
		return fmt.Errorf("%w: %d bytes, at most %d", tooLarge, len(key), MaxKeySize)
	}
	return nil
}
