package xlog

import "errors"

// Sentinel errors of package xlog. Callers test them with errors.Is; the
// returned errors wrap them with the LSN, segment or setting concerned.
// Corruption found in bytes read from disk wraps base.ErrCorrupt instead.
var (
	// ErrWALSyncFailed means an fsync of a WAL segment failed. The log has
	// stopped: the failing Flush and every later Insert, Flush and
	// Checkpoint return an error wrapping it (and base.ErrStopped), and
	// Config.Halt is stopped with it. Writes the kernel failed to make durable may be gone
	// even if a later fsync succeeds, so the engine must stop and run crash
	// recovery from what is really on disk; retrying would pretend the data
	// is safe.
	ErrWALSyncFailed = errors.New("xlog: WAL fsync failed; the engine must stop and recover")

	// ErrWALWriteFailed means a write to a WAL segment failed. Like a failed
	// fsync it stops the log for good.
	ErrWALWriteFailed = errors.New("xlog: WAL write failed; the engine must stop and recover")

	// ErrControlWriteFailed means the control file could not be replaced.
	// Like a failed WAL write it stops the log for good.
	ErrControlWriteFailed = errors.New("xlog: control file write failed; the engine must stop and recover")

	// ErrClosed is returned by every call on a closed log.
	ErrClosed = errors.New("xlog: log is closed")

	// ErrNotRecovered is returned by Insert, Flush and Checkpoint before
	// Recover has run: the end of the log is not known yet.
	ErrNotRecovered = errors.New("xlog: log not recovered yet")

	// ErrAlreadyRecovered is returned by a second call of Recover.
	ErrAlreadyRecovered = errors.New("xlog: log already recovered")

	// ErrFlushBeyondEnd is returned by Flush for an LSN past everything
	// inserted: something (a page LSN, say) claims WAL that does not exist.
	ErrFlushBeyondEnd = errors.New("xlog: flush request beyond the end of the log")

	// ErrRecordTooLarge is returned by Insert for a record over MaxRecordSize.
	ErrRecordTooLarge = errors.New("xlog: record too large")

	// ErrUnknownRmgr is returned by recovery for a record whose resource
	// manager nobody registered.
	ErrUnknownRmgr = errors.New("xlog: unknown resource manager")

	// ErrRmgrRegistered is returned by RegisterRmgr for an id in use.
	ErrRmgrRegistered = errors.New("xlog: resource manager id already registered")

	// ErrBadConfig is returned by Open for settings it cannot use.
	ErrBadConfig = errors.New("xlog: invalid configuration")

	// ErrNotPageData is returned when generic redo meets a block reference
	// that carries resource-manager data instead of an image or a delta.
	ErrNotPageData = errors.New("xlog: block reference holds operation data, not an image or delta")
)
