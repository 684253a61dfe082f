package xlog

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/heapkv/heapkv/pagecache"
)

// encodeForFuzz assembles b as a finished record with the given prev link.
func encodeForFuzz(b *RecordBuilder, comp Compression) []byte {
	var a assembled
	if err := b.assemble(1<<20, true, comp, &a); err != nil {
		panic(err)
	}
	a.finish(1 << 16)
	return a.buf[:a.totLen]
}

func FuzzDecodeRecord(f *testing.F) {
	rng := rand.New(rand.NewPCG(1, 1))
	page := randomPage(rng)
	after := bytes.Clone(page)
	mutatePage(rng, after)
	f.Add(encodeForFuzz(NewRecord(rmgrTest, 0, 7).SetPayload([]byte("hello")), CompressionNone))
	f.Add(encodeForFuzz(NewRecord(RmgrXLOG, InfoPage, 0).Page(1, 2, page, after), CompressionNone))
	f.Add(encodeForFuzz(NewRecord(RmgrXLOG, InfoPage, 0).Image(1, 2, after).Page(3, 4, page, after), CompressionS2))
	f.Add(encodeForFuzz(NewRecord(RmgrXLOG, InfoPage, 0).Image(1, 2, after), CompressionZstd))
	f.Add(encodeForFuzz(NewRecord(rmgrPage, 0, 0).PageOp(1, 2, after, []byte{1, 2, 3}), CompressionNone))
	f.Add([]byte{})
	f.Add(make([]byte, HeaderSize))
	f.Fuzz(func(t *testing.T, data []byte) {
		rec, err := DecodeRecord(data)
		if err != nil {
			return
		}
		// A record that decodes must have blocks that apply or fail cleanly.
		pg := make([]byte, pagecache.BlockSize)
		for i := range rec.Blocks {
			_ = rec.Blocks[i].Apply(pg)
		}
		if rec.Rmgr == RmgrXLOG && (rec.Info == InfoCheckpointOnline || rec.Info == InfoCheckpointShutdown) {
			_, _ = DecodeCheckpoint(rec.Payload)
		}
	})
}

// FuzzDecodeRecordBody fuzzes the structure behind a valid CRC: the fuzzer's
// bytes become a record body whose header and CRC are made right, so the
// decoder's structural checks (not just the CRC) get exercised.
func FuzzDecodeRecordBody(f *testing.F) {
	f.Add(uint16(1), uint32(5), []byte("0123456789abcdefghijklmnopqrstuvwxyz"))
	f.Add(uint16(0), uint32(0), []byte{})
	f.Fuzz(func(t *testing.T, nblocks uint16, paylen uint32, body []byte) {
		rec := make([]byte, HeaderSize+len(body))
		copy(rec[HeaderSize:], body)
		putLE32(rec[0:], uint32(len(rec)))
		putLE16(rec[26:], nblocks)
		putLE32(rec[28:], paylen)
		putLE32(rec[4:], recordCRC(rec))
		r, err := DecodeRecord(rec)
		if err != nil {
			return
		}
		pg := make([]byte, pagecache.BlockSize)
		for i := range r.Blocks {
			_ = r.Blocks[i].Apply(pg)
		}
	})
}

func putLE16(b []byte, v uint16) { b[0], b[1] = byte(v), byte(v>>8) }
func putLE32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
}

func FuzzApplyDelta(f *testing.F) {
	rng := rand.New(rand.NewPCG(2, 2))
	page := randomPage(rng)
	after := bytes.Clone(page)
	mutatePage(rng, after)
	f.Add(AppendDelta(nil, page, after))
	f.Add(AppendDelta(nil, page, page))
	f.Add([]byte{1, 0, 8, 0, 1, 0, 42})
	f.Add([]byte{2, 0, 0xff, 0x1f, 1, 0, 1, 0x10, 0, 1, 0, 2})
	f.Fuzz(func(t *testing.T, delta []byte) {
		pg := make([]byte, pagecache.BlockSize)
		orig := bytes.Clone(pg)
		if err := ApplyDelta(pg, delta); err != nil {
			if !bytes.Equal(pg, orig) {
				t.Fatal("a rejected delta changed the page")
			}
			return
		}
		if !bytes.Equal(pg[:deltaSkip], orig[:deltaSkip]) {
			t.Fatal("a delta changed the page LSN")
		}
	})
}

func FuzzApplyImage(f *testing.F) {
	rng := rand.New(rand.NewPCG(3, 3))
	page := randomPage(rng)
	for _, c := range []Compression{CompressionNone, CompressionS2, CompressionZstd} {
		data, h := appendImage(nil, page, c)
		f.Add(uint8(h.comp), h.holeOff, h.holeLen, data)
	}
	f.Fuzz(func(t *testing.T, comp uint8, holeOff, holeLen uint16, data []byte) {
		ref := BlockRef{Kind: BlockImage, Compression: Compression(comp), HoleOffset: holeOff, HoleLength: holeLen, Data: data}
		_ = ref.Apply(make([]byte, pagecache.BlockSize))
	})
}

func FuzzDecodeControl(f *testing.F) {
	c := ControlData{SystemID: 1, CheckPoint: 0x10020, Redo: 0x10000, NextXID: 5, State: StateShutdown, SegmentSize: 1 << 16}
	f.Add(c.Encode())
	f.Add([]byte{})
	f.Add(make([]byte, controlSize))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := DecodeControl(data)
		if err != nil {
			return
		}
		if !bytes.Equal(got.Encode(), data) {
			t.Fatal("a control file that decodes does not encode back to itself")
		}
	})
}

func FuzzDecodeCheckpoint(f *testing.F) {
	cp := CheckpointData{Redo: 1 << 16, NextXID: 3, Sections: map[string][]byte{"clog": {1, 2, 3}, "x": nil}}
	f.Add(cp.encode())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = DecodeCheckpoint(data)
	})
}
