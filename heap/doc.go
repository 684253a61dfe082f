// Package heap is heapkv's heap access method: row versions on slotted
// pages, their version chains, out-of-line storage of large values (TOAST),
// the free space map, pruning of aborted inserts, the heap's WAL records
// and their redo, and a verifier (Check). It follows PostgreSQL's
// src/backend/access/heap (heapam.c, pruneheap.c, heaptoast.c, the README
// beside them) and storage/freespace; where it departs, this text says so.
//
// # Structure
//
// A keyspace is one heap relation plus one B+tree (package btree). The
// B+tree maps each key to the TID of its newest version; the heap holds the
// versions. The heap does not know the B+tree: package table joins the two.
// The files follow the concepts: insert.go (placing a tuple), walk.go (the
// chain walks Get and Newest), heap.go (Open, SetXmax, Fetch), hint.go,
// toast.go, fsm.go, prune.go, wal.go (records, redo and the critical
// section), page.go and tuple.go (the formats), check.go.
//
// Version chains. Versions of a key chain from newest to oldest: each
// version carries the TID of the one it replaced. An update writes a new
// version whose prev is the old version, sets the old version's xmax, and
// package table repoints the key's B+tree entry at the new version in
// place. So an update never adds an index entry, and the index does not
// grow under updates. The price: a reader whose snapshot is older than the
// newest version walks back through the versions it does not see. Vacuum,
// when it comes, will keep chains short by cutting them below the oldest
// snapshot.
//
// The visibility walk (Get). Get starts at the TID the B+tree supplies and,
// for each version, asks txn.Judge two questions: does the snapshot see the
// insert, and does it see a deletion?
//
//   - Insert not seen (the writer is running, aborted, or committed after
//     the snapshot): move to the previous version.
//   - Insert seen and deletion seen: the key is absent for this snapshot.
//   - Insert seen, no deletion seen (no xmax, an aborted one, or a row
//     lock): this is the version; return its value.
//
// The walk ends, with "absent", when the chain ends. Writers use two more
// calls. Newest returns the newest version whose insert did not abort (the
// one txn.CheckWrite judges, and the prev link of the next version).
// SetXmax sets xmax only if it and its lock-only bit still hold what the
// writer judged (a lock its holder turned into an update keeps the same
// xmax), checking and setting under the page's exclusive lock. So of two
// writers that judged the same version, one succeeds and the other gets
// ErrXmaxChanged and looks again, as in PostgreSQL, where heap_update
// re-checks HeapTupleSatisfiesUpdate under the buffer lock.
//
// Safety of TIDs. A TID may outlive its tuple. An index entry can name a
// slot that pruning freed (or, once vacuum exists, that vacuum freed and a
// later insert reused); a reader may hold a TID it copied from a B+tree
// leaf before the entry was removed. So every fetch checks that the slot
// holds a row version (a normal line pointer on a heap page, not a TOAST
// chunk) with the key being looked up. If not, the answer is "no such
// version": the walk stops and the key is absent. That is not damage, and
// not an error. A stale TID can only lead to a version of the same key
// that is newer than the one the entry was made for (slots are reused by
// later inserts), and the chain from a newer version leads to the same
// older ones. Damage is reported as damage: a line pointer outside the
// tuple space, lengths that do not add up, unknown bits.
//
// Hint bits. Judge returns the hint bits that may be set on a version:
// XMinCommitted or XMaxCommitted only when the deciding commit record is
// durable (StatusSource.IsDurable); XMinInvalid or XMaxInvalid for an
// abort. The reader ORs them into the infomask atomically, under its share
// lock, and marks the buffer dirty with MarkDirtyHint. No WAL record is
// written for a hint.
//
// That needs one exception. A page whose only change since its last write
// is a hint can be torn on its next write. The torn page fails its checksum,
// and no WAL record after the redo point can repair it. So the first hint
// change to a page after the redo point must log a full-page image first
// (PostgreSQL's XLogSaveBufferForHint, with checksums or wal_log_hints).
// The image must be logged, and the page stamped with its LSN, while nobody
// can read the page LSN halfway. The buffer pool reads it under a share lock
// to decide how far to flush the WAL before writing the page. A reader with
// a share lock therefore does not do this itself. It queues the hint (up
// to four per page; more are left unset, they are only hints), and when it
// leaves the page it takes the page's exclusive lock (it still holds the
// pin). It re-checks that the tuple is the same and that the page still
// needs an image. Then it marks the buffer dirty, logs the image (of a
// private copy with the hints applied) as an infoHintImage record, applies
// the hints and stamps the page.
//
// That image is only needed for a page that is dirty already (changed
// before the redo point and not yet written). A clean page that needs an
// image gets its hints in memory only: the reader ORs them in and does not
// mark the buffer dirty, so the page is neither logged nor written for
// them, and a read-only pass over a large table after a load or a
// checkpoint costs no WAL and no writes. It is safe: a clean page is not
// written while it stays clean, and under a share lock it cannot turn dirty
// without an image (for a page at or before the redo point every dirtying
// change needs the exclusive lock: a logged change, whose record carries a
// full-page image of the page, in-memory hints included, or a hint image).
// If the buffer is evicted first the hints are lost, and the next reader
// asks the CLOG again, as it would for a version never hinted.
//
// A checkpoint can move the redo pointer between a reader's test ("the page
// LSN is past the redo pointer, no image needed") and its OR. So the reader
// tests again after the OR and MarkDirtyHint. If the pointer moved, the
// reader queues an image after all. If it had not moved by the second test,
// the checkpoint starts later, finds the buffer dirty and writes it.
//
// TOAST. A row version whose tuple would take more than inlineMax bytes
// (2032: a quarter page, so four fit) is shrunk in two steps:
//
//  1. The value is compressed with s2 (klauspost/compress). A value of 256
//     KiB or more is compressed only if its first 64 KiB compress by an
//     eighth, so that an incompressible 64 MiB value costs no wasted pass.
//     If the compressed tuple fits in inlineMax, it stays inline, flagged
//     compressed.
//  2. Otherwise the stored bytes (compressed if that saved an eighth, raw
//     if not) are cut into chunks of up to 8124 bytes. Each chunk is a tuple
//     of its own on a TOAST page of the same relation: xmin is the
//     inserting transaction, the key is the chunk's 4-byte offset, the
//     value is the bytes, and prev is the chunk before it. The row version
//     holds a 24-byte TOAST pointer (drawn under Formats) instead of the
//     value.
//
// The chunks are written first to last, before the row version, so each
// knows its predecessor and the pointer names the last. A crash can orphan
// chunks but never leaves a pointer dangling: the row version's record
// follows the chunks' records in the WAL. A reader walks the links back
// from the last chunk and fills its buffer from the end. It checks that each
// chunk belongs to the value (xmin, offset, length) and checks the CRC at
// the end. Values of 16 chunks or more are written through a BulkWrite ring
// and read through a BulkRead ring, so a 64 MiB value passes through a few
// dozen buffers instead of flushing the pool.
//
// Values go up to 64 MiB (MaxValueSize); one byte more is ErrValueTooLarge.
// Keys are 1 to 1024 bytes (ErrEmptyKey, ErrKeyTooLarge). These checks come
// before anything is written.
//
// Free space map. The map is an in-memory google/btree of (kind, category,
// block), where category = free bytes / 64 and kind says heap or TOAST
// page. An insert asks for the page with the least category that surely
// fits its tuple (best fit, lowest block first), in O(log n). It is a
// hint, as in PostgreSQL: the insert re-checks the page's free space under
// the exclusive lock. If the page is full (or of the wrong kind, or gone),
// it corrects the entry and asks again; the map is never wrong about
// anything that matters. The relation grows only when the map offers
// nothing. Every insert and prune records the page's new free space, under
// the page's lock.
//
// The map is not WAL-logged. A checkpoint hook registered by Open saves it
// to DIR/base/<rel>_fsm with vfs.WriteFileAtomic; a failed save is logged,
// not returned, since failing the checkpoint over a hint would hold back
// WAL recycling. Open loads it and reads no page. Pages the file does not
// cover (the relation grew after the save, or the file is missing or
// damaged) get "unknown" entries: heap pages of the highest category. The
// first insert that visits such a page learns the truth; at worst that is
// one wasted visit per page.
//
// Pruning. Prune(blk) frees the tuples of aborted inserts on one heap page
// (no package calls it yet; the table layer will). That is the garbage
// that needs no removal horizon: an aborted insert is invisible to every
// snapshot at once. Vacuum, later, will free versions deleted before the
// oldest snapshot with the same machinery (the infoPrune record,
// compaction, the free space map). Pruning moves tuples, so it needs a
// cleanup lock (Buffer.TryLockForCleanup: exclusive, and no other pin). It
// gives up at once if it cannot get one.
//
// What becomes of a freed tuple's line pointer depends on who may still
// name its TID:
//
//   - An aborted first version (prev invalid). The B+tree may still hold
//     the key with this TID (package table inserted the entry before the
//     transaction aborted). The storage is freed and the line pointer left
//     dead, not unused. Until vacuum has removed such index entries, the
//     slot is not reused. A reader that arrives finds a dead slot, which
//     means "no such version": correct, since nothing committed was ever
//     written for the key. (With readers checking keys, reuse would also
//     be safe, as argued under "Safety of TIDs". Keeping the slot dead
//     makes "unused" mean what PostgreSQL's LP_UNUSED means: no index entry
//     can name it.)
//   - An aborted version with a previous version. The index entry may name
//     it too, because package table repointed the entry at it before the
//     abort. Freeing it whole would cut the only path from the index to
//     the older, live versions. It becomes a stub: header and key stay, the
//     value goes, XMinInvalid is set. The walk steps over it to its prev
//     like any unseen version. Once the key is written again, the new
//     version's prev skips the stub (Newest skips aborted versions) and the
//     index points past it, so vacuum can free it whole.
//   - TOAST chunks of a freed version. No index entry ever names a chunk,
//     and nothing but the owning version's pointer leads to one. So after
//     the row version's page is pruned (which destroys the pointer), its
//     chunks are freed chain by chain, each page under its own cleanup
//     lock, and their line pointers become unused. TOAST pages are never
//     pruned on their own. Freeing chunks a live-looking pointer still
//     names would leave it dangling. Chunks that cannot be freed now (their
//     page is pinned, or a crash came in between) stay behind as orphans:
//     wasted space that vacuum reclaims, not damage.
//
// After freeing, the page is compacted: the remaining tuples are packed
// against the end in offset order, unused line pointers at the end of the
// array are dropped, and the free space is zeroed.
//
// WAL. Every page change is one WAL record of resource manager RmgrHeap (2)
// with one block reference, registered with RecordBuilder.PageOp. xlog
// logs a full-page image instead of the operation data if the page was not
// logged since the redo point. Redo applies operation data with the same
// functions as the original change (addItem, setXmaxLocked, applyPrune and
// compact). These are deterministic, so replay rebuilds each page byte for
// byte (the tests compare). RedoBlock applies a record only to a page whose
// LSN is older than the record's end, so replay is idempotent. The free
// space map and hint bits are not logged.
//
// A change follows rule 1 below, and marks the buffer dirty before it
// inserts its record, as in PostgreSQL (MarkBufferDirty inside the critical
// section, before XLogInsert). Suppose the buffer were marked dirty after
// the insert. A checkpoint could then fix its redo pointer after the record
// and scan the buffers before the buffer was marked. The checkpoint would
// complete without writing the page, and a crash would then replay from a
// redo pointer past the record, losing the change. Marked first, the
// buffer is dirty before the record exists. A checkpoint whose redo
// pointer lies past the record scans after that and writes the page. It
// waits for the exclusive lock, so it writes the page stamped.
//
// Opening after recovery. Open runs after WAL recovery, and redo may have
// rebuilt pages in the buffer pool beyond the file's durable end.
// pagecache counts a relation's length from the file, so Pool.Extend could
// hand out such a block again, and its zero-and-lock read would wipe the
// recovered page; and a later record of the same replay, read in zero mode
// past the end, would wipe a page an earlier one restored. Neither
// happens: pagecache's LockForRedo extends the file up to every block
// redo touches, so when Open runs the file already covers every page, and
// Open reads none.
//
// # Formats
//
// Every page starts with pagecache's common header. A heap page is slotted:
// line pointers grow up from the header, tuples grow down from the end of
// the page, and the free space lies between (pd_lower and pd_upper). The
// heap has no special space (page.go).
//
//	 0                     24      28      32
//	+---------------------+-------+-------+-------+--- ... ---+
//	| common page header  | lp 1  | lp 2  | lp 3  |  -> lower  |
//	+---------------------+-------+-------+-------+--- ... ---+
//	|                 free space                               |
//	+------------------+------------------+--------------------+
//	| upper -> tuple 3 |      tuple 1     |      tuple 2       |
//	+------------------+------------------+--------------------+ 8192
//
//	common header: page LSN u64 | checksum u32 | flags u16 | lower u16 |
//	               upper u16 | special u16 | layout version u16 | 0 u16
//	heap flags:    0x1 TOAST page (holds only TOAST chunks)
//	               0x2 has free line pointers (PD_HAS_FREE_LINES)
//
// A line pointer is a little-endian u32: offset in bits 0-14, flags in
// bits 15-16, length in bits 17-31. Flags: 0 unused (free for reuse), 1
// normal (offset and length locate a tuple), 3 dead (storage freed, slot
// kept because an index entry may still carry its TID). PostgreSQL's
// redirect (2) is not used: heap-only tuples do not exist here. A TID is
// (block, line pointer number), line pointers counting from 1.
//
// A tuple (tuple.go) starts at a multiple of 8 (MAXALIGN):
//
//	 0               8               16      20  22  24      28      32
//	+---------------+---------------+-------+---+---+-------+-------+~~~~~~~~~+~~~~~~~~~~~+
//	|     xmin      |     xmax      |infomsk|kln|pof|prevblk|vallen | key ... | value ... |
//	+---------------+---------------+-------+---+---+-------+-------+~~~~~~~~~+~~~~~~~~~~~+
//
//	xmin, xmax  u64  inserting and deleting (or locking) transaction
//	infomask    u32  bits 0-7: txn's (XMinCommitted, XMinInvalid,
//	                 XMaxCommitted, XMaxInvalid, XMaxLockOnly; 5-7 reserved)
//	                 bit 8 compressed, 9 external (TOAST pointer), 10 TOAST
//	                 chunk, 11 stub (value removed by pruning); 12-31 zero
//	kln         u16  key length, 1..1024 (4 for a TOAST chunk)
//	pof,prevblk      TID of the previous (older) version: offset u16, block
//	                 u32; block 0xFFFFFFFF, offset 0 if none
//	vallen      u32  length of the value field as stored
//
// The line pointer's length is exactly 32 + kln + vallen. Because the
// tuple is 8-aligned, its infomask is an aligned 32-bit word, which hint
// bits are ORed into with sync/atomic under a share lock.
//
// The TOAST pointer (toast.go; little-endian u32s, then the last chunk's
// TID):
//
//	+-------+-------+-------+-------+-------+---+---+
//	|rawlen |extlen |nchunks|  crc  |lastblk|lof| 0 |
//	+-------+-------+-------+-------+-------+---+---+
//
// The free space map's file (fsm.go), DIR/base/<rel>_fsm, is a 16-byte
// header (magic, version, page count, CRC-32C) and then one byte per page:
// bit 7 TOAST, bits 0-6 category.
//
// The WAL records (wal.go draws their operation data):
//
//	0x00 insert     offnum u16, flags u8 (init page, TOAST page), 0, tuple
//	0x10 set xmax   offnum u16, flags u8 (lock only), 0, xmax u64
//	0x20 prune      count u16, then (offnum u16, action u8) per tuple:
//	                unused, dead or stub; then compaction
//	0x30 hint image a full-page image before a first hint (no data)
//
// Every decoder of these bytes (the page and tuple checks, the TOAST
// pointer, the redo functions) checks its input before it uses it and
// returns an error wrapping base.ErrCorrupt rather than panicking; redo
// changes nothing before its checks pass. A map file that fails its checks
// is not an error: Open logs a warning and starts from unknown entries.
//
// # Rules
//
//  1. A change is PostgreSQL's critical section (change in wal.go): pin
//     the page and take its exclusive lock; save a copy of the page; change
//     the page; MarkDirty; insert the WAL record (the page still carries
//     its old LSN, which xlog compares with the redo pointer), and if the
//     insert fails, put the saved copy back: the change never happened;
//     stamp the page with the record's end LSN; record the page's free
//     space in the map; unlock, then unpin. MarkDirty comes before the
//     insert (see "WAL" above).
//  2. A goroutine holds at most one page lock at a time. A chain walk,
//     TOAST reassembly, writing chunks, and freeing chunks all release one
//     page before they lock the next. There are no exceptions, so no lock
//     order among pages is needed. A chunk page's pin is never held while
//     another page is locked.
//  3. Reads take share locks; changes take exclusive locks; pruning and
//     freeing chunks take cleanup locks (without waiting).
//  4. Hint bits are set under a share lock with atomic ORs. Every read of
//     an infomask under a share lock is an atomic load.
//  5. A reader that must log a hint image gives up its share lock and takes
//     the exclusive lock on the same page, still holding the pin. It holds
//     nothing else then.
//  6. The free space map's mutex is a leaf. It is taken with no page lock
//     held, or at most after one (never the other way round), and held for
//     an index operation only, never across I/O. A page's entry is updated
//     under that page's lock, so the updates come in the order of the
//     page's changes: while the relation is open, a stale entry can only
//     be too high (a wasted visit), never too low (space hidden). After a
//     crash the saved map may be older than the pages; the space it hides
//     is found again when the page is next pruned or vacuumed.
//  7. The WAL is inserted into under the page's exclusive lock (rule 1),
//     as in PostgreSQL. xlog's locks rank below page locks.
//  8. No pointer into a page is kept after its lock is released. Values
//     are copied out under the lock. So pruning's cleanup lock is stronger
//     than the heap itself needs; it matters for callers that might keep
//     pins.
//  9. TOAST chunks are logged before the row version that points at them,
//     and key and value sizes are checked before anything is written.
//
// # Lock order
//
// Page locks are pagecache content latches, one at a time (rule 2). Under
// one, the heap takes these, each released before the next, and none of
// them ever waits for a page lock:
//
//	page lock  ->  txn's CLOG lock (Judge, Newest and Prune ask the CLOG
//	               about a tuple's xids while the page is locked)
//	page lock  ->  the free space map's mutex (a leaf)
//	page lock  ->  xlog's insertion locks (a change's record, a hint image)
//	page lock  ->  pagecache's buffer header lock (MarkDirty, MarkDirtyHint)
//
// The heap has no lock of its own besides the map's mutex. A hint image is
// taken by releasing the share lock first (rule 5), never by upgrading it.
//
// # Memory
//
// Pages live in the shared buffers (shared_buffers); a call pins one page
// at a time and releases it before it returns. TOAST values of 16 chunks
// or more go through a BulkWrite ring (16 MiB) or a BulkRead ring (256
// KiB), at most an eighth of the pool, instead of the pool's clock sweep.
// A change, an insert and a hint image each borrow a page-sized scratch
// copy from a sync.Pool. Reassembling a TOAST value allocates the value
// (and, for a compressed one, its stored bytes besides); compressing
// allocates the compressed copy.
//
// No setting bounds the free space map: it is one byte per page of the
// relation plus about 24 bytes per page with free space (Stats.FSMBytes);
// 8 GiB of heap costs at most 25 MiB. Check keeps an entry per row version
// and TOAST chunk of the relation while it runs.
//
// # Departures from PostgreSQL
//
//   - Chains run the other way. PostgreSQL's t_ctid points from the old
//     version to the newer one, and every index entry points at the
//     version it was made for, so a non-HOT update adds an entry to every
//     index. HOT avoids that only when the new version fits on the same
//     page; its chain then starts at a root line pointer that the index
//     keeps pointing at (a redirect after pruning). Here one index entry
//     per key always points at the newest version, wherever it is, and
//     older versions are reached through prev links, across pages. There
//     are no heap-only tuples and no redirect line pointers.
//   - A tuple is xmin, xmax (64 bits each), infomask, prev link, key and
//     value: no command id, no null bitmap, no attributes.
//   - TOAST chunks live on TOAST pages of the same relation and are found
//     by prev links from the last one, with a CRC over the value, instead
//     of a separate TOAST relation with its own index; every chunk but the
//     last fills a page. Compression is s2.
//   - A clean page gets its hints in memory only, with no image and no
//     write; PostgreSQL logs the image (with checksums or wal_log_hints).
//   - Hint images are logged whenever a page needs one, even with
//     full_page_writes off: xlog does not tell its users the setting.
//     PostgreSQL skips them then.
//   - The window between the hint's redo-pointer test and its OR is closed
//     by testing again; PostgreSQL closes it by delaying the checkpoint's
//     start (DELAY_CHKPT_START), which xlog does not offer.
//   - The free space map is an in-memory B-tree saved at checkpoint, not a
//     fork of FSM pages. Its best fit sends concurrent inserters to the same
//     page, where they queue on its lock; PostgreSQL spreads them with
//     fp_next_slot.
//   - Pruning frees only aborted inserts, is called explicitly and updates
//     the free space map; PostgreSQL prunes on page access versions dead
//     to every snapshot and leaves the map alone. Dead line pointers
//     (aborted first versions) and stubs keep 4 bytes, or a header and a
//     key, until vacuum has dealt with the index entries that may name
//     them. Orphaned TOAST chunks wait for vacuum too.
package heap
