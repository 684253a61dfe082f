// Package errorfs wraps a vfs.FS so that tests can count its operations and
// fail any one of them: the tool of SQLite's I/O-error tests and of pebble's
// errorfs, for heapkv's fault sweeps.
//
// # Counting
//
// Every call through the wrapper is one operation with a global index, 1 for
// the first: on the FS Create, Open, Remove, Rename, MkdirAll, List, Stat,
// Perm, SyncDir and Lock; on a File ReadAt, WriteAt, Sync, Truncate, Size and
// Close. (Name is not an operation; nor is releasing a Lock.) The index is
// taken when the call starts, so with several goroutines the order is the
// order in which calls began. A wrapper without an Injector only counts:
// that is how a sweep measures K, the operations of its workload, before it
// fails each of them in turn.
//
// A sweep needs the same workload to make the same operations in the same
// order every time, which goroutines of the code under test that run on
// their own schedule (a WAL writer creating a segment ahead) would spoil.
// SetBackground takes a test that recognises such a goroutine; its
// operations are then numbered in a second sequence (Op.Background), and
// the foreground sequence stays deterministic.
//
// Each operation is described by an Op: its index, kind, path, offset and
// length, and whether it grows a file (a WriteAt past the end, a Truncate to
// a larger size), which is what can fail with ENOSPC on a full disk.
//
// # Injecting
//
// Before an operation runs, the Injector decides whether it fails and with
// what error. The ones provided: OnIndex (foreground operation n fails,
// once), FromIndex (n and every later one fail, background ones too: a
// device that has died), DiskFull (the nth foreground write or extend
// fails with ENOSPC and so does every later operation that grows a file;
// overwrites within a file still work), and Nth (the nth operation a
// predicate selects, such as the nth background one or the nth sync).
// Every injected error matches ErrInjected and unwraps to its cause
// (syscall.EIO unless told otherwise), and names the operation it failed.
//
// A failed operation changes nothing, with two exceptions that follow what
// the kernel does:
//
//  1. A failed Sync loses the file's unsynced writes (vfs doc.go, rule 3;
//     PostgreSQL's "fsyncgate"). Over a vfs.MemFS the wrapper makes the
//     MemFS itself fail that Sync, so the writes stay readable but no later
//     Sync makes them durable, and a Crash drops them. Over another FS the
//     underlying Sync is not called, which models a kernel that keeps the
//     dirty pages: weaker, so sweeps run over MemFS.
//  2. A failed Close still closes the underlying file, as close(2) releases
//     the descriptor even when it reports an error.
//
// # Hooks
//
// OnDone registers a function called after every operation with its result,
// in the goroutine that made the call and before the call returns. The
// power-loss sweep uses it to snapshot a MemFS (Clone) right after the nth
// Sync; the function must not call back into the code under test, which may
// hold its own locks while it does I/O.
//
// # Concurrency
//
// An FS and its Files may be used from many goroutines, like the FS they
// wrap. The injector and the hook are called concurrently if the code under
// test does I/O concurrently; those provided here are safe for that.
package errorfs
