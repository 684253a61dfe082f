package heap

import (
	"encoding/binary"
	"testing"

	"github.com/klauspost/compress/s2"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/pagecache"
	"github.com/heapkv/heapkv/xlog"
)

// samplePage builds a heap page with a few row versions (plain, compressed,
// external, a stub) and a dead and an unused line pointer, as seed input.
func samplePage(tb testing.TB) []byte {
	p := pagecache.Page(make([]byte, pagecache.BlockSize))
	initPage(p, false)
	ptr := toastPointer{rawLen: 9000, extLen: 9000, nchunks: 2, last: base.TID{Block: 3, Offset: 1}}
	tups := [][]byte{
		appendTuple(nil, 5, 0, base.InvalidTID, []byte("alpha"), []byte("one")),
		appendTuple(nil, 6, maskCompressed, base.TID{Block: 0, Offset: 1}, []byte("beta"), s2.Encode(nil, make([]byte, 300))),
		appendTuple(nil, 7, maskExternal, base.InvalidTID, []byte("gamma"), ptr.encode(nil)),
		appendTuple(nil, 8, 0, base.TID{Block: 0, Offset: 1}, []byte("alpha"), []byte("two")),
		appendTuple(nil, 9, 0, base.InvalidTID, []byte("delta"), []byte("gone")),
	}
	for i, tup := range tups {
		if err := addItem(p, i+1, tup); err != nil {
			tb.Fatal(err)
		}
	}
	if err := applyPrune(p, []pruneAction{{4, pruneStub}, {5, pruneDead}}); err != nil {
		tb.Fatal(err)
	}
	return p
}

func sampleToastPage(tb testing.TB) []byte {
	p := pagecache.Page(make([]byte, pagecache.BlockSize))
	initPage(p, true)
	var key [4]byte
	binary.LittleEndian.PutUint32(key[:], chunkData)
	if err := addItem(p, 1, appendTuple(nil, 7, maskChunk, base.TID{Block: 2, Offset: 1}, key[:], make([]byte, 9000-chunkData))); err != nil {
		tb.Fatal(err)
	}
	return p
}

// alignedPage copies b into a fresh, 8-aligned page (the heap's atomic
// infomask loads need alignment, which a buffer pool page always has).
func alignedPage(b []byte) pagecache.Page {
	p := new([pagecache.BlockSize]byte)
	copy(p[:], b)
	return p[:]
}

// FuzzTupleHeader: the tuple decoder never panics, and what it accepts is
// self-consistent.
func FuzzTupleHeader(f *testing.F) {
	f.Add(appendTuple(nil, 3, 0, base.InvalidTID, []byte("k"), []byte("v")))
	f.Add(appendTuple(nil, 3, maskChunk, base.TID{Block: 1, Offset: 2}, []byte{0, 0, 0, 0}, []byte("chunk")))
	f.Add(appendTuple(nil, 3, maskStub|uint32(xminInvalid), base.TID{Block: 1, Offset: 2}, []byte("k"), nil))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := decodeTupleHdr(b)
		if err != nil {
			return
		}
		if tupleHeaderSize+h.klen+h.vlen != len(b) || h.mask&^maskKnown != 0 {
			t.Fatalf("accepted inconsistent tuple %+v of %d bytes", h, len(b))
		}
	})
}

// FuzzToastPointer: the TOAST pointer decoder never panics.
func FuzzToastPointer(f *testing.F) {
	ptr := toastPointer{rawLen: 100000, extLen: 50000, nchunks: 7, crc: 1, last: base.TID{Block: 9, Offset: 3}}
	f.Add(ptr.encode(nil))
	f.Add(make([]byte, toastPointerSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodeToastPointer(b)
		if err != nil {
			return
		}
		if p.extLen == 0 || p.extLen > MaxValueSize || !p.last.Valid() {
			t.Fatalf("accepted bad pointer %+v", p)
		}
	})
}

