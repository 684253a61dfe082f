package kv

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/heapkv/heapkv/internal/base"
)

// Toggle is an on/off setting. Its zero value, Enabled, is the default of
// every toggle heapkv has, so that a zero Options means the defaults. It is
// the engine's one on/off type, shared with the subsystems' configs.
type Toggle = base.Toggle

const (
	// Enabled (on) is the zero value.
	Enabled = base.On
	// Disabled turns the setting off.
	Disabled = base.Off
)

// SyncMode is synchronous_commit, a Toggle. The zero value, SyncOn, is
// PostgreSQL's default: Commit returns once the commit record is durable.
type SyncMode = base.Toggle

const (
	// SyncOn waits for the commit record to be flushed (group commit).
	SyncOn = base.On
	// SyncOff returns at once; the WAL writer flushes within
	// WALWriterDelay. A crash may lose the last commits, never corrupt.
	SyncOff = base.Off
)

// Defaults of the settings whose subsystems are not built yet; the others'
// are declared in their subsystems (pagecache, xlog, txn). Each moves to
// its subsystem when that lands.
const (
	defaultMaintenanceWorkMem = 64 << 20
	defaultTempBuffers        = 8 << 20
	defaultAutovacuum         = base.On
)

// Options configures a database. A zero field means the default, noted on
// each field with its PostgreSQL name; fields set here win over
// DIR/heapkv.conf, which wins over the defaults.
type Options struct {
	// SharedBuffers is the buffer pool size in bytes (shared_buffers).
	// Default 128 MiB.
	SharedBuffers int64
	// WALBuffers is the WAL buffer size in bytes (wal_buffers); -1 (the
	// default) is 1/32 of SharedBuffers within [64 KiB, 16 MiB].
	WALBuffers int64
	// WorkMem bounds each sort or hash before it spills (work_mem).
	// Default 4 MiB.
	WorkMem int64
	// TempFileLimit caps the bytes one operation's temp files (spilled
	// sorts and hashes, in DIR/tmp) hold at once (temp_file_limit); past it
	// the operation fails with ErrTempFileLimit. Default -1: no cap. A zero
	// field means the default; Set("temp_file_limit", "0") forbids temp
	// files.
	TempFileLimit int64
	// LogTempFiles logs each temp file of at least this many bytes when it
	// is removed (log_temp_files). Default -1: none; Set("log_temp_files",
	// "0") logs every one.
	LogTempFiles int64
	// MaintenanceWorkMem bounds VACUUM and bulk load (maintenance_work_mem).
	// Default 64 MiB.
	MaintenanceWorkMem int64
	// TempBuffers caches temporary keyspaces (temp_buffers). Default 8 MiB.
	TempBuffers int64
	// TransactionBuffers is the CLOG cache size in bytes
	// (transaction_buffers). Default 1 MiB.
	TransactionBuffers int64
	// SynchronousCommit (synchronous_commit). Default SyncOn.
	SynchronousCommit SyncMode
	// CommitDelay is how long a group-commit leader waits for more commits
	// when CommitSiblings others are active (commit_delay). Default 0.
	CommitDelay time.Duration
	// CommitSiblings (commit_siblings). Default 5.
	CommitSiblings int
	// WALWriterDelay (wal_writer_delay). Default 200 ms.
	WALWriterDelay time.Duration
	// CheckpointTimeout (checkpoint_timeout). Default 5 min.
	CheckpointTimeout time.Duration
	// MaxWALSize triggers a checkpoint when this much WAL accumulates
	// (max_wal_size). Default 1 GiB.
	MaxWALSize int64
	// FullPageWrites (full_page_writes). Default on.
	FullPageWrites Toggle
	// WALCompression of full-page images: "off" (default), "s2" or "zstd"
	// (wal_compression).
	WALCompression string
	// DataChecksums (data_checksums). Default on.
	DataChecksums Toggle
	// DeadlockTimeout (deadlock_timeout). Default 1 s.
	DeadlockTimeout time.Duration
	// LockTimeout (lock_timeout) bounds a wait for a row lock: a longer
	// one fails with ErrLockTimeout and aborts the transaction. Default 0:
	// no limit (the transaction's context still bounds it).
	LockTimeout time.Duration
	// BgWriterDelay (bgwriter_delay). Default 200 ms.
	BgWriterDelay time.Duration
	// BgWriterLRUMaxPages (bgwriter_lru_maxpages). Default 100.
	BgWriterLRUMaxPages int
	// BgWriterLRUMultiplier (bgwriter_lru_multiplier). Default 2.0.
	BgWriterLRUMultiplier float64
	// Autovacuum (autovacuum). Default on.
	Autovacuum Toggle
	// Logger receives the engine's log. Default: discard.
	Logger *slog.Logger

	// walSegmentSize overrides the 16 MiB WAL segment for tests, which
	// create many small databases.
	walSegmentSize int64
	// explicit names the settings given with Set, which win over
	// heapkv.conf even when their value is the default (zero).
	explicit map[string]bool
}

// Set sets the option called name (PostgreSQL's spelling, as in
// heapkv.conf) from a value in heapkv.conf's syntax, e.g.
// Set("shared_buffers", "256MB") or Set("synchronous_commit", "on"). Unlike
// assigning the field, it wins over heapkv.conf even when the value is the
// default. An unknown name or a bad value is an ErrBadSetting.
func (o *Options) Set(name, value string) error {
	def := findSetting(strings.ToLower(strings.TrimSpace(name)))
	if def == nil {
		return fmt.Errorf("%w: unrecognized parameter %q", ErrBadSetting, name)
	}
	if err := def.parseValue(o, value); err != nil {
		return fmt.Errorf("%w: %v", ErrBadSetting, err)
	}
	if o.explicit == nil {
		o.explicit = make(map[string]bool)
	}
	o.explicit[def.name] = true
	return nil
}
