package vfs

import (
	"errors"
	"io"
	"io/fs"
)

// File is an open file. Reads and writes are positional, so one File may be
// used by several goroutines at once; the implementation serialises what it
// must.
type File interface {
	io.ReaderAt
	io.WriterAt
	io.Closer
	// Sync makes every write acknowledged so far durable (fsync).
	Sync() error
	// Truncate sets the file's size; growing fills with zeros.
	Truncate(size int64) error
	// Size returns the current size in bytes.
	Size() (int64, error)
	// Name returns the path the file was opened with.
	Name() string
}

// FS is the file system every subsystem does its I/O through. Paths are
// slash-separated and may be absolute; the in-memory implementation treats
// them as plain names below its root.
//
// Durability follows POSIX as storage engines must assume it: a write is
// durable after Sync of its file; a create, rename or remove is durable after
// SyncDir of the directory that holds the name.
//
// Files are created with mode FilePerm and directories with DirPerm, whatever
// the process's umask (see doc.go, Permissions).
type FS interface {
	// Create creates the named file, or truncates it if it exists, and opens
	// it for reading and writing. The file's mode is FilePerm afterwards,
	// also if it existed with another. Use it only for a file known to be
	// missing or meant to be emptied: it truncates.
	Create(name string) (File, error)
	// Open opens an existing file for reading and writing. A missing file
	// gives an error that matches fs.ErrNotExist.
	Open(name string) (File, error)
	// Remove removes a file or an empty directory.
	Remove(name string) error
	// Rename atomically replaces newname with oldname.
	Rename(oldname, newname string) error
	// MkdirAll creates a directory and any missing parents, each with mode
	// DirPerm. Directories that exist already keep their mode.
	MkdirAll(dir string) error
	// List returns the names (not paths) of the entries of dir, sorted.
	List(dir string) ([]string, error)
	// Stat returns the size of the named file; a missing file gives an error
	// that matches fs.ErrNotExist.
	Stat(name string) (size int64, err error)
	// Perm returns the permission bits (fs.ModePerm) of the named file or
	// directory, following symbolic links; a missing one gives an error that
	// matches fs.ErrNotExist.
	Perm(name string) (fs.FileMode, error)
	// SyncDir makes the entries of dir (creates, renames, removes) durable.
	SyncDir(dir string) error
	// Lock takes an exclusive advisory lock on the named file, creating it if
	// needed (with mode FilePerm). It fails at once, matching ErrLocked, if
	// the lock is held, whether by this process or another. Closing the
	// returned value releases the lock.
	Lock(name string) (io.Closer, error)
}

// The modes of what an FS creates: only the owner may read or write the
// database's files (PostgreSQL's pg_dir_create_mode / pg_file_create_mode).
const (
	DirPerm  fs.FileMode = 0o700
	FilePerm fs.FileMode = 0o600
)

// ErrLocked is returned by FS.Lock when another holder has the lock.
var ErrLocked = errors.New("vfs: file is locked")

// IsNotExist reports whether err says a file or directory does not exist.
func IsNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }

// WriteFileAtomic replaces name with data durably: it writes a temporary file
// beside it, syncs it, renames it over name and syncs the directory. After a
// crash the file holds either the old or the new contents, never a mix. The
// temporary file, name+".tmp", is the helper's own: Create truncating one
// left by an earlier attempt is intended; name itself is only ever replaced
// by the rename, never truncated. The new file has mode FilePerm.
func WriteFileAtomic(fsys FS, name string, data []byte) error {
	err := CreateAtomic(fsys, name+".tmp", name, func(f File) error {
		_, err := f.WriteAt(data, 0)
		return err
	})
	if err != nil {
		return err
	}
	return fsys.SyncDir(Dir(name))
}

// CreateAtomic makes name appear with the contents fill writes: it creates
// (or truncates) tmp, calls fill on it, syncs and closes it, and renames it
// over name. It stops at the first error, closing tmp if it is open and
// leaving it behind. It does not sync the directory: a caller that needs the
// rename to be durable calls SyncDir after it, as WriteFileAtomic does.
func CreateAtomic(fsys FS, tmp, name string, fill func(File) error) error {
	f, err := fsys.Create(tmp)
	if err != nil {
		return err
	}
	if err := fill(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return fsys.Rename(tmp, name)
}

// ReadFile reads the whole named file.
func ReadFile(fsys FS, name string) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	n, err := f.Size()
	if err != nil {
		return nil, err
	}
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return buf, nil
}

// Dir returns all but the last element of a slash-separated path.
func Dir(name string) string {
	for i := len(name) - 1; i >= 0; i-- {
		if name[i] == '/' {
			if i == 0 {
				return "/"
			}
			return name[:i]
		}
	}
	return "."
}
