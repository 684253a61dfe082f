// Package btree is heapkv's B+tree index access method: one entry per key,
// mapping the key to the TID of the newest heap version of its row (DESIGN.md
// §7). It is a Lehman-Yao tree in the manner of PostgreSQL's nbtree
// (src/backend/access/nbtree/README), on the shared buffer pool and the WAL.
//
// # Structure
//
// The tree follows P. L. Lehman and S. B. Yao, "Efficient Locking for
// Concurrent Operations on B-Trees", ACM TODS 6(4), 1981. Every page carries
// a right-link to its right sibling and a high key, an upper bound on the
// keys it holds. A split moves the upper half of a page into a new right
// sibling and only then tells the parent. A reader that arrives at a page
// after its key was moved away sees that its key is at or above the page's
// high key and follows the right-link: it "moves right" until it is on the
// page whose range holds its key. That is why a reader never needs more
// than one latch: it releases the parent before it latches the child, and a
// split it raced with is repaired by moving right. Pages are never merged or
// removed, so a right-link, a left-link or a stale downlink always leads to a
// page of the same level at or left of the one wanted.
//
// Each page's key range is [low, high): low is the key of its downlink in
// the parent (minus infinity for the leftmost page of a level), high is its
// high key (plus infinity for the rightmost, which has none). A key is at
// home on the one leaf whose range holds it, which is what makes the unique
// check and the compare-and-swap operations simple: they are decided under
// that leaf's exclusive latch.
//
// Splits. A leaf that has no room for an insert splits. The items, the new
// one included, are divided by bytes so that both halves are about equally
// full; when the insert appends at the right end of the rightmost leaf (an
// ascending load) the left page keeps 90% instead (70% for internal pages),
// as PostgreSQL does. The separator is the shortest prefix of the right
// page's first key that is above the left page's last key (suffix
// truncation), so internal pages hold short keys. The left page takes the
// separator as its high key; the right page takes the old high key and
// right-link. The parent receives (separator, right page) just after the
// downlink of the page that split, found again by moving right from the page
// the descent passed; a full parent splits the same way, its middle key
// moving up and staying on the right page as minus infinity. A split of the
// root makes a new root with two downlinks and points the metapage at it.
// Seven maximum-size items fit a page, so each half of a split holds at
// least three.
//
// WAL and crashes. The record kinds are listed in wal.go. Redo fetches pages
// through the buffer pool's LockForRedo, which first grows the relation file
// to cover the block, so a page rebuilt earlier in the same recovery is
// found in the pool and Extend never hands out a block redo used. Inserts,
// deletes and repoints of a leaf log a small operation that redo re-executes
// with the same code (applyOp), or a full-page image when the page has not
// been logged since the checkpoint's redo point (xlog's full-page-write
// rule). A split logs one record whose block references are all the pages it
// changed: the new pages as full images, the others as generic deltas from
// their old contents, or as images after a checkpoint. Redo replays a record
// entirely or, if the record was torn or lost, not at all; since a page
// reaches the disk only after the WAL covering its LSN (WAL before data),
// the pages on disk never reflect a lost record. So after a crash the tree
// is one the running system had between two records, never one with half a
// split: there is nothing for recovery to complete and no incomplete-split
// state for readers to handle. The price is that a split's latches, up to
// the top of its cascade, are held while the parent levels are latched and
// for one WAL insert, and that a split record is larger than PostgreSQL's
// (which logs the left page's and right page's items and the downlink in
// separate records); splits are rare next to inserts, and the crash story is
// simpler.
//
// # Formats
//
// Drawn in page.go: the common pagecache header, line pointers in key
// order, the items packed at the end of the page, and 16 bytes of special
// space with the left-link, right-link, level, flags (leaf, root, meta) and
// a magic number. Line pointer 0 is the high key of any page that is not
// the rightmost of its level. An internal page's first downlink has an
// empty key that stands for minus infinity. Block 0 is the metapage, which
// names the root and its level; the root is a leaf at first (block 1).
//
// # Rules
//
//  1. A latch is a pagecache buffer content lock. A page is read under a
//     share latch and changed under an exclusive latch, with a pin held
//     throughout; both are dropped as soon as the page has been used.
//  2. A reader (Lookup, a descent, a scan) holds at most one latch at a
//     time. Descending, it releases the parent before latching the child;
//     moving right, it releases a page before latching its right sibling;
//     it never waits for a latch while holding one. Every step along a
//     right-link checks that the high key grew (the high keys of a level
//     strictly increase from left to right, splits or not), so a damaged
//     link that closes a cycle is reported as corruption, never followed
//     forever.
//  3. A writer descends as a reader does and latches the leaf exclusively.
//     It moves right with exclusive latches, one at a time. The key's leaf
//     is then latched for the rest of the operation; the unique check, the
//     insert, the repoint and the delete are decided and done under it. Two
//     inserters of one key therefore meet on one leaf, and the second finds
//     the first one's entry.
//  4. Scans copy the matches of one leaf into the iterator's own buffer,
//     then release latch and pin before the caller sees the first of them.
//     Forward they go next to the right-link that the leaf had when it was
//     copied; backward to its left-link, then right from there until the
//     page whose right-link is the leaf just read (that page may have split
//     meanwhile). Each continues strictly beyond the last key it returned,
//     so no key comes twice.
//  5. A split holds every page it changes latched exclusively until the
//     one WAL record describing all of them is in and the pages carry its
//     end LSN: the splitting page, its new right sibling, the old right
//     sibling (its left-link changes), the parent that receives the new
//     downlink, and, if the parent is full, the same again one level up, up
//     to a new root and the metapage. No reader or writer can see a split
//     half done.
//  6. New pages come from pagecache.Pool.Extend, zeroed and latched
//     exclusively, and are not reachable until the split's record is in and
//     its latches are released. A split that fails before that leaves a
//     zero page behind, which Check accepts.
//  7. A stale root is harmless: the Tree caches the root from the metapage,
//     and a page that was the root stays a page of its level that reaches
//     the whole key space through right-links. A split that needs the level
//     above its descent's starting point descends again from the metapage.
//  8. Every change of a page is made and WAL-logged under its exclusive
//     latch, in this order: change the page (or build its new contents
//     aside), mark the buffer dirty, insert the record, stamp the page with
//     the record's end LSN, release the latch. Marking dirty comes before
//     the insert, as in PostgreSQL's transam README: a checkpoint fixes its
//     redo point and then collects the dirty buffers, so a page marked
//     dirty only after its record was reserved below the redo point could
//     be neither written by that checkpoint nor replayed after a crash.
//     Nobody writes the page early: writers of buffers take the latch in
//     share mode. (TestCheckpointDuringInserts catches the other order.)
//
// # Lock order
//
// Latches are taken bottom-up, then left to right within a level, and the
// metapage last:
//
//	level 0, left to right  ->  level 1, left to right  ->  ...  ->  metapage
//
// A goroutine holding latches only ever waits for one that comes later in
// this order: a split holds pages at its level and below and waits for its
// right sibling (further right) or for a parent (a level up); moving right
// to find the parent releases the page before latching its sibling; the
// descent from the metapage that a split may make (rule 7) latches pages
// above every level it holds. Readers hold one latch and wait for none
// while holding it (rule 2). The order is a total order at any instant
// (pages are never removed and a new page enters a level only latched by
// its creator, between two pages the creator holds or waits for in order),
// so no cycle of waits can form. The pagecache's own locks come after all
// of these (its content latch is the first of its lock order), and xlog's
// after those: a WAL insert is made with latches held, never the other way
// round.
//
// # Memory
//
// A Tree holds a few words. A descent holds one pin; a split holds at most
// three pins per level plus two, and builds the new page contents in
// private 8 KiB buffers until it logs them. An Iterator holds no pin
// between calls and buffers at most one leaf's worth of keys.
//
// # Departures from PostgreSQL
//
// From PostgreSQL's nbtree:
//
//   - No incomplete-split flag and no separate insertion of the downlink
//     (PostgreSQL's INCOMPLETE_SPLIT and _bt_finish_split): the whole
//     cascade is one WAL record (see above), so readers never meet a page
//     without a downlink.
//   - No page deletion, no half-dead pages and no free page recycling:
//     deleting entries may leave empty leaves, which stay in the tree and
//     are skipped by scans. Merging or removing them (with PostgreSQL's
//     two-stage deletion and the interlock against in-flight scans) is left
//     to VACUUM's issue. No fastroot either; the root is cached in the Tree.
//   - One entry per key mapping to the newest version's TID (DESIGN.md §7):
//     an update repoints the entry in place (Repoint, a compare-and-swap on
//     the TID) instead of adding an index tuple per version, so there are no
//     duplicates, no posting lists (deduplication) and no heap TID as a tie
//     breaker in the keys.
//   - Items are not aligned and the line pointers are plain offset/length
//     pairs; the items are kept packed, a delete moving the ones below it up
//     (as PageIndexTupleDelete does).
//   - The tree is not transactional by itself: records carry no xid, and
//     visibility is the heap's business.
//
// From the Lehman-Yao paper:
//
//   - Keys are unique, so the paper's problem of equal keys spanning pages
//     does not arise; a separator s bounds [.., s) on the left and [s, ..)
//     on the right.
//   - The paper lets a writer hold at most three latches and releases the
//     split page before latching the parent. Here a split keeps the whole
//     cascade latched until its single WAL record is in (rule 5), for the
//     crash story above.
//   - Leaves (and all levels) have left-links for backward scans, which the
//     paper does not have; they are kept right under the split's latches.
//   - Readers take share latches (the paper's readers take none, relying on
//     atomic page reads); a page is read from a shared buffer that changes in
//     place.
package btree
