// Package pagecache is heapkv's shared buffer pool and storage manager: the
// "shared buffers" of PostgreSQL's memory architecture.
//
// # Structure
//
// Storage maps each relation to one file, DIR/base/<relfilenode>, and reads,
// writes, extends and truncates it in BlockSize (8 KiB) blocks. It remembers
// which files were written since the last checkpoint, so a checkpoint fsyncs
// exactly those; a file is registered after its write returns, so a
// concurrent fsync can never clear the registration of a write it did not
// cover. Dropping a relation forgets its fsync request; a checkpoint that
// took the file before the drop ignores its failed fsync, since nothing of
// a dropped relation needs to be durable. It creates a relation's file only
// when the file system says it does not exist (fs.ErrNotExist); any other
// error is returned, because creating over an existing file would truncate
// it.
//
// Pool caches pages of those files in one slab of SharedBuffers bytes mapped
// outside the Go heap (anonymous mmap, transparent huge pages requested), so
// the garbage collector neither scans nor paces on it. Each buffer has a
// descriptor of one cache line:
//
//   - a state word (one atomic uint64) that packs the pin count, the usage
//     count (0..5) and the flags: header lock, dirty, valid, tag valid, I/O in
//     progress, I/O error, just dirtied, checkpoint needed;
//   - the tag (relation, block) of the page it holds;
//   - the content latch, a sync.RWMutex: share to read, exclusive to change;
//   - an I/O mutex, held by whoever reads or writes the page, which others
//     lock to wait for that I/O;
//   - the count of hits on the buffer.
//
// The mapping table from tag to buffer is split into 128 partitions. Readers
// look up without any lock and verify what they found after pinning it;
// writers (a buffer changing its page) hold the partition mutex. See
// mapping.go.
//
// # Formats
//
// Every page starts with the common header drawn in page.go: page LSN,
// checksum, flags, lower/upper/special, layout version. The checksum is
// computed on a private copy as the page is written and checked as it is
// read; a mismatch is an error wrapping base.ErrCorrupt that names the
// relation and block, never a silent repair. A relation file is nothing
// but its pages, BlockSize each, block n at offset n*BlockSize.
//
// # Rules
//
//  1. To look at a page, pin it (ReadBuffer) and take its content latch
//     (LockShare). To change it, hold LockExclusive, change it, MarkDirty,
//     then write the WAL record and stamp the page with the record's end
//     LSN, all before unlocking. MarkDirty must come before the WAL insert
//     (PostgreSQL's order): a checkpoint that fixes its redo point after
//     the record and then scans the buffers must find the page dirty, or it
//     would finish without writing a change that replay will not redo.
//     Release the latch before the pin. WithPage pins, locks and releases
//     and cannot leak a pin; its fn marks dirty through the return value,
//     so it suits only changes without WAL.
//  2. A pinned buffer is never evicted and its tag never changes. A Buffer
//     handle is valid until Release; ReadBuffer returns no pin on error.
//  3. A buffer changes its page only when its pin count is exactly the
//     changer's own pin, checked under the header lock with both mapping
//     partitions (old and new tag) held. That is why a lock-free reader that
//     pins a buffer and then finds the tag it wanted may trust it.
//  4. A victim is chosen by the clock sweep: the hand passes over buffers,
//     skipping pinned ones and decrementing usage counts, and takes the
//     first unpinned buffer with count zero. If it passes every buffer and
//     all are pinned, ReadBuffer fails with ErrNoUnpinnedBuffers (the
//     sentinel itself, for errors.Is) rather than wait.
//  5. A dirty victim is written before reuse by the goroutine that chose it,
//     but only if it can take the content latch without waiting; otherwise
//     the sweep moves on (waiting could deadlock with a latch holder that is
//     itself waiting for a buffer).
//  6. WAL before data: a dirty page is written only after Config.FlushWAL
//     has returned for the page's LSN. The LSN is read and the page copied
//     under the share latch, so no change can slip in between.
//  7. Only one goroutine does I/O on a buffer at a time (flagIOInProgress,
//     under the I/O mutex). A page changed while it is being written keeps
//     its dirty flag (flagJustDirtied).
//  8. A bulk operation passes a Strategy: its pages cycle through a small
//     ring (256 KiB for bulk reads, 16 MiB for bulk writes, 2 MiB for
//     vacuum, at most an eighth of the pool) and get a usage count of at
//     most one, so a pass over a relation larger than the pool replaces at
//     most the ring, not the hot pages. A bulk read does not reuse a ring
//     buffer that became dirty; it takes a fresh one instead.
//  9. A checkpoint marks the buffers dirty when it starts, writes them
//     sorted by (relation, block), then fsyncs every file written since the
//     last checkpoint. A failed fsync of a data file is fatal: it stops
//     Config.Halt with an error matching ErrDataSyncFailed (and the failure
//     is sticky in the Storage as well), and the engine must restart and
//     recover from WAL (the kernel may have dropped the pages). A failed
//     page write is not fatal: the page stays dirty (flagIOError set) and
//     whoever next needs it clean, eviction, background writer or
//     checkpoint, writes it again; the checkpoint that met the error fails.
//  10. The background writer (BgWriterRound, every BgWriterDelay) walks ahead
//     of the clock hand and writes dirty buffers the sweep would reuse next,
//     enough for the recent demand times BgWriterLRUMultiplier, at most
//     BgWriterLRUMaxPages per round, never lapping the hand.
//  11. Once Config.Halt has stopped (a failed fsync here, or of the WAL or
//     CLOG elsewhere), no page reaches a data file: the background writer
//     goroutine quits, BgWriterRound, Checkpoint, Extend and the write of a
//     dirty victim return the Halt's error, and Storage refuses every
//     create, write, extend, truncate, drop and fsync. A checkpoint that
//     completed would let the redo point move past changes that may not be
//     durable. Reads go on: cached pages are served, and a miss may reuse a
//     clean victim (ReadBuffer fails only if the victim it takes is dirty).
//     The checks are made at each layer; Storage's alone suffices.
//
// # Lock order
//
// Take locks in this order; never the other way round:
//
//	content latch  ->  buffer I/O mutex  ->  mapping partition mutexes
//	(lower partition number first)  ->  buffer header lock
//
// The header lock is a spin bit in the state word, held for a few
// instructions; its holder takes no other lock and does no I/O. No lock of
// the pool is held across the I/O of a different buffer, and no global lock
// exists on the hit path. Storage's mutex guards only its maps; a relation's
// extension lock serialises growing that one file.
//
// # Memory
//
// SharedBuffers bytes of pages plus 16 pages of write copies live in the
// slab. On the Go heap: one 64-byte descriptor per buffer, the mapping
// tables (about 64 bytes per buffer: slots of 16 bytes, at most a quarter
// full), and an array of 12 bytes per buffer for
// the checkpoint's sort, allocated once. Nothing grows with the size of the
// data.
//
// # Departures from PostgreSQL
//
//   - The mapping table is read without a lock (pin, then check the tag);
//     PostgreSQL takes the partition's LWLock in share mode.
//   - The checksum is CRC-32C over the block number and the page;
//     PostgreSQL's is FNV-1a based. Both catch a page written to the wrong
//     block.
//   - The slab is an anonymous mmap of the Go process rather than a
//     shared-memory segment between processes: one process, many
//     goroutines.
//   - A checkpoint writes its buffers as fast as it can: Checkpoint takes a
//     progress function for checkpoint_completion_target pacing, but the
//     WAL's checkpointer passes one that does not wait.
package pagecache
