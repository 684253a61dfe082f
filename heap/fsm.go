package heap

import (
	"encoding/binary"
	"hash/crc32"
	"sync"

	"github.com/google/btree"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/vfs"
)

// The free space map is a hint: an ordered in-memory index of the
// relation's pages by the free space last seen on them, so that an insert
// finds a page with room in O(log n). It is not WAL-logged. Every page it
// offers is re-checked under the page's exclusive lock; a wrong entry costs
// a wasted visit, after which the entry is corrected.
//
// Free space is kept as a category: free bytes / 64, so 0..127 (a page
// holds at most 8164 free bytes). A page is in the index only with category
// 1 or more; a page of category c has at least 64*c free bytes, so a tuple
// of n bytes is sure to fit on a page of category ceil(n/64) or more.
//
// Saved form (DIR/base/<rel>_fsm, replaced atomically at checkpoint), one
// byte per page:
//
//	 0       4       6       8       12      16
//	+-------+-------+-------+-------+-------+~~~~~~~~~~~~~~~~~~~~~+
//	| magic |version|   0   |nblocks|  crc  | nblocks page bytes  |
//	+-------+-------+-------+-------+-------+~~~~~~~~~~~~~~~~~~~~~+
//
//	page byte: bit 7 = TOAST page, bits 0-6 = category
//	crc: CRC-32C of the whole file with the crc field read as zero
//
// Pages the file does not cover (the relation grew after the last save,
// or there is no file) are entered as heap pages of category unknownCat:
// maybe empty. The first insert that visits one finds out and corrects the
// entry. So opening a relation reads no page at all.
const (
	fsmUnit     = 64
	maxCategory = 127
	unknownCat  = maxCategory

	fsmMagic      = 0x4D465348 // "HSFM" read little-endian
	fsmVersion    = 1
	fsmHeaderSize = 16
	fsmToastBit   = 0x80
)

// fsmEntry is one indexed page: ordered by kind, category, block.
type fsmEntry struct {
	toast bool
	cat   uint8
	blk   base.BlockNum
}

func fsmLess(a, b fsmEntry) bool {
	if a.toast != b.toast {
		return !a.toast
	}
	if a.cat != b.cat {
		return a.cat < b.cat
	}
	return a.blk < b.blk
}

// fsmEntryBytes is the memory an index entry costs, counted generously:
// the 8-byte item in a node about two-thirds full, plus its share of the
// child pointer array and node header.
const fsmEntryBytes = 24

type fsm struct {
	mu struct {
		sync.Mutex
		// tree indexes the pages of category >= 1.
		tree *btree.BTreeG[fsmEntry]
		// pages holds each page's byte as saved (toast bit, category); a
		// page's entry in tree matches it. Grows with the relation.
		pages []uint8
	}
}

func newFSM() *fsm {
	f := &fsm{}
	f.mu.tree = btree.NewG(32, fsmLess)
	return f
}

func category(free int) uint8 {
	return uint8(min(max(free, 0)/fsmUnit, maxCategory))
}

// find returns a page of kind toast with at least need free bytes: the one
// with the least such space (best fit), lowest block first.
func (f *fsm) find(toast bool, need int) (base.BlockNum, bool) {
	c := (need + fsmUnit - 1) / fsmUnit
	if c > maxCategory {
		return 0, false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var found fsmEntry
	ok := false
	f.mu.tree.AscendGreaterOrEqual(fsmEntry{toast: toast, cat: uint8(max(c, 1))}, func(e fsmEntry) bool {
		if e.toast == toast {
			found, ok = e, true
		}
		return false
	})
	return found.blk, ok
}

// set records that blk is a (toast) page with free bytes free.
func (f *fsm) set(blk base.BlockNum, toast bool, free int) {
	b := category(free)
	if toast {
		b |= fsmToastBit
	}
	f.mu.Lock()
	f.setLocked(blk, b)
	f.mu.Unlock()
}

func (f *fsm) setLocked(blk base.BlockNum, b uint8) {
	if int(blk) >= len(f.mu.pages) {
		if b == 0 {
			return
		}
		f.mu.pages = append(f.mu.pages, make([]uint8, int(blk)+1-len(f.mu.pages))...)
	}
	old := f.mu.pages[blk]
	if old == b {
		return
	}
	if old&maxCategory != 0 {
		f.mu.tree.Delete(fsmEntry{toast: old&fsmToastBit != 0, cat: old & maxCategory, blk: blk})
	}
	if b&maxCategory != 0 {
		f.mu.tree.ReplaceOrInsert(fsmEntry{toast: b&fsmToastBit != 0, cat: b & maxCategory, blk: blk})
	}
	f.mu.pages[blk] = b
}

// forget drops blk, which no longer exists.
func (f *fsm) forget(blk base.BlockNum) {
	f.mu.Lock()
	f.setLocked(blk, 0)
	f.mu.Unlock()
}

// load fills the map from a saved image for a relation of nblocks pages.
// A missing or damaged image, and pages it does not cover, give unknown
// entries. It reports whether the image was usable.
func (f *fsm) load(img []byte, nblocks base.BlockNum) bool {
	pages, ok := decodeFSM(img)
	f.mu.Lock()
	defer f.mu.Unlock()
	if int(nblocks) > len(f.mu.pages) {
		f.mu.pages = append(f.mu.pages, make([]uint8, int(nblocks)-len(f.mu.pages))...)
	}
	for blk := range nblocks {
		b := uint8(unknownCat)
		if ok && int(blk) < len(pages) {
			b = pages[blk]
		}
		f.setLocked(blk, b)
	}
	return ok
}

// encode returns the saved form of the map.
func (f *fsm) encode() []byte {
	f.mu.Lock()
	img := make([]byte, fsmHeaderSize+len(f.mu.pages))
	copy(img[fsmHeaderSize:], f.mu.pages)
	f.mu.Unlock()
	binary.LittleEndian.PutUint32(img[0:], fsmMagic)
	binary.LittleEndian.PutUint16(img[4:], fsmVersion)
	binary.LittleEndian.PutUint32(img[8:], uint32(len(img)-fsmHeaderSize))
	binary.LittleEndian.PutUint32(img[12:], crc32.Checksum(img, castagnoli))
	return img
}

// decodeFSM checks a saved image and returns its page bytes. It never
// panics.
func decodeFSM(img []byte) ([]uint8, bool) {
	if len(img) < fsmHeaderSize ||
		binary.LittleEndian.Uint32(img[0:]) != fsmMagic ||
		binary.LittleEndian.Uint16(img[4:]) != fsmVersion ||
		int64(binary.LittleEndian.Uint32(img[8:])) != int64(len(img)-fsmHeaderSize) {
		return nil, false
	}
	want := binary.LittleEndian.Uint32(img[12:])
	var zero [4]byte
	c := crc32.Update(0, castagnoli, img[:12])
	c = crc32.Update(c, castagnoli, zero[:])
	c = crc32.Update(c, castagnoli, img[fsmHeaderSize:])
	if c != want {
		return nil, false
	}
	return img[fsmHeaderSize:], true
}

// stats returns the number of pages the map knows, the number indexed, and
// the bytes it uses.
func (f *fsm) stats() (pages, indexed, bytes int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	pages, indexed = len(f.mu.pages), f.mu.tree.Len()
	return pages, indexed, cap(f.mu.pages) + indexed*fsmEntryBytes
}

// saveFSM writes the map to its file with vfs.WriteFileAtomic.
func saveFSM(fsys vfs.FS, name string, f *fsm) error {
	return vfs.WriteFileAtomic(fsys, name, f.encode())
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)
