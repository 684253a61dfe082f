package vfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"syscall"
)

// MemFS is an in-memory FS for tests that knows what a power loss may do.
//
// Every file is an inode holding three things: data, what reads see now;
// durable, what the disk holds for certain; and pending, the writes and
// truncates made since the last successful Sync, in order. Every directory
// likewise holds its current entries, its durable entries and the creates,
// renames and removes made since its last SyncDir. Crash rebuilds the whole
// tree from the durable state plus a seeded random choice of the pending
// operations, which is every state the durability model in doc.go allows
// (and a few a journaling file system would not produce: pending operations
// are kept or dropped independently, not as a prefix).
//
// Paths are cleaned with path.Clean and resolved below a single root: "a/b",
// "/a/b" and "a//c/../b" name the same file. Directories are explicit: a file
// can only be created in a directory made by MkdirAll.
//
// Every file and directory has permission bits, as the OS FS would leave
// them: DirPerm for a directory (the root too), FilePerm for a file, FilePerm
// again after a Create that truncates an existing file. Chmod changes them,
// so a test can make a directory group- or world-writable; Perm reports
// them. They are metadata that needs no sync: a Crash keeps them.
//
// A torn write (see CrashOptions.TearProbability) leaves the file as if the
// whole write had reached the disk and then every byte from the first lost
// sector on had been put back to what the disk held before: old contents
// where the file had them, zeros past its old end. So a torn write that
// extended the file still extends it to the write's end, and the lost tail
// reads as zeros, as on file systems that update the size before the data.
//
// All state is guarded by one mutex; Files may be used from many goroutines.
type MemFS struct {
	mu struct {
		sync.Mutex
		// root is the root directory; it always exists.
		root *dirNode
		// epoch is bumped by Crash; a memFile opened in an older epoch is dead.
		epoch uint64
		// locks maps a cleaned path to the Lock that holds it.
		locks map[string]*memLock
		// rules are the injections in the order they were added.
		rules []*rule
		// limit is the space limit in bytes; <= 0 means none.
		limit int64
		// stats counts successful operations.
		stats MemFSStats
	}
}

var _ FS = (*MemFS)(nil)

// sectorSize is the unit in which a torn write reaches the disk.
const sectorSize = 512

// ErrInjected is matched (errors.Is) by every error an Injection produces;
// the same error also matches the Injection's Err.
var ErrInjected = errors.New("vfs: injected error")

// ErrCrashed is returned by every method of a File opened before
// MemFS.Crash. It also matches fs.ErrClosed.
var ErrCrashed error = crashedError{}

type crashedError struct{}

func (crashedError) Error() string        { return "vfs: file handle invalidated by crash" }
func (crashedError) Is(target error) bool { return target == fs.ErrClosed }

// injectedError is what a firing Injection returns: it matches ErrInjected
// and unwraps to the injected cause (syscall.EIO by default).
type injectedError struct{ err error }

func (e injectedError) Error() string        { return "vfs: injected error: " + e.err.Error() }
func (e injectedError) Is(target error) bool { return target == ErrInjected }
func (e injectedError) Unwrap() error        { return e.err }

// node is a directory entry: an *inode or a *dirNode.
type node interface{ isNode() }

// inode is a file's contents. data is what reads see; durable is what the
// disk surely holds; pending are the writes and truncates since the last
// successful Sync, in order. A crash leaves durable with some of pending
// applied (a write possibly torn). durable and data never share memory;
// the byte slices in pending are private copies and never change.
type inode struct {
	data    []byte
	durable []byte
	pending []fileOp
	mode    fs.FileMode // permission bits
}

func (*inode) isNode() {}

// fileOp is an unsynced change to a file.
type fileOp struct {
	truncate bool   // a Truncate to size off, else a write of data at off
	off      int64  // write: its offset; truncate: the new size
	data     []byte // write: the bytes written
}

// applyTo returns img with the operation applied; img may be reused.
func (op fileOp) applyTo(img []byte) []byte {
	if op.truncate {
		return resize(img, op.off)
	}
	return writeAt(img, op.data, op.off)
}

// dirNode is a directory. cur is the namespace as everyone sees it now;
// durable is what the disk surely holds; pending are the creates, renames
// and removes made since the last successful SyncDir, in order. Both maps
// are never nil. A directory never moves to another parent, so none is ever
// its own ancestor (a crash may leave one under two names in its parent).
type dirNode struct {
	cur     map[string]node
	durable map[string]node
	pending []dirOp
	mode    fs.FileMode // permission bits
}

