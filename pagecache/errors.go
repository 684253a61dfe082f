package pagecache

import "errors"

var (
	// ErrNoUnpinnedBuffers is returned when every buffer is pinned and a new
	// page must be brought in. It means the pool is too small for the
	// concurrency (or a caller leaks pins).
	ErrNoUnpinnedBuffers = errors.New("pagecache: no unpinned buffers available")
	// ErrBlockOutOfRange is returned for a read beyond the end of a relation.
	ErrBlockOutOfRange = errors.New("pagecache: block beyond end of relation")
	// ErrNoRelation is returned for I/O on a relation whose file does not exist.
	ErrNoRelation = errors.New("pagecache: relation does not exist")
	// ErrDataSyncFailed is returned once an fsync of a data file has failed.
	// The kernel may have dropped the dirty pages, so nothing written since
	// the last checkpoint can be trusted on disk: the engine must stop and
	// recover from the WAL, as PostgreSQL PANICs since 2018. The failure
	// stops Config.Halt, whose error then wraps this one.
	ErrDataSyncFailed = errors.New("pagecache: fsync of a data file failed; the engine must stop and recover from WAL")
	// ErrClosed is returned by a pool that has been closed.
	ErrClosed = errors.New("pagecache: pool is closed")
)
