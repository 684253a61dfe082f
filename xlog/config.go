package xlog

import (
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/heapkv/heapkv/internal/base"
)

// Limits and defaults, each declared once: kv's settings table shows and
// checks these, and a zero Config field means the default. Sizes are bytes.
const (
	MinWALBuffers = 64 << 10
	// MaxAutoWALBuffers caps what WALBuffersFor chooses (wal_buffers = -1).
	MaxAutoWALBuffers = 16 << 20
	// DefaultWALBuffers is what WALBuffersFor gives at the default
	// shared_buffers of 128 MiB.
	DefaultWALBuffers        = 4 << 20
	MinSegmentSize           = 64 << 10
	MaxSegmentSize           = 1 << 30
	DefaultSegmentSize       = 16 << 20
	DefaultCommitDelay       = 0
	DefaultCommitSiblings    = 5
	DefaultWALWriterDelay    = 200 * time.Millisecond
	DefaultCheckpointTimeout = 5 * time.Minute
	DefaultMaxWALSize        = 1 << 30
	walBufferGranularity     = 8 << 10
)

// WALBuffersFor is PostgreSQL's choice for wal_buffers = -1: 1/32 of
// shared buffers, at least MinWALBuffers and at most MaxAutoWALBuffers
// (one segment of PostgreSQL's default size).
func WALBuffersFor(sharedBuffers int64) int64 {
	return min(max(sharedBuffers/32, MinWALBuffers), MaxAutoWALBuffers)
}

// Config holds the log's settings, named after PostgreSQL's. A zero field
// means the default given in its comment.
type Config struct {
	// WALBuffers is the size of the WAL buffer ring in bytes (wal_buffers).
	// 0: DefaultWALBuffers (the caller normally computes 1/32 of shared
	// buffers). Values below 64 KiB are raised to 64 KiB; the size is
	// rounded up to a multiple of 8 KiB.
	WALBuffers int
	// SegmentSize is the size of a WAL segment file, a power of two from
	// 64 KiB to 1 GiB. 0: 16 MiB for a new directory, and whatever the
	// control file says for an existing one (a different non-zero value is
	// an error).
	SegmentSize int64
	// CommitDelay is how long a flusher sleeps before flushing when at least
	// CommitSiblings other transactions are active (commit_delay). 0: none.
	CommitDelay time.Duration
	// CommitSiblings is commit_siblings. 0: 5; negative: 0.
	CommitSiblings int
	// WALWriterDelay is how often the WAL writer flushes asynchronous commits
	// (wal_writer_delay). 0: 200 ms.
	WALWriterDelay time.Duration
	// SynchronousCommit decides what FlushCommit does (synchronous_commit).
	// Zero: On.
	SynchronousCommit base.Toggle
	// FullPageWrites is full_page_writes. Zero: On.
	FullPageWrites base.Toggle
	// WALCompression compresses full-page images (wal_compression). Zero:
	// none.
	WALCompression Compression
	// CheckpointTimeout is checkpoint_timeout. 0: 5 min.
	CheckpointTimeout time.Duration
	// MaxWALSize is max_wal_size in bytes. A checkpoint is requested once
	// the WAL since the last redo point passes MaxWALSize/1.9, as PostgreSQL
	// does with checkpoint_completion_target 0.9. 0: 1 GiB.
	MaxWALSize int64
	// Logger receives checkpoint and recovery messages. nil: discard.
	Logger *slog.Logger
	// Clock is where the log's goroutines get time. nil: the real clock.
	Clock Clock
	// Halt is the engine's fatal state, shared with the other subsystems of
	// the database. A failed WAL write or fsync (or control file write)
	// stops it; once it is stopped, by the log or by anyone else, the log
	// does no more I/O: Insert, Flush and Checkpoint return its error and
	// Close writes no shutdown checkpoint. nil: the log stops alone.
	Halt *base.Halt
}

func (c Config) withDefaults() (Config, error) {
	if c.WALBuffers == 0 {
		c.WALBuffers = DefaultWALBuffers
	}
	if c.WALBuffers < 0 {
		return c, fmt.Errorf("xlog: WALBuffers %d: %w", c.WALBuffers, ErrBadConfig)
	}
	c.WALBuffers = max(c.WALBuffers, MinWALBuffers)
	c.WALBuffers = (c.WALBuffers + walBufferGranularity - 1) / walBufferGranularity * walBufferGranularity
	if c.SegmentSize != 0 {
		if err := validSegmentSize(c.SegmentSize); err != nil {
			return c, err
		}
	}
	if c.CommitDelay < 0 {
		return c, fmt.Errorf("xlog: CommitDelay %v: %w", c.CommitDelay, ErrBadConfig)
	}
	switch {
	case c.CommitSiblings == 0:
		c.CommitSiblings = DefaultCommitSiblings
	case c.CommitSiblings < 0:
		c.CommitSiblings = 0
	}
	if c.WALWriterDelay <= 0 {
		c.WALWriterDelay = DefaultWALWriterDelay
	}
	if !c.SynchronousCommit.Valid() || !c.FullPageWrites.Valid() {
		return c, fmt.Errorf("xlog: on/off setting out of range: %w", ErrBadConfig)
	}
	if c.WALCompression > CompressionZstd {
		return c, fmt.Errorf("xlog: WALCompression %d: %w", c.WALCompression, ErrBadConfig)
	}
	if c.CheckpointTimeout <= 0 {
		c.CheckpointTimeout = DefaultCheckpointTimeout
	}
	if c.MaxWALSize <= 0 {
		c.MaxWALSize = DefaultMaxWALSize
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Clock == nil {
		c.Clock = realClock{}
	}
	return c, nil
}

// Clock is the log's source of time, so that tests can drive the WAL
// writer, the checkpointer and commit_delay (or run them under
// testing/synctest).
type Clock interface {
	Now() time.Time
	Sleep(d time.Duration)
	// After returns a channel that receives once d has passed.
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) Sleep(d time.Duration)                  { time.Sleep(d) }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