func (*dirNode) isNode() {}

func newDir() *dirNode {
	return &dirNode{cur: map[string]node{}, durable: map[string]node{}, mode: DirPerm}
}

type dirOpKind int

const (
	dirAdd    dirOpKind = iota // name -> node
	dirRemove                  // delete name
	dirRename                  // delete name, to -> node
)

// dirOp is an unsynced change to a directory.
type dirOp struct {
	kind dirOpKind
	name string
	to   string
	node node
	// forced marks an entry made by MkdirAll, which is durable at once:
	// every crash replays it.
	forced bool
}

func (op dirOp) applyTo(m map[string]node) {
	switch op.kind {
	case dirAdd:
		m[op.name] = op.node
	case dirRemove:
		delete(m, op.name)
	case dirRename:
		delete(m, op.name)
		m[op.to] = op.node
	}
}

// NewMemFS returns an empty MemFS holding only its root directory.
func NewMemFS() *MemFS {
	m := &MemFS{}
	m.mu.root = newDir()
	m.mu.locks = map[string]*memLock{}
	return m
}

// MemFSStats counts a MemFS's successful operations.
type MemFSStats struct {
	Reads        int64 // File.ReadAt calls
	Writes       int64 // File.WriteAt calls
	Syncs        int64 // File.Sync calls
	DirSyncs     int64 // FS.SyncDir calls
	BytesWritten int64 // bytes written by WriteAt
}

// Stats returns the counts so far. Crash keeps them.
func (m *MemFS) Stats() MemFSStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mu.stats
}

// clean maps a name to its key: absolute and cleaned, "/" for the root.
func clean(name string) string { return path.Clean("/" + name) }

// dirLocked resolves a cleaned path to a directory.
func (m *MemFS) dirLocked(p string) (*dirNode, error) {
	d := m.mu.root
	if p == "/" {
		return d, nil
	}
	for _, c := range strings.Split(p[1:], "/") {
		e, ok := d.cur[c]
		if !ok {
			return nil, fs.ErrNotExist
		}
		if d, ok = e.(*dirNode); !ok {
			return nil, syscall.ENOTDIR
		}
	}
	return d, nil
}

// parentLocked resolves the directory holding the cleaned path p, and p's
// last element. The root has no parent.
func (m *MemFS) parentLocked(p string) (*dirNode, string, error) {
	if p == "/" {
		return nil, "", syscall.EINVAL
	}
	d, err := m.dirLocked(path.Dir(p))
	return d, path.Base(p), err
}

// fileLocked resolves a cleaned path to a file.
func (m *MemFS) fileLocked(p string) (*inode, error) {
	d, base, err := m.parentLocked(p)
	if err != nil {
		return nil, err
	}
	switch e := d.cur[base].(type) {
	case *inode:
		return e, nil
	case *dirNode:
		return nil, syscall.EISDIR
	}
	return nil, fs.ErrNotExist
}

// Create creates the named file, or truncates it if it exists (a pending
// truncate of the same inode), and opens it. The create is durable once the
// parent directory is synced.
func (m *MemFS) Create(name string) (File, error) {
	p := clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	d, base, err := m.parentLocked(p)
	if err == nil {
		if _, isDir := d.cur[base].(*dirNode); isDir {
			err = syscall.EISDIR
		}
	}
	if err == nil {
		err = m.injectLocked(OpCreate, p, "")
	}
	if err != nil {
		return nil, &fs.PathError{Op: "create", Path: name, Err: err}
	}
	return m.openLocked(name, p, createLocked(d, base, true)), nil
}

// createLocked returns the file base in d, creating it (mode FilePerm) if
// missing and truncating it, and setting its mode to FilePerm, if it exists
// and truncate is set. The entry must not be a directory.
func createLocked(d *dirNode, base string, truncate bool) *inode {
	if ino, ok := d.cur[base].(*inode); ok {
		if truncate {
			ino.data = ino.data[:0]
			ino.pending = append(ino.pending, fileOp{truncate: true})
			ino.mode = FilePerm
		}
		return ino
	}
	ino := &inode{mode: FilePerm}
	d.cur[base] = ino
	d.pending = append(d.pending, dirOp{kind: dirAdd, name: base, node: ino})
	return ino
}

