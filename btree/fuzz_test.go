package btree

import (
	"bytes"
	"errors"
	"testing"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/pagecache"
)

// seedPages returns real pages to start the fuzzer from: leaves with and
// without a high key, an internal page, a metapage.
func seedPages() [][]byte {
	var out [][]byte
	leaf := make(page, pagecache.BlockSize)
	initPage(leaf, 0, flagLeaf, 7, 9)
	insertItem(leaf, 0, appendItem(nil, []byte("zz"), base.TID{}))
	for i, k := range []string{"apple", "banana", "cherry", "date"} {
		insertItem(leaf, i+1, appendItem(nil, []byte(k), base.TID{Block: base.BlockNum(i + 3), Offset: 1}))
	}
	out = append(out, bytes.Clone(leaf))
	deleteItem(leaf, 2)
	out = append(out, bytes.Clone(leaf))

	root := make(page, pagecache.BlockSize)
	initPage(root, 0, flagLeaf|flagRoot, base.InvalidBlock, base.InvalidBlock)
	insertItem(root, 0, appendItem(nil, []byte("k"), base.TID{Block: 1, Offset: 2}))
	out = append(out, bytes.Clone(root))

	internal := make(page, pagecache.BlockSize)
	initPage(internal, 1, 0, base.InvalidBlock, base.InvalidBlock)
	insertItem(internal, 0, appendItem(nil, nil, base.TID{Block: 2}))
	insertItem(internal, 1, appendItem(nil, []byte("m"), base.TID{Block: 3}))
	out = append(out, bytes.Clone(internal))

	meta := make(page, pagecache.BlockSize)
	initMeta(meta, 5, 1)
	out = append(out, bytes.Clone(meta))
	return out
}

// FuzzDecodePage feeds arbitrary bytes, as a page, to everything that reads
// a B+tree page: the validator (the page decoder), the metapage decoder,
// the accessors the tree uses on a page that passed the O(1) header check,
// and the redo of operation records with arbitrary operation data. None may
// panic; the decoders must reject with errors wrapping base.ErrCorrupt; and
// an operation applied to a valid page must leave a valid page or fail.
//
// A page is its header and line pointers at the front, its items and
// special space at the back and zeros between, so the input is two short
// strings: head, copied to the start of the page, and tail, copied to its
// end. (Whole 8 KiB pages as inputs make the fuzzer spend its time
// minimizing them.)
func FuzzDecodePage(f *testing.F) {
	for i, p := range seedPages() {
		h := page(p).hdr()
		f.Add(bytes.Clone(p[:h.Lower()]), bytes.Clone(p[h.Upper():]), []byte("banana"),
			[]byte{1, 0, 5, 0, 0, 0, 0, 0, 1, 0, 'b', 'x', 'y', 'z', 'q'}, uint8(infoInsert+uint8(i%3)*0x10))
	}
	f.Add([]byte{}, []byte{}, []byte("a"), []byte{}, uint8(0))
	f.Fuzz(func(t *testing.T, head, tail, key, op []byte, info uint8) {
		pg := make([]byte, pagecache.BlockSize)
		copy(pg, head)
		if len(tail) > len(pg) {
			tail = tail[len(tail)-len(pg):]
		}
		copy(pg[len(pg)-len(tail):], tail)
		p := page(pg)

		verr := validatePage(pg)
		if verr != nil && !errors.Is(verr, base.ErrCorrupt) {
			t.Fatalf("validatePage error does not wrap ErrCorrupt: %v", verr)
		}
		if _, _, err := decodeMeta(pg); err != nil && !errors.Is(err, base.ErrCorrupt) {
			t.Fatalf("decodeMeta error does not wrap ErrCorrupt: %v", err)
		}
		if p.sane() {
			p.searchLeaf(key)
			p.searchInternal(key)
			p.highKey()
			for i := range p.nItems() {
				p.entry(i)
				p.child(i)
			}
			if len(key) > 0 && verr == nil && p.isLeaf() {
				// What a scan does on the page.
				idx, _, ok := p.searchLeaf(key)
				if !ok {
					t.Fatal("searchLeaf failed on a valid page")
				}
				for i := idx; i < p.nItems(); i++ {
					if _, _, ok := p.entry(i); !ok {
						t.Fatal("entry failed on a valid page")
					}
				}
			}
		}

		// Redo of an operation, with the three operation kinds.
		for _, in := range []uint8{infoInsert, infoDelete, infoRepoint, info} {
			q := bytes.Clone(pg)
			err := applyOp(in, page(q), op)
			if err != nil {
				if !errors.Is(err, base.ErrCorrupt) {
					t.Fatalf("applyOp error does not wrap ErrCorrupt: %v", err)
				}
				if !bytes.Equal(q, pg) {
					t.Fatal("applyOp changed the page and failed")
				}
				continue
			}
			if verr == nil && in != infoInsert {
				// Deletes and repoints of a valid page keep it valid,
				// apart from a repoint to an invalid TID.
				if err := validatePage(q); err != nil && in == infoDelete {
					t.Fatalf("delete turned a valid page invalid: %v", err)
				}
			}
		}
	})
}

