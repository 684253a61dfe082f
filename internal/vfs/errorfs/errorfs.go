package errorfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/heapkv/heapkv/internal/vfs"
)

// Kind is the kind of an operation.
type Kind uint8

const (
	OpCreate   Kind = iota // FS.Create
	OpOpen                 // FS.Open
	OpRemove               // FS.Remove
	OpRename               // FS.Rename (Path old, NewPath new)
	OpMkdirAll             // FS.MkdirAll
	OpList                 // FS.List
	OpStat                 // FS.Stat
	OpSyncDir              // FS.SyncDir
	OpLock                 // FS.Lock
	OpRead                 // File.ReadAt
	OpWrite                // File.WriteAt
	OpSync                 // File.Sync
	OpTruncate             // File.Truncate (Off is the new size)
	OpSize                 // File.Size
	OpClose                // File.Close
	OpPerm                 // FS.Perm
)

var kindNames = [...]string{"create", "open", "remove", "rename", "mkdirall", "list", "stat",
	"syncdir", "lock", "read", "write", "sync", "truncate", "size", "close", "perm"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Op describes one operation.
type Op struct {
	// Index is the operation's place, from 1, among the foreground
	// operations of the FS, or among its background ones if Background.
	Index int64
	// Background marks an operation the FS's background test (see
	// SetBackground) claimed: made by a goroutine of the code under test
	// that runs on its own schedule.
	Background bool
	Kind       Kind
	// Path is the file or directory as the caller named it; for a File
	// operation, the name the file was opened with.
	Path string
	// NewPath is Rename's new name.
	NewPath string
	// Off is the offset of a ReadAt or WriteAt and the new size of a
	// Truncate.
	Off int64
	// Len is the length of a ReadAt or WriteAt.
	Len int
	// Grows says a WriteAt ends past, or a Truncate sets the size beyond,
	// the file's size when the operation started.
	Grows bool
}

// IsSync reports whether op makes something durable: a File.Sync or an
// FS.SyncDir.
func (op Op) IsSync() bool { return op.Kind == OpSync || op.Kind == OpSyncDir }

// WriteOrExtend reports whether op writes data or extends a file: every
// WriteAt, and a Truncate that grows. These are what a full disk can fail.
func (op Op) WriteOrExtend() bool {
	return op.Kind == OpWrite || op.Kind == OpTruncate && op.Grows
}

func (op Op) String() string {
	s := fmt.Sprintf("#%d %s %s", op.Index, op.Kind, op.Path)
	if op.Background {
		s = "background " + s
	}
	switch op.Kind {
	case OpRename:
		s += " -> " + op.NewPath
	case OpRead, OpWrite:
		s += fmt.Sprintf(" @%d+%d", op.Off, op.Len)
	case OpTruncate:
		s += fmt.Sprintf(" to %d", op.Off)
	}
	if op.Grows {
		s += " (grows)"
	}
	return s
}

// ErrInjected is matched (errors.Is) by every error an Injector causes.
var ErrInjected = errors.New("errorfs: injected error")

// Error is the error returned by an operation an Injector failed. It
// matches ErrInjected and unwraps to the injector's cause.
type Error struct {
	Op  Op
	Err error
}

func (e *Error) Error() string        { return fmt.Sprintf("errorfs: injected %v at %v", e.Err, e.Op) }
func (e *Error) Unwrap() error        { return e.Err }
func (e *Error) Is(target error) bool { return target == ErrInjected }

// Injector decides, before each operation runs, whether it fails: a nil
// result lets it run, anything else is the cause of its failure.
type Injector interface {
	MaybeError(op Op) error
}

// InjectorFunc is an Injector in a function.
type InjectorFunc func(op Op) error

// MaybeError calls fn.
func (fn InjectorFunc) MaybeError(op Op) error { return fn(op) }

func causeOrEIO(err error) error {
	if err == nil {
		return syscall.EIO
	}
	return err
}

// OnIndex fails the foreground operation with index n, once, with err
// (nil: syscall.EIO).
func OnIndex(n int64, err error) Injector {
	err = causeOrEIO(err)
	return InjectorFunc(func(op Op) error {
		if !op.Background && op.Index == n {
			return err
		}
		return nil
	})
}

// FromIndex fails the foreground operation with index n and every later
// operation, background ones included, with err (nil: syscall.EIO), as a
// device that died would.
func FromIndex(n int64, err error) Injector {
	err = causeOrEIO(err)
	var dead atomic.Bool
	return InjectorFunc(func(op Op) error {
		if !op.Background && op.Index >= n {
			dead.Store(true)
		}
		if dead.Load() {
			return err
		}
		return nil
	})
}

// Nth fails the nth operation for which match returns true (counted from
// when the injector is first consulted) with err (nil: syscall.EIO), and,
// if persistent, every later matching one too.
func Nth(n int64, match func(Op) bool, persistent bool, err error) Injector {
	err = causeOrEIO(err)
	var seen atomic.Int64
	return InjectorFunc(func(op Op) error {
		if !match(op) {
			return nil
		}
		k := seen.Add(1)
		if k == n || persistent && k > n {
			return err
		}
		return nil
	})
}

// DiskFull models a disk that fills up: the nth foreground operation that
// writes or extends (Op.WriteOrExtend) fails with syscall.ENOSPC, and from
// then on so does every operation, background ones included, that grows a
// file. Writes within a file's current size still succeed, as they need no
// new blocks.
func DiskFull(n int64) Injector {
	var seen atomic.Int64
	var full atomic.Bool
	return InjectorFunc(func(op Op) error {
		if !op.WriteOrExtend() {
			return nil
		}
		if !op.Background && seen.Add(1) == n {
			full.Store(true)
			return syscall.ENOSPC
		}
		if full.Load() && op.Grows {
			return syscall.ENOSPC
		}
		return nil
	})
}

// FS wraps a vfs.FS, counting its operations and failing those its
// Injector chooses.
type FS struct {
	fs vfs.FS
	// mem is fs if it is a MemFS: then a failed Sync is made to fail inside
	// the MemFS too, so that it loses its unsynced writes.
	mem *vfs.MemFS
	n   atomic.Int64 // foreground operations started
	bg  atomic.Int64 // background operations started
	// syncMu is held shared by every Sync that goes through to a MemFS and
	// exclusively by one that arms the MemFS to fail it, so that no other
	// Sync consumes the armed rule.
	syncMu sync.RWMutex

	mu struct {
		sync.Mutex
		inj        Injector
		background func() bool
		done       func(Op, error)
		injected   []Op
		tracing    bool
		trace      []Op
	}
}

var _ vfs.FS = (*FS)(nil)

// Wrap returns fsys wrapped. A nil inj only counts.
func Wrap(fsys vfs.FS, inj Injector) *FS {
	f := &FS{fs: fsys}
	f.mem, _ = fsys.(*vfs.MemFS)
	f.mu.inj = inj
	return f
}

// Unwrap returns the wrapped FS.
func (f *FS) Unwrap() vfs.FS { return f.fs }

// Ops returns how many foreground operations have started so far.
func (f *FS) Ops() int64 { return f.n.Load() }

// BackgroundOps returns how many background operations have started so far.
func (f *FS) BackgroundOps() int64 { return f.bg.Load() }

// SetBackground sets the test, made at the start of every operation in the
// goroutine making it, that says the operation is a background one: it is
// then numbered in a sequence of its own (Op.Background), so that the
// foreground sequence of a deterministic workload stays the same from run
// to run however the code under test schedules its own goroutines. nil
// (the default) makes every operation foreground.
func (f *FS) SetBackground(fn func() bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.background = fn
}

// SetInjector replaces the injector; nil stops injecting. Counting goes on.
func (f *FS) SetInjector(inj Injector) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.inj = inj
}