// Open opens an existing file.
func (m *MemFS) Open(name string) (File, error) {
	p := clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	ino, err := m.fileLocked(p)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	return m.openLocked(name, p, ino), nil
}

func (m *MemFS) openLocked(name, p string, ino *inode) *memFile {
	return &memFile{fs: m, ino: ino, name: name, path: p, epoch: m.mu.epoch}
}

// Remove removes a file or an empty directory. Open Files of a removed file
// keep working. The remove is durable once the parent directory is synced.
func (m *MemFS) Remove(name string) error {
	p := clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	d, base, err := m.parentLocked(p)
	if err == nil {
		switch e := d.cur[base].(type) {
		case nil:
			err = fs.ErrNotExist
		case *dirNode:
			if len(e.cur) > 0 {
				err = syscall.ENOTEMPTY
			}
		}
	}
	if err == nil {
		err = m.injectLocked(OpRemove, p, "")
	}
	if err != nil {
		return &fs.PathError{Op: "remove", Path: name, Err: err}
	}
	delete(d.cur, base)
	d.pending = append(d.pending, dirOp{kind: dirRemove, name: base})
	return nil
}

// Rename moves oldname to newname, replacing a file there. Within one
// directory the rename is one pending operation, durable once that
// directory is synced. Across directories it is a remove from the old
// directory and an add to the new one, each durable once its own directory
// is synced, so a crash in between may leave the file under both names or
// neither. A directory may be renamed only within its parent and not onto
// an existing name. Open Files keep working.
func (m *MemFS) Rename(oldname, newname string) error {
	op, np := clean(oldname), clean(newname)
	m.mu.Lock()
	defer m.mu.Unlock()
	err := m.renameLocked(op, np)
	if err != nil {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: err}
	}
	return nil
}

func (m *MemFS) renameLocked(op, np string) error {
	od, obase, err := m.parentLocked(op)
	if err != nil {
		return err
	}
	nd, nbase, err := m.parentLocked(np)
	if err != nil {
		return err
	}
	e, ok := od.cur[obase]
	if !ok {
		return fs.ErrNotExist
	}
	target, exists := nd.cur[nbase]
	if op == np {
		return nil
	}
	if _, isDir := e.(*dirNode); isDir {
		if od != nd {
			return fmt.Errorf("memfs cannot move a directory to another directory: %w", errors.ErrUnsupported)
		}
		if exists {
			return syscall.EEXIST
		}
	} else if _, isDir := target.(*dirNode); isDir {
		return syscall.EISDIR
	}
	if err := m.injectLocked(OpRename, op, np); err != nil {
		return err
	}
	delete(od.cur, obase)
	nd.cur[nbase] = e
	if od == nd {
		od.pending = append(od.pending, dirOp{kind: dirRename, name: obase, to: nbase, node: e})
	} else {
		od.pending = append(od.pending, dirOp{kind: dirRemove, name: obase})
		nd.pending = append(nd.pending, dirOp{kind: dirAdd, name: nbase, node: e})
	}
	return nil
}

// MkdirAll creates dir and any missing parents. Unlike other namespace
// changes, the directories it creates are durable at once.
func (m *MemFS) MkdirAll(dir string) error {
	p := clean(dir)
	m.mu.Lock()
	defer m.mu.Unlock()
	if p == "/" {
		return nil
	}
	d := m.mu.root
	for _, c := range strings.Split(p[1:], "/") {
		switch e := d.cur[c].(type) {
		case *dirNode:
			d = e
		case *inode:
			return &fs.PathError{Op: "mkdir", Path: dir, Err: syscall.ENOTDIR}
		default:
			sub := newDir()
			d.cur[c] = sub
			d.pending = append(d.pending, dirOp{kind: dirAdd, name: c, node: sub, forced: true})
			d = sub
		}
	}
	return nil
}

// List returns the sorted names of the files and directories in dir.
func (m *MemFS) List(dir string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, err := m.dirLocked(clean(dir))
	if err != nil {
		return nil, &fs.PathError{Op: "list", Path: dir, Err: err}
	}
	return slices.Sorted(maps.Keys(d.cur)), nil
}

// Stat returns the current size of the named file; a directory has size 0.
func (m *MemFS) Stat(name string) (int64, error) {
	p := clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	ino, err := m.fileLocked(p)
	if errors.Is(err, syscall.EISDIR) || p == "/" {
		return 0, nil
	}
	if err != nil {
		return 0, &fs.PathError{Op: "stat", Path: name, Err: err}
	}
	return int64(len(ino.data)), nil
}

