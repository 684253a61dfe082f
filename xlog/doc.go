// Package xlog is heapkv's write-ahead log: the record format, the WAL
// buffers and their insertion protocol, group commit, the WAL writer,
// segment files, the reader, the control file, checkpoints and the recovery
// driver that dispatches records to resource managers. It follows
// PostgreSQL's src/backend/access/transam (xlog.c, xloginsert.c,
// xlogreader.c, xlogrecovery.c and the README beside them); where it departs,
// this text says so.
//
// # Structure
//
// An LSN is a byte position in one endless WAL stream (base.LSN); the record
// format is under Formats below.
//
// Insertion (Insert):
//  1. Assemble the record outside any lock, against the current redo pointer
//     (see the full-page-write rule below).
//  2. Take one of 8 insertion slots (PostgreSQL's NUM_XLOGINSERT_LOCKS). An
//     inserter owns its slot for the whole insertion.
//  3. Reserve: under insertMu, the only global critical section, take the
//     insert position and the prev link together, advance the position,
//     publish the record's start as the slot's insertingAt, and re-check
//     the redo pointer. Nothing else happens under insertMu.
//  4. Copy the record into the ring (WAL buffers) concurrently with the other
//     inserters, then clear insertingAt.
//
// The bytes of LSN x live at ring[x mod len(ring)]. An inserter may only
// write x once x < written + len(ring). When the ring is full the inserter
// first publishes how far it has copied (so that nobody waits for it), then
// writes the oldest part of the ring out itself (wal_buffers_full). A record
// larger than the ring goes through in pieces this way.
//
// Everything below min(reserved end, insertingAt of every busy slot) is in
// the ring: that is how far a write may go. A flush waits only for the
// slots inserting below its own LSN (WaitXLogInsertionsToFinish) and then
// writes whatever else is already complete.
//
// Group commit (Flush). Flush(lsn) returns at once if the log is durable up
// to lsn. Otherwise it waits for the insertions below lsn; then, if another
// Flush is writing, it waits for that one to finish (flushMu's done channel,
// closed by the leader, wakes every waiter at once) and looks again; if none
// is, it becomes the leader: it takes writeMu (WALWriteLock) and writes and
// fsyncs everything complete in the ring, so every commit inserted meanwhile
// rides on its fsync. With CommitDelay set, the flusher sleeps that long
// before writing if at least CommitSiblings transactions are active, so that
// more commits join. FlushCommit with SynchronousCommit off only notes the
// LSN; the WAL writer goroutine flushes every WALWriterDelay, or at once
// when 1 MB of such commits is unflushed (wal_writer_flush_after). A crash
// may lose such commits, never corrupt: pages still obey their LSNs.
//
// Segments and recycling. The stream is cut into SegmentSize files,
// DIR/wal/%016X by segment number; segment n holds [n*size, (n+1)*size), and
// the stream starts at segment 1 so that LSN 0 stays invalid. A segment is
// created whole before use: written with zeros under a temporary name,
// fsynced, renamed, and the directory fsynced; the WAL writer creates the
// next one ahead of need. A checkpoint renames segments wholly below its
// redo point to future numbers (keeping about MaxWALSize of them) and
// removes the rest.
//
// Recovery and the torn-tail rule. Recovery reads from the redo LSN in the
// control file. The reader accepts a record when its length is possible, its
// CRC matches and its prev link is the start of the record before it. The
// first record that fails ends the reading. Whether that is the end of the
// log (a torn or stale tail, cut off there: ReadEnd says where, why and how
// many bytes were dropped) or corruption depends on where the log must
// reach.
//
// MustReach, in the control file, is a lower bound of how far the log is
// durable: every WAL byte below it was fsynced before the control file said
// so. A checkpoint sets it to what is flushed when it writes the control
// file; the WAL writer raises it to what is flushed each time a flush fills
// a segment (and the flusher itself does when the WAL writer lags a whole
// segment behind, rule 8); recovery sets it to the end it found. So a
// failure whose deciding bytes lie below MustReach is corruption: a missing
// segment holding bytes below it, a zero or impossible header that starts
// below it, a wrong prev link of a record that starts below it, or a bad CRC
// of a record that ends at or below it. A record that starts below MustReach
// and ends above it may be torn: MustReach was raised to a flushed position
// in the middle of it (a write may end inside a record), and its rest never
// reached the disk.
//
// Above MustReach the reader looks ahead before it calls the failure the
// end: it scans every 8-aligned position after the failure, through the
// rest of the segment and the later segment files, for a record with a valid
// CRC whose prev link lies in [failure, its own start). Every record
// written after the failed one links back that way, whatever the damage (a
// destroyed length field, a missing segment), so finding one proves the
// log went on: corruption. Stale records of recycled segments were written
// below an older redo point, so their prev links lie below the failure and
// do not count; garbage passes the length and prev checks almost never, and
// only then is a CRC computed. A real torn tail is the last write, cut short
// or lost (rule 6: only one write is ever unsynced), with nothing valid
// after it, and is cut off cleanly. By rule 8 no byte of the log lies past
// the end of the segment after MustReach's, so the scan stops there: a few
// segments at most, whatever MaxWALSize keeps recycled. (A version-1 control
// file has no MustReach; then the scan reads every segment file present.)
// What remains undetectable is damage above MustReach with no valid record
// after it: the loss of the newest segment whole, say, before MustReach was
// raised into it. That exposes only what was flushed since the last raise,
// less than two segments.
//
// Corruption is an error wrapping base.ErrCorrupt that names the LSN and
// the segment file; recovery stops rather than skip a record, and changes
// no WAL file, so the evidence stays. After a clean end, MustReach becomes
// the end (durably, before anything is zeroed: the bytes past the end belong
// to a dead record now, and new records will take their place), the rest of
// the last segment is zeroed (where it is not zero already) and later
// segments are removed, so that no old byte past the new end can ever pass
// the prev-link check once new records are written there.
//
// The reader never allocates a record before its CRC has been checked
// against the segment bytes in place (a record that crosses segments is
// summed segment by segment, then copied), and a length that runs into a
// missing segment or past the bound of rule 8 is refused unread, so no
// garbage length makes recovery allocate or read more than was written.
//
// The full-page-write rule. A torn data page cannot be repaired by a delta.
// So, with FullPageWrites on, the first change of a page after the redo
// point of the current checkpoint logs the whole page (minus the free-space
// hole between pd_lower and pd_upper, compressed with s2 or zstd if
// WALCompression says so and that is smaller). The caller hands in the page
// before and after the change (RecordBuilder.Page, PageOp) and xlog decides:
// an image if the page's LSN is at or below the redo pointer, else a delta
// or the operation data. A checkpoint may fix a new redo pointer between
// assembly and reservation; the reservation re-checks under insertMu and, if
// the record has a page at or below the new pointer without an image,
// assembles it again.
//
// # Formats
//
// An LSN is a byte position in one endless WAL stream (base.LSN). Records
// lie back to back in the stream, each starting at a multiple of 8:
//
//	+--------+-------+-----+------+------+----+------+-------+----------+---------+---------+
//	|tot_len |  crc  | xid | prev | rmid |info|nblock|paylen | block ref| block ref| payload |
//	|  u32   |  u32  | u64 | u64  |  u8  | u8 | u16  |  u32  |  ...     |  ...     |         |
//	+--------+-------+-----+------+------+----+------+-------+----------+---------+---------+
//	 \______________ 32-byte header ____________________/
//
// (record.go draws the header and the block reference in full.) A block
// reference names a page (relation, block) and carries a full-page image,
// a generic page delta (the byte ranges that changed), or the resource
// manager's own operation data. The CRC-32C covers the body and then the
// header, so the body's part can be computed before the record has a place.
//
// A record's end LSN is where the next record starts. A page changed by a
// record carries the record's END LSN (PostgreSQL's EndRecPtr), so "the WAL
// is flushed up to the page LSN" means "the record is durable".
//
// There are no WAL page headers. PostgreSQL puts a header on every 8 KiB WAL
// page so that its reader can tell a page of this segment from a stale page
// of a recycled one (xlp_pageaddr). Here every record carries the absolute
// LSN of its predecessor (prev) and a CRC: stale bytes left in a recycled
// segment were written at another address, so their prev links point at
// positions that are not the start of the record before them, and the reader
// stops there. Records therefore cross segment boundaries and ring wrap
// freely, with no continuation records.
//
// The control file (DIR/control) is drawn in control.go; segments are
// DIR/wal/%016X by segment number (above).
//
// # Rules
//
//  1. Change a page only while holding its exclusive lock; keep the lock
//     until the page carries the end LSN that Insert returned.
//  2. Pass the page to the RecordBuilder before stamping the new LSN: its old
//     LSN decides between image and delta.
//  3. Write a data page only after Flush(page LSN) (WAL before data); the
//     buffer pool does this with the FlushWAL function it is given.
//  4. Redo changes a page only if its LSN is below the record's end LSN and
//     then sets it to the end LSN, so replay is idempotent. Images are
//     fetched in zero mode and always restored.
//  5. A failed write or fsync of the WAL (or a failed write of the control
//     file) stops the log for good: the failing call and every later
//     Insert, Flush and Checkpoint return an error wrapping
//     ErrWALSyncFailed (or ErrWALWriteFailed, ErrControlWriteFailed) and
//     base.ErrStopped, and Config.Halt, the engine's one fatal state, is
//     stopped with it. The kernel may have dropped the dirty pages;
//     retrying the fsync would report success for data that is gone. The
//     engine must stop and recover. A Halt stopped by another subsystem (a
//     data file's fsync failed) stops the log the same way, with the
//     halt's error; Checkpoint in particular refuses to run, as it would
//     move the redo point past data that may not be on disk. A stopped
//     log does no more I/O: every Flush waiting for a group-commit leader
//     is released with the error, the WAL writer and the checkpointer stay
//     idle, and Close only releases the log, with no shutdown checkpoint.
//     Abandon releases the log without a checkpoint or a control file
//     write in any case, for a caller that cannot vouch for the state a
//     checkpoint would record (an Open that failed after replay).
//  6. Every WAL write is fsynced before the next one is issued, so at most
//     one write is ever in flight. This makes the look-ahead rule above
//     sound under the file system model of internal/vfs (unsynced writes
//     survive independently of each other): without it, a lost write
//     followed by a surviving later one would look like damage in the
//     middle of the log. The price is an fsync per wal_buffers_full write.
//     A disk that reorders the sectors of one write can still, in theory,
//     make a torn last write look like mid-log damage; recovery then stops
//     with an error instead of guessing.
//  7. Recover runs once, after Open and before any insert; the checkpointer
//     and the WAL writer do nothing until it has.
//  8. No byte of segment s is written before MustReach in the control file
//     has reached the start of segment s-1. The WAL writer raises MustReach
//     when a flush fills a segment, so the flusher (writeLocked) raises it
//     itself only when the WAL writer is a whole segment behind. This
//     bounds how far past MustReach the log can have written anything,
//     and so the look-ahead of recovery.
//
// # Lock order
//
// A goroutine holding one of these may only take those below it:
//
//	ckptMu          checkpoints, Recover, Close
//	insertSlot.own  one insertion slot, for a whole insertion
//	flushMu         group-commit rendezvous; held only to claim or end the
//	                leader's role, never across I/O or another lock
//	writeMu         WALWriteLock: writing ring bytes to segments, fsync
//	ctlMu           the control file: its copy in memory and every write of
//	                it; nothing is taken under it, so the flusher may raise
//	                MustReach while it holds writeMu
//	segMu           creating, recycling and removing segment files
//	insertMu        space reservation and the redo pointer (leaf)
//	insertSlot.mu   wait/broadcast on one slot's insertingAt (leaf)
//	regMu           resource manager and hook registries (leaf)
//
// waitInsertions (which sleeps until other inserters progress) is never
// called with writeMu held, since an inserter may need writeMu to make room
// in the ring before it can progress. writeMu is held across I/O on
// purpose: it is the lock that serialises WAL I/O, and only flushers and
// inserters facing a full ring ever wait for it. The counters and LSNs read
// without locks are atomics.
//
// # Memory
//
// The WAL buffers are one ring of Config.WALBuffers bytes (wal_buffers),
// allocated at Open. An inserter assembles its record in a buffer of its
// own as large as the record (an image at most a page, compressed or
// not). The reader that recovery uses holds one segment (SegmentSize) and
// one record buffer as large as the largest record it has returned; a
// record is copied only after its CRC matched in place, so a garbage
// length cannot make it allocate. Creating a segment writes from one
// shared 64 KiB chunk of zeros. Nothing grows with the size of the data.
//
// # Departures from PostgreSQL
//
//   - No WAL page headers and no continuation records (see above).
//   - Every WAL write is fsynced at once (rule 6); PostgreSQL lets
//     wal_buffers_full writes go unsynced.
//   - A flusher waits only for insertions below its own LSN, then writes
//     whatever else happens to be complete.
//   - Waiters queue on writeMu (a sync.Mutex) instead of
//     LWLockAcquireOrWait; each finds its LSN flushed when it gets the lock
//     and releases it at once.
//   - The mid-log corruption check by look-ahead is ours; PostgreSQL ends
//     crash recovery at the first invalid record. MustReach is ours too:
//     pg_control's minRecoveryPoint plays a like part for archive recovery
//     and standbys only, and is not raised as the WAL grows.
//   - Crash recovery ends without a checkpoint; the control file goes back to
//     "in production" and the next checkpoint comes by the usual triggers.
package xlog
