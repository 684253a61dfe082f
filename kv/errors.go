package kv

import (
	"errors"

	"github.com/heapkv/heapkv/exec"
	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/sortspill"
)

// Sentinel errors. Check them with errors.Is; the error returned carries
// context (which key, which file, which setting) around the sentinel.
var (
	// ErrNotFound: the key has no value visible to the transaction.
	ErrNotFound = errors.New("kv: not found")
	// ErrEmptyKey: keys are 1 byte to 1 KiB.
	ErrEmptyKey = errors.New("kv: empty key")
	// ErrKeyTooLarge: a key over MaxKeySize bytes.
	ErrKeyTooLarge = errors.New("kv: key too large")
	// ErrValueTooLarge: a value over MaxValueSize bytes.
	ErrValueTooLarge = errors.New("kv: value too large")
	// ErrTxDone: the transaction has committed or rolled back.
	ErrTxDone = errors.New("kv: transaction has already committed or rolled back")
	// ErrTxAborted: an earlier call of the transaction failed part-way
	// (an I/O error, a canceled lock wait), so the transaction was rolled
	// back; every call but Rollback returns this, and Commit rolls back.
	// PostgreSQL's "current transaction is aborted".
	ErrTxAborted = errors.New("kv: current transaction is aborted; roll it back")
	// ErrEngineStopped: a failed fsync of the WAL, the CLOG or a data
	// file, or a failed WAL write, stopped the engine (as PostgreSQL
	// PANICs): the kernel may have dropped data it had acknowledged, so
	// nothing goes on until recovery. Every call returns it, wrapping the
	// cause; Close releases the directory without a checkpoint, and the
	// next Open recovers from the WAL every commit that was acknowledged.
	ErrEngineStopped = base.ErrStopped
	// ErrClosed: the database has been closed.
	ErrClosed = errors.New("kv: database is closed")
	// ErrLocked: another process (or another Open in this one) has the
	// data directory.
	ErrLocked = errors.New("kv: data directory is in use")
	// ErrSerialization: a concurrent transaction changed what this one
	// read or wrote; retry the transaction (Update does).
	ErrSerialization = errors.New("kv: could not serialize access due to concurrent update")
	// ErrDeadlock: this transaction was chosen to break a deadlock; retry.
	ErrDeadlock = errors.New("kv: deadlock detected")
	// ErrLockTimeout: a row-lock wait lasted longer than lock_timeout;
	// the transaction is aborted (roll it back and retry if you like).
	ErrLockTimeout = errors.New("kv: canceling statement due to lock timeout")
	// ErrBusy: every shared buffer was pinned by other work, so the
	// statement could not read a page (PostgreSQL's "no unpinned buffers
	// available"); the transaction is aborted. Retry, or raise
	// shared_buffers.
	ErrBusy = errors.New("kv: no unpinned buffers available")
	// ErrTempFileLimit: a sort or hash would have written more temp data
	// than temp_file_limit allows; the operation failed and its temp files
	// are gone. Raise temp_file_limit or work_mem, or narrow the scan.
	ErrTempFileLimit = sortspill.ErrTempFileLimit
	// ErrNotNumber: an aggregate's sum met a value that is not a decimal
	// integer, or the sum passed the int64 range.
	ErrNotNumber = exec.ErrNotNumber
	// ErrNotSupported: a feature not built yet; never a silent downgrade.
	ErrNotSupported = errors.New("kv: not supported")
	// ErrBadSetting: an option or heapkv.conf line is invalid.
	ErrBadSetting = errors.New("kv: invalid setting")
	// ErrIncompatible: the data directory was made by another format
	// version.
	ErrIncompatible = errors.New("kv: incompatible data directory")
	// ErrCorrupt: data read from disk failed a check (checksum, CRC,
	// structure); the error names the file and position.
	ErrCorrupt = base.ErrCorrupt
	// ErrNoKeyspace: the named keyspace does not exist.
	ErrNoKeyspace = errors.New("kv: keyspace does not exist")
	// ErrKeyspaceExists: CreateKeyspace of a name in use.
	ErrKeyspaceExists = errors.New("kv: keyspace already exists")
	// ErrReadOnly: a write in a read-only transaction (View).
	ErrReadOnly = errors.New("kv: write in a read-only transaction")
)

// Limits on keys and values.
const (
	MaxKeySize   = base.MaxKeySize   // 1 KiB
	MaxValueSize = base.MaxValueSize // 64 MiB
	// MaxGIDSize bounds the name of a prepared transaction.
	MaxGIDSize = 200
)

// checkKey validates a key with kv's sentinels (base.CheckKey).
func checkKey(key []byte) error { return base.CheckKey(key, ErrEmptyKey, ErrKeyTooLarge) }
