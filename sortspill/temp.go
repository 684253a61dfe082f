package sortspill

import (
	"errors"
	"fmt"
	"log/slog"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/heapkv/heapkv/internal/vfs"
)

// ErrTempFileLimit is returned when an operation's temp files would grow
// past temp_file_limit. The operation's files are removed before it returns.
var ErrTempFileLimit = errors.New("sortspill: temp_file_limit exceeded")

// NoTempFileLimit, as TempOptions.Limit, leaves temp files uncapped; as
// LogAbove it logs none. It is what kv's temp_file_limit and log_temp_files
// default to (-1). Note that a zero TempOptions is not that: it caps temp
// files at 0 bytes and logs every one.
const NoTempFileLimit = -1

// tempPrefix starts the name of every temp file this package writes. Sweep
// removes only names that start with it.
const tempPrefix = "heapkv_tmp."

// TempOptions configures a TempSpace.
type TempOptions struct {
	// Limit caps the bytes one operation's temp files hold at once
	// (temp_file_limit); a negative Limit means no cap.
	Limit int64
	// LogAbove logs each temp file whose size reaches it when the file is
	// removed (log_temp_files); 0 logs every file, a negative value none.
	LogAbove int64
	// Logger receives those lines; nil means slog.Default().
	Logger *slog.Logger
}

// TempSpace is the directory where sorts and hashes spill, DIR/tmp. One is
// shared by every operation of an engine; each operation draws its files
// from an Op of its own, which enforces the limit and removes them.
type TempSpace struct {
	fs     vfs.FS
	dir    string
	opts   TempOptions
	seq    atomic.Uint64
	files  atomic.Uint64 // temp files created (pg_stat_database.temp_files)
	bytes  atomic.Uint64 // bytes written to them (temp_bytes)
	mkOnce sync.Once
	mkErr  error
}

// TempStats are a TempSpace's cumulative counters.
type TempStats struct {
	Files uint64 // temp files created
	Bytes uint64 // bytes written to temp files
}

// NewTempSpace returns the temp space in dir. The directory is created when
// the first file is.
func NewTempSpace(fsys vfs.FS, dir string, o TempOptions) *TempSpace {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &TempSpace{fs: fsys, dir: dir, opts: o}
}

// Dir returns the directory the temp files live in.
func (ts *TempSpace) Dir() string { return ts.dir }

// Stats returns the counters.
func (ts *TempSpace) Stats() TempStats {
	return TempStats{Files: ts.files.Load(), Bytes: ts.bytes.Load()}
}

// Sweep removes the temp files a crashed or killed process left behind. Call
// it at Open, before any operation runs. Only names this package writes are
// removed; anything else in the directory is left and reported in the error,
// since Open never deletes what it cannot prove is its own.
func (ts *TempSpace) Sweep() (removed int, err error) {
	names, err := ts.fs.List(ts.dir)
	if vfs.IsNotExist(err) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("sortspill: list %s: %w", ts.dir, err)
	}
	var foreign []string
	for _, n := range names {
		if !strings.HasPrefix(n, tempPrefix) {
			foreign = append(foreign, n)
			continue
		}
		if err := ts.fs.Remove(path.Join(ts.dir, n)); err != nil && !vfs.IsNotExist(err) {
			return removed, fmt.Errorf("sortspill: remove leftover temp file: %w", err)
		}
		removed++
	}
	if len(foreign) > 0 {
		ts.opts.Logger.Warn("sortspill: files in the temp directory that heapkv did not write were left alone",
			"dir", ts.dir, "files", foreign)
	}
	return removed, nil
}

func (ts *TempSpace) mkdir() error {
	ts.mkOnce.Do(func() {
		if err := ts.fs.MkdirAll(ts.dir); err != nil {
			ts.mkErr = fmt.Errorf("sortspill: create temp directory: %w", err)
		}
	})
	return ts.mkErr
}

// Op is one operation's share of the temp space: the files it has open and
// the bytes they hold, under temp_file_limit. An Op is used by one goroutine.
// Close removes every file it still has; it is safe to call more than once.
type Op struct {
	ts      *TempSpace
	used    int64 // bytes in this operation's live files
	peak    int64
	written int64 // bytes written to its files, all told
	read    int64 // bytes read back
	files   map[*tempFile]struct{}
}