// TestSplitPageAlwaysFits splits pages full of random items of every size
// at every insert position: both halves must fit and be valid pages, and
// together hold every item.
func TestSplitPageAlwaysFits(t *testing.T) {
	rng := newRand(t)
	iters := 2000
	if testing.Short() || raceEnabled {
		iters = 300
	}
	for iter := range iters {
		leaf := iter%2 == 0
		level, flags := 0, uint16(flagLeaf)
		if !leaf {
			level, flags = 1, 0
		}
		p := make(page, pagecache.BlockSize)
		right := base.BlockNum(99)
		if rng.IntN(2) == 0 {
			right = base.InvalidBlock
		}
		initPage(p, level, flags, base.InvalidBlock, right)
		maxLen := []int{8, 100, MaxKeySize}[rng.IntN(3)]
		// Sorted distinct keys, filling the page.
		var keys [][]byte
		seen := map[string]bool{}
		for len(keys) < 400 {
			k := randKey(rng, maxLen)
			if !seen[string(k)] {
				seen[string(k)] = true
				keys = append(keys, k)
			}
		}
		sortKeys(keys)
		hk := keys[len(keys)-1]
		keys = keys[:len(keys)-1]
		if right != base.InvalidBlock {
			insertItem(p, 0, appendItem(nil, hk, base.TID{}))
		}
		// Take every other key; the skipped ones are insert candidates.
		var cands [][]byte
		for i, k := range keys {
			it := appendItem(nil, k, base.TID{Block: 5, Offset: 1})
			if !leaf {
				if p.nItems() == p.firstData() {
					it = appendItem(nil, nil, base.TID{Block: 5})
				} else {
					it = appendItem(nil, k, base.TID{Block: 5})
				}
			}
			if i%2 == 1 || p.freeSpace() < len(it)+lpSize {
				cands = append(cands, k)
				continue
			}
			insertItem(p, p.nItems(), it)
		}
		if err := validatePage(p); err != nil {
			t.Fatalf("iter %d: built an invalid page: %v", iter, err)
		}
		var k []byte
		for _, c := range cands {
			if p.nItems() > p.firstData()+1 && bytes.Compare(c, p.key(p.firstData()+1)) > 0 {
				k = c
				break
			}
		}
		if k == nil {
			continue
		}
		idx, found, _ := p.searchLeaf(k)
		if !leaf {
			i, _ := p.searchInternal(k)
			idx, found = i+1, false
		}
		if found {
			continue
		}
		item := appendItem(nil, k, base.TID{Block: 6, Offset: 2})
		if !leaf {
			item = appendItem(nil, k, base.TID{Block: 6})
		}
		l, r, sep, err := splitPage(p, idx, item)
		if err != nil {
			t.Fatalf("iter %d: %v", iter, err)
		}
		l.setRight(77)
		r.setLeft(1)
		r.setRight(p.right())
		for _, half := range []page{l, r} {
			if err := validatePage(half); err != nil {
				t.Fatalf("iter %d (leaf %v, maxLen %d): half invalid: %v", iter, leaf, maxLen, err)
			}
		}
		if !bytes.Equal(l.highKey(), sep) {
			t.Fatalf("iter %d: left high key %x, separator %x", iter, l.highKey(), sep)
		}
		if got, want := (l.nItems()-1)+(r.nItems()-r.firstData()), p.nItems()-p.firstData()+1; got != want {
			t.Fatalf("iter %d: halves hold %d items, want %d", iter, got, want)
		}
	}
}