// OnDone sets the function called after every operation with its result
// (see the package documentation); nil removes it.
func (f *FS) OnDone(fn func(op Op, err error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.done = fn
}

// Injected returns the operations that were failed, in order.
func (f *FS) Injected() []Op {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Op(nil), f.mu.injected...)
}

// Trace turns recording of every operation on or off; Traced returns the
// record.
func (f *FS) Trace(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.tracing = on
}

// Traced returns the operations recorded while tracing was on.
func (f *FS) Traced() []Op {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Op(nil), f.mu.trace...)
}

// start numbers op and asks the injector about it.
func (f *FS) start(op Op) (Op, error) {
	f.mu.Lock()
	bg := f.mu.background
	f.mu.Unlock()
	if bg != nil && bg() {
		op.Background = true
		op.Index = f.bg.Add(1)
	} else {
		op.Index = f.n.Add(1)
	}
	f.mu.Lock()
	inj := f.mu.inj
	if f.mu.tracing {
		f.mu.trace = append(f.mu.trace, op)
	}
	f.mu.Unlock()
	if inj == nil {
		return op, nil
	}
	cause := inj.MaybeError(op)
	if cause == nil {
		return op, nil
	}
	f.mu.Lock()
	f.mu.injected = append(f.mu.injected, op)
	f.mu.Unlock()
	return op, &Error{Op: op, Err: cause}
}