// NewOp starts an operation's use of the temp space. A nil TempSpace gives a
// nil Op, which refuses to create files: the operation then cannot spill.
func (ts *TempSpace) NewOp() *Op {
	if ts == nil {
		return nil
	}
	return &Op{ts: ts, files: make(map[*tempFile]struct{})}
}

// errNoTempSpace is returned when an operation must spill but was given no
// temp space.
var errNoTempSpace = errors.New("sortspill: the operation must spill but has no temp space")

// create opens a new temp file of this operation.
func (op *Op) create() (*tempFile, error) {
	if op == nil {
		return nil, errNoTempSpace
	}
	if err := op.ts.mkdir(); err != nil {
		return nil, err
	}
	name := path.Join(op.ts.dir, tempPrefix+strconv.FormatUint(op.ts.seq.Add(1), 10))
	f, err := op.ts.fs.Create(name)
	if err != nil {
		return nil, fmt.Errorf("sortspill: create temp file: %w", err)
	}
	op.ts.files.Add(1)
	tf := &tempFile{op: op, f: f, name: name}
	op.files[tf] = struct{}{}
	return tf, nil
}

// Peak returns the most bytes this operation's temp files held at once.
func (op *Op) Peak() int64 {
	if op == nil {
		return 0
	}
	return op.peak
}

// Written and Read return the bytes the operation wrote to and read from
// its temp files (EXPLAIN's "temp written" and "temp read").
func (op *Op) Written() int64 {
	if op == nil {
		return 0
	}
	return op.written
}

// Read: see Written.
func (op *Op) Read() int64 {
	if op == nil {
		return 0
	}
	return op.read
}

// Close removes every file of the operation and returns the first error.
func (op *Op) Close() error {
	if op == nil {
		return nil
	}
	var first error
	for tf := range op.files {
		if err := tf.remove(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// tempFile is an append-only temp file that counts its bytes against its
// operation's limit. It is never synced: a crash loses it, and Sweep
// removes what is left.
type tempFile struct {
	op   *Op
	f    vfs.File
	name string
	size int64
}

// append writes p at the end of the file.
func (tf *tempFile) append(p []byte) error {
	op := tf.op
	if lim := op.ts.opts.Limit; lim >= 0 && op.used+int64(len(p)) > lim {
		return fmt.Errorf("%w: the operation's temp files would hold %d bytes, the limit is %d",
			ErrTempFileLimit, op.used+int64(len(p)), lim)
	}
	if _, err := tf.f.WriteAt(p, tf.size); err != nil {
		return fmt.Errorf("sortspill: write temp file: %w", err)
	}
	tf.size += int64(len(p))
	op.used += int64(len(p))
	op.written += int64(len(p))
	op.peak = max(op.peak, op.used)
	op.ts.bytes.Add(uint64(len(p)))
	return nil
}

// readAt reads len(p) bytes at off; a short read is an error, since the
// reader asks only for what the writer wrote.
func (tf *tempFile) readAt(p []byte, off int64) error {
	if off+int64(len(p)) > tf.size {
		return fmt.Errorf("sortspill: read past the end of temp file %s", tf.name)
	}
	if _, err := tf.f.ReadAt(p, off); err != nil {
		return fmt.Errorf("sortspill: read temp file: %w", err)
	}
	tf.op.read += int64(len(p))
	return nil
}

// remove closes and removes the file, and logs it if log_temp_files asks.
func (tf *tempFile) remove() error {
	op := tf.op
	if _, ok := op.files[tf]; !ok {
		return nil
	}
	delete(op.files, tf)
	op.used -= tf.size
	cerr := tf.f.Close()
	rerr := op.ts.fs.Remove(tf.name)
	if la := op.ts.opts.LogAbove; la >= 0 && tf.size >= la {
		op.ts.opts.Logger.Info("sortspill: temporary file", "path", tf.name, "size", tf.size)
	}
	if rerr != nil && !vfs.IsNotExist(rerr) {
		return fmt.Errorf("sortspill: remove temp file: %w", rerr)
	}
	if cerr != nil {
		return fmt.Errorf("sortspill: close temp file: %w", cerr)
	}
	return nil
}
