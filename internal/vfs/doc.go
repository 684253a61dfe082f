// Package vfs is the file system heapkv does all of its I/O through.
//
// Two implementations exist. Default is the operating system's. MemFS lives
// in memory and exists for tests: it remembers which writes and which
// directory entries were made durable, so that Crash can turn it into any
// state a power loss could leave behind, and it can inject I/O errors
// (EIO on the Nth read, write or sync of a file; ENOSPC past a byte budget).
// Every crash test of the project trusts MemFS, so its semantics are pinned
// down by its own tests.
//
// # Durability model
//
// The model is the weakest one a careful engine must survive on Linux file
// systems (see ALICE, OSDI '14, and PostgreSQL's "fsyncgate"):
//
//  1. A WriteAt or Truncate becomes durable only when Sync of that file
//     returns nil. Until then a crash may drop it, or, for a write, keep only
//     a prefix of it (a torn write: the sectors before some point reached the
//     disk, the rest did not).
//  2. A Create, Rename or Remove becomes durable only when SyncDir of the
//     directory holding the name returns nil. Until then a crash may undo it:
//     a created file vanishes, a renamed file is found under its old name.
//  3. A Sync that fails has lost the writes it was to make durable: a later
//     Sync that succeeds does not bring them back (the kernel marked the
//     pages clean). The caller must treat a failed sync as fatal.
//
// Writes to different files are not ordered with respect to each other unless
// a Sync separates them.
//
// # Permissions
//
// Only the owner may read or write the database's files, whatever the
// process's umask (as PostgreSQL does): MkdirAll makes each directory it
// creates DirPerm (0700) and Create and Lock make files FilePerm (0600). The
// OS implementation asks for that mode and then sets it with chmod, since a
// umask can only remove bits (a umask of 0777 would leave 0000); until then
// the file is never more open than asked. Directories that exist already
// keep their mode. Perm reports the permission bits of a file or directory,
// so the engine can refuse a data directory that others may write; MemFS
// records them per file and directory and has a Chmod for tests.
//
// # Concurrency
//
// An FS and its Files may be used from many goroutines. MemFS guards all of
// its state with one mutex; it is a test double, not a fast path.
package vfs