// finish runs the done hook.
func (f *FS) finish(op Op, err error) {
	f.mu.Lock()
	done := f.mu.done
	f.mu.Unlock()
	if done != nil {
		done(op, err)
	}
}

func (f *FS) wrapFile(vf vfs.File, name string) vfs.File {
	return &file{fs: f, f: vf, name: name}
}

// Create is vfs.FS.Create.
func (f *FS) Create(name string) (vfs.File, error) {
	op, err := f.start(Op{Kind: OpCreate, Path: name})
	var vf vfs.File
	if err == nil {
		vf, err = f.fs.Create(name)
	}
	f.finish(op, err)
	if err != nil {
		return nil, err
	}
	return f.wrapFile(vf, name), nil
}

// Open is vfs.FS.Open.
func (f *FS) Open(name string) (vfs.File, error) {
	op, err := f.start(Op{Kind: OpOpen, Path: name})
	var vf vfs.File
	if err == nil {
		vf, err = f.fs.Open(name)
	}
	f.finish(op, err)
	if err != nil {
		return nil, err
	}
	return f.wrapFile(vf, name), nil
}

// Remove is vfs.FS.Remove.
func (f *FS) Remove(name string) error {
	op, err := f.start(Op{Kind: OpRemove, Path: name})
	if err == nil {
		err = f.fs.Remove(name)
	}
	f.finish(op, err)
	return err
}

// Rename is vfs.FS.Rename.
func (f *FS) Rename(oldname, newname string) error {
	op, err := f.start(Op{Kind: OpRename, Path: oldname, NewPath: newname})
	if err == nil {
		err = f.fs.Rename(oldname, newname)
	}
	f.finish(op, err)
	return err
}

// MkdirAll is vfs.FS.MkdirAll.
func (f *FS) MkdirAll(dir string) error {
	op, err := f.start(Op{Kind: OpMkdirAll, Path: dir})
	if err == nil {
		err = f.fs.MkdirAll(dir)
	}
	f.finish(op, err)
	return err
}

// List is vfs.FS.List.
func (f *FS) List(dir string) ([]string, error) {
	op, err := f.start(Op{Kind: OpList, Path: dir})
	var names []string
	if err == nil {
		names, err = f.fs.List(dir)
	}
	f.finish(op, err)
	return names, err
}

// Stat is vfs.FS.Stat.
func (f *FS) Stat(name string) (int64, error) {
	op, err := f.start(Op{Kind: OpStat, Path: name})
	var size int64
	if err == nil {
		size, err = f.fs.Stat(name)
	}
	f.finish(op, err)
	return size, err
}

// Perm is vfs.FS.Perm.
func (f *FS) Perm(name string) (fs.FileMode, error) {
	op, err := f.start(Op{Kind: OpPerm, Path: name})
	var mode fs.FileMode
	if err == nil {
		mode, err = f.fs.Perm(name)
	}
	f.finish(op, err)
	return mode, err
}