// nodeLocked resolves a cleaned path to a file or directory.
func (m *MemFS) nodeLocked(p string) (node, error) {
	if p == "/" {
		return m.mu.root, nil
	}
	d, base, err := m.parentLocked(p)
	if err != nil {
		return nil, err
	}
	if n, ok := d.cur[base]; ok {
		return n, nil
	}
	return nil, fs.ErrNotExist
}

// Perm returns the permission bits of the named file or directory.
func (m *MemFS) Perm(name string) (fs.FileMode, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.nodeLocked(clean(name))
	if err != nil {
		return 0, &fs.PathError{Op: "stat", Path: name, Err: err}
	}
	if d, ok := n.(*dirNode); ok {
		return d.mode, nil
	}
	return n.(*inode).mode, nil
}

// Chmod sets the permission bits (mode & fs.ModePerm) of the named file or
// directory, at once and durably. It exists for tests, for example of an
// engine that must refuse a group- or world-writable data directory; FS
// has no Chmod.
func (m *MemFS) Chmod(name string, mode fs.FileMode) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.nodeLocked(clean(name))
	if err != nil {
		return &fs.PathError{Op: "chmod", Path: name, Err: err}
	}
	switch n := n.(type) {
	case *dirNode:
		n.mode = mode.Perm()
	case *inode:
		n.mode = mode.Perm()
	}
	return nil
}

// SyncDir makes the current entries of dir durable.
func (m *MemFS) SyncDir(dir string) error {
	p := clean(dir)
	m.mu.Lock()
	defer m.mu.Unlock()
	d, err := m.dirLocked(p)
	if err == nil {
		err = m.injectLocked(OpSyncDir, p, "")
	}
	if err != nil {
		return &fs.PathError{Op: "syncdir", Path: dir, Err: err}
	}
	d.durable = maps.Clone(d.cur)
	d.pending = nil
	m.mu.stats.DirSyncs++
	return nil
}

// Lock takes the named lock, creating the file if needed (a pending create
// like any other). Locks conflict only within this MemFS; Crash releases
// them all. Lock is never failed by an Injection.
func (m *MemFS) Lock(name string) (io.Closer, error) {
	p := clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	d, base, err := m.parentLocked(p)
	if err == nil {
		if _, isDir := d.cur[base].(*dirNode); isDir {
			err = syscall.EISDIR
		}
	}
	if err != nil {
		return nil, &fs.PathError{Op: "lock", Path: name, Err: err}
	}
	if _, held := m.mu.locks[p]; held {
		return nil, fmt.Errorf("%w: %s", ErrLocked, name)
	}
	createLocked(d, base, false)
	l := &memLock{fs: m, path: p}
	m.mu.locks[p] = l
	return l, nil
}

// memLock is a lock returned by MemFS.Lock.
type memLock struct {
	fs       *MemFS
	path     string
	released bool // guarded by fs.mu
}

// Close releases the lock. After a Crash it has nothing left to release.
func (l *memLock) Close() error {
	m := l.fs
	m.mu.Lock()
	defer m.mu.Unlock()
	if l.released {
		return &fs.PathError{Op: "unlock", Path: l.path, Err: fs.ErrClosed}
	}
	l.released = true
	if m.mu.locks[l.path] == l {
		delete(m.mu.locks, l.path)
	}
	return nil
}

// memFile is an open MemFS file. It refers to the inode, not the name, so it
// survives renames and removes; it dies when closed or when the MemFS
// crashes.
type memFile struct {
	fs    *MemFS
	ino   *inode
	name  string // as given to Open or Create
	path  string // cleaned, for matching injections
	epoch uint64 // the MemFS epoch it was opened in
	// closed is set by Close; guarded by fs.mu.
	closed bool
}

// checkLocked returns the error for a use of a closed or crashed handle.
func (f *memFile) checkLocked(op string) error {
	if f.closed {
		return &fs.PathError{Op: op, Path: f.name, Err: fs.ErrClosed}
	}
	if f.epoch != f.fs.mu.epoch {
		return &fs.PathError{Op: op, Path: f.name, Err: ErrCrashed}
	}
	return nil
}