// FuzzPage: every decoder that reads a page from disk (the page checks of
// Check, line pointers, tuple headers, inline values, TOAST chunks,
// compaction) never panics on any page.
func FuzzPage(f *testing.F) {
	f.Add(samplePage(f))
	f.Add(sampleToastPage(f))
	f.Add(make([]byte, pagecache.BlockSize))
	f.Fuzz(fuzzPageBody)
}

func fuzzPageBody(t *testing.T, b []byte) {
	{
		p := alignedPage(b)
		c := &checker{rows: map[base.TID]uint64{}, chunks: map[base.TID]chunkInfo{}}
		c.page(p, 0)
		c.links()
		_ = c.result()
		if p.IsNew() || checkHeader(p) != nil {
			return
		}
		var acts []pruneAction
		for i := 0; i <= numLP(p)+1; i++ {
			off, n, ok, err := tupleAt(p, i)
			if err != nil || !ok {
				continue
			}
			hdr, err := readTupleHdr(p, off, n)
			if err != nil {
				continue
			}
			// Inline values; compressed ones only when they claim a small
			// size (FuzzDecompress covers the rest without paying for
			// allocations of up to 64 MiB each time).
			w := walker{h: &Heap{}}
			start := off + tupleHeaderSize + hdr.klen
			if n, err := s2.DecodedLen(p[start : start+hdr.vlen]); hdr.mask&maskExternal == 0 &&
				(hdr.mask&maskCompressed == 0 || (err == nil && n < 1<<16)) {
				_, _ = w.value(p, off, uint16(i), &hdr, nil)
			}
			_, _, _, _ = chunkAt(p, base.TID{Block: 0, Offset: uint16(i)}, hdr.xmin)
			acts = append(acts, pruneAction{i, uint8(1 + i%3)})
		}
		_ = freeSpace(p)
		_ = chooseOffset(p)
		q := alignedPage(p)
		if err := applyPrune(q, acts); err == nil {
			if err := checkHeader(q); err != nil {
				t.Fatalf("prune left a bad header: %v", err)
			}
		}
	}
}

// FuzzRedo: replaying any operation data on any page never panics.
func FuzzRedo(f *testing.F) {
	tup := appendTuple(nil, 3, 0, base.InvalidTID, []byte("k"), []byte("v"))
	f.Add(samplePage(f), uint8(infoInsert), append([]byte{6, 0, 0, 0}, tup...))
	f.Add(make([]byte, pagecache.BlockSize), uint8(infoInsert), append([]byte{1, 0, opInitPage, 0}, tup...))
	f.Add(samplePage(f), uint8(infoSetXmax), encodeSetXmax(1, 99, true))
	f.Add(samplePage(f), uint8(infoPrune), encodePrune(nil, []pruneAction{{1, pruneStub}, {3, pruneUnused}}))
	f.Fuzz(func(t *testing.T, page []byte, info uint8, op []byte) {
		p := alignedPage(page)
		ref := &xlog.BlockRef{Kind: xlog.BlockData, Data: op}
		switch info % 3 {
		case 0:
			_ = redoInsert(p, ref)
		case 1:
			_ = redoSetXmax(p, ref)
		case 2:
			_ = redoPrune(p, ref)
		}
	})
}

// FuzzDecompress: an inline compressed value never makes the reader panic
// or allocate beyond MaxValueSize.
func FuzzDecompress(f *testing.F) {
	f.Add(s2.Encode(nil, []byte("hello hello hello hello hello hello")))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := decompress(nil, b, -1)
		if err == nil && len(out) > MaxValueSize {
			t.Fatalf("decoded %d bytes", len(out))
		}
	})
}

// FuzzFSMFile: a free space map file of any content loads without panic.
func FuzzFSMFile(f *testing.F) {
	m := newFSM()
	m.set(3, false, 4000)
	m.set(7, true, 100)
	f.Add(m.encode())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		newFSM().load(b, 64)
	})
}