// SyncDir is vfs.FS.SyncDir. A failed SyncDir leaves the directory's
// unsynced entries as they are: no file system is known to drop them on a
// failed directory fsync and then report success.
func (f *FS) SyncDir(dir string) error {
	op, err := f.start(Op{Kind: OpSyncDir, Path: dir})
	if err == nil {
		err = f.fs.SyncDir(dir)
	}
	f.finish(op, err)
	return err
}

// Lock is vfs.FS.Lock. Releasing the lock is not an operation.
func (f *FS) Lock(name string) (io.Closer, error) {
	op, err := f.start(Op{Kind: OpLock, Path: name})
	var c io.Closer
	if err == nil {
		c, err = f.fs.Lock(name)
	}
	f.finish(op, err)
	return c, err
}

// file is a File of the wrapper.
type file struct {
	fs   *FS
	f    vfs.File
	name string
}

func (fl *file) Name() string { return fl.f.Name() }

func (fl *file) ReadAt(p []byte, off int64) (int, error) {
	op, err := fl.fs.start(Op{Kind: OpRead, Path: fl.name, Off: off, Len: len(p)})
	n := 0
	if err == nil {
		n, err = fl.f.ReadAt(p, off)
	}
	fl.fs.finish(op, err)
	return n, err
}

// grows reports whether the file is smaller than end. The size is asked of
// the wrapped file and is not an operation of its own.
func (fl *file) grows(end int64) bool {
	size, err := fl.f.Size()
	return err == nil && end > size
}

func (fl *file) WriteAt(p []byte, off int64) (int, error) {
	op, err := fl.fs.start(Op{Kind: OpWrite, Path: fl.name, Off: off, Len: len(p), Grows: len(p) > 0 && fl.grows(off+int64(len(p)))})
	n := 0
	if err == nil {
		n, err = fl.f.WriteAt(p, off)
	}
	fl.fs.finish(op, err)
	return n, err
}

func (fl *file) Truncate(size int64) error {
	op, err := fl.fs.start(Op{Kind: OpTruncate, Path: fl.name, Off: size, Grows: fl.grows(size)})
	if err == nil {
		err = fl.f.Truncate(size)
	}
	fl.fs.finish(op, err)
	return err
}

func (fl *file) Size() (int64, error) {
	op, err := fl.fs.start(Op{Kind: OpSize, Path: fl.name})
	var size int64
	if err == nil {
		size, err = fl.f.Size()
	}
	fl.fs.finish(op, err)
	return size, err
}

func (fl *file) Sync() error {
	op, err := fl.fs.start(Op{Kind: OpSync, Path: fl.name})
	switch {
	case err == nil && fl.fs.mem != nil:
		fl.fs.syncMu.RLock()
		err = fl.f.Sync()
		fl.fs.syncMu.RUnlock()
	case err == nil:
		err = fl.f.Sync()
	case fl.fs.mem != nil:
		fl.failMemSync(err)
	}
	fl.fs.finish(op, err)
	return err
}

// failMemSync makes the MemFS under fl fail one Sync of fl, so that the
// file's unsynced writes are lost as the kernel loses them.
func (fl *file) failMemSync(cause error) {
	if _, err := fl.f.Size(); err != nil {
		return // closed or crashed: the MemFS would not reach its injection point
	}
	m := fl.fs.mem
	fl.fs.syncMu.Lock()
	defer fl.fs.syncMu.Unlock()
	m.InjectError(vfs.Injection{Op: vfs.OpSync, Path: fl.name, Nth: 1, Err: cause})
	if err := fl.f.Sync(); !errors.Is(err, vfs.ErrInjected) {
		// The rule did not fire (the handle died meanwhile): disarm it.
		m.ClearInjections()
	}
}

func (fl *file) Close() error {
	op, err := fl.fs.start(Op{Kind: OpClose, Path: fl.name})
	cerr := fl.f.Close() // a failed close still releases the file
	if err == nil {
		err = cerr
	}
	fl.fs.finish(op, err)
	return err
}