// beginIOLocked runs the checks ReadAt and WriteAt share, in their order: a
// closed or crashed handle, a negative offset, an empty p (which succeeds
// without counting as an operation), then the injection point for op. done
// reports that the call ends here, with err (nil for an empty p); name is the
// PathError's Op.
func (f *memFile) beginIOLocked(name string, op Op, off int64, n int) (done bool, err error) {
	if err := f.checkLocked(name); err != nil {
		return true, err
	}
	if off < 0 {
		return true, &fs.PathError{Op: name, Path: f.name, Err: syscall.EINVAL}
	}
	if n == 0 {
		return true, nil
	}
	if err := f.fs.injectLocked(op, f.path, ""); err != nil {
		return true, &fs.PathError{Op: name, Path: f.name, Err: err}
	}
	return false, nil
}

// ReadAt reads what the file holds now, like os.File.ReadAt: fewer than
// len(p) bytes come with io.EOF.
func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	m := f.fs
	m.mu.Lock()
	defer m.mu.Unlock()
	if done, err := f.beginIOLocked("read", OpRead, off, len(p)); done {
		return 0, err
	}
	m.mu.stats.Reads++
	if off >= int64(len(f.ino.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.ino.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// WriteAt writes p at off, growing the file with zeros as needed. The write
// is visible at once and durable after Sync. It writes all of p or nothing.
func (f *memFile) WriteAt(p []byte, off int64) (int, error) {
	m := f.fs
	m.mu.Lock()
	defer m.mu.Unlock()
	if done, err := f.beginIOLocked("write", OpWrite, off, len(p)); done {
		return 0, err
	}
	if err := m.reserveLocked(f.ino, off+int64(len(p))); err != nil {
		return 0, &fs.PathError{Op: "write", Path: f.name, Err: err}
	}
	op := fileOp{off: off, data: slices.Clone(p)}
	f.ino.data = op.applyTo(f.ino.data)
	f.ino.pending = append(f.ino.pending, op)
	m.mu.stats.Writes++
	m.mu.stats.BytesWritten += int64(len(p))
	return len(p), nil
}

// Truncate sets the file's size. It is durable after Sync.
func (f *memFile) Truncate(size int64) error {
	m := f.fs
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := f.checkLocked("truncate"); err != nil {
		return err
	}
	if size < 0 {
		return &fs.PathError{Op: "truncate", Path: f.name, Err: syscall.EINVAL}
	}
	err := m.injectLocked(OpTruncate, f.path, "")
	if err == nil {
		err = m.reserveLocked(f.ino, size)
	}
	if err != nil {
		return &fs.PathError{Op: "truncate", Path: f.name, Err: err}
	}
	op := fileOp{truncate: true, off: size}
	f.ino.data = op.applyTo(f.ino.data)
	f.ino.pending = append(f.ino.pending, op)
	return nil
}

// Sync applies the pending writes and truncates, in order, to the durable
// image. A Sync that fails drops them instead (doc.go, rule 3).
func (f *memFile) Sync() error {
	m := f.fs
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := f.checkLocked("sync"); err != nil {
		return err
	}
	if err := m.injectLocked(OpSync, f.path, ""); err != nil {
		f.ino.pending = nil
		return &fs.PathError{Op: "sync", Path: f.name, Err: err}
	}
	for _, op := range f.ino.pending {
		f.ino.durable = op.applyTo(f.ino.durable)
	}
	f.ino.pending = nil
	m.mu.stats.Syncs++
	return nil
}

// Size returns the current size.
func (f *memFile) Size() (int64, error) {
	m := f.fs
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := f.checkLocked("stat"); err != nil {
		return 0, err
	}
	return int64(len(f.ino.data)), nil
}

// Name returns the name the file was opened with.
func (f *memFile) Name() string { return f.name }

// Close closes the handle. Closing a handle that a Crash invalidated
// returns ErrCrashed.
func (f *memFile) Close() error {
	m := f.fs
	m.mu.Lock()
	defer m.mu.Unlock()
	err := f.checkLocked("close")
	f.closed = true
	return err
}

// resize returns b with length n, zero-filled past its old length; b may be
// reused.
func resize(b []byte, n int64) []byte {
	if n <= int64(len(b)) {
		return b[:n]
	}
	old := len(b)
	b = slices.Grow(b, int(n)-old)[:n]
	clear(b[old:])
	return b
}

// writeAt returns b with p copied in at off, grown as needed; b may be
// reused.
func writeAt(b, p []byte, off int64) []byte {
	if end := off + int64(len(p)); end > int64(len(b)) {
		b = resize(b, end)
	}
	copy(b[off:], p)
	return b
}
