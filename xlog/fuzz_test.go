package xlog

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/vfs"
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
	c := ControlData{SystemID: 1, CheckPoint: 0x10020, Redo: 0x10000, NextXID: 5, State: StateShutdown, SegmentSize: 1 << 16, MustReach: 0x10080}
	f.Add(c.Encode())
	f.Add(encodeControlV1(&c))
	f.Add([]byte{})
	f.Add(make([]byte, controlSize))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := DecodeControl(data)
		if err != nil {
			return
		}
		if len(data) == controlSizeV1 {
			data = encodeControlV1(&got) // version 1 reads, and is written as 2
			if again, err := DecodeControl(got.Encode()); err != nil || again != got {
				t.Fatalf("version 1 %+v encodes as version 2 %+v, %v", got, again, err)
			}
		}
		if !bytes.Equal(got.Encode(), data) && !bytes.Equal(encodeControlV1(&got), data) {
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

// fuzzSegSize is the segment size FuzzReader cuts its input into: small, so
// that records cross segments and the look-ahead spans several of them.
const fuzzSegSize = 512

// fuzzStream returns records with payloads of the given sizes laid out as
// the WAL stream from LSN from on, linked by their prev fields.
func fuzzStream(from base.LSN, sizes ...int) []byte {
	var out []byte
	prev, at := base.LSN(0), from
	for i, n := range sizes {
		var a assembled
		b := NewRecord(rmgrTest, 0, base.XID(i+1)).SetPayload(bytes.Repeat([]byte{byte(i + 1)}, n))
		if err := b.assemble(at, false, CompressionNone, &a); err != nil {
			panic(err)
		}
		a.finish(prev)
		out = append(out, a.buf...)
		prev, at = at, at+base.LSN(len(a.buf))
	}
	return out
}

// FuzzReader feeds arbitrary bytes to the WAL reader as the segments of a
// stream (fuzzSegSize bytes each, starting with segment 1; bit i%8 of
// layout removes segment i+1, never the first). The low 15 bits of reach
// set mustReach in words past the start; the top bit bounds the
// look-ahead as recovery does. The reader must return a chain of records
// and then a clean end or corruption, never panic, and never allocate more
// than its input could hold.
func FuzzReader(f *testing.F) {
	from := base.LSN(fuzzSegSize)
	good := fuzzStream(from, 0, 10, 100, 300, 5, 700, 2000, 40)
	f.Add(uint8(0), uint16(0), good)
	f.Add(uint8(0), uint16(0x8000|len(good)/8), good)
	f.Add(uint8(0x08), uint16(0), good)           // segment 4 missing
	f.Add(uint8(0x20), uint16(len(good)/8), good) // segment 6 missing, below mustReach
	torn := bytes.Clone(good[:len(good)-30])
	f.Add(uint8(0), uint16(0x8000|100), torn)
	zeroed := bytes.Clone(good)
	clear(zeroed[32:36]) // the second record's length
	f.Add(uint8(0), uint16(0), zeroed)
	f.Add(uint8(0), uint16(0), []byte{})
	f.Fuzz(func(t *testing.T, layout uint8, reach uint16, data []byte) {
		data = data[:min(len(data), 64*fuzzSegSize)]
		fs := vfs.NewMemFS()
		if err := fs.MkdirAll(testDir + "/wal"); err != nil {
			t.Fatal(err)
		}
		for i := 0; i*fuzzSegSize < len(data); i++ {
			if i > 0 && layout&(1<<(i%8)) != 0 {
				continue
			}
			f, err := fs.Create(testDir + "/wal/" + segmentName(int64(i)+1))
			if err != nil {
				t.Fatal(err)
			}
			f.WriteAt(data[i*fuzzSegSize:min(len(data), (i+1)*fuzzSegSize)], 0)
			f.Close()
		}
		mustReach := from + base.LSN(reach&0x7fff)*recAlign
		r := NewReader(fs, testDir, fuzzSegSize, from, mustReach)
		if reach&0x8000 != 0 {
			r.limit = base.LSN((int64(mustReach)/fuzzSegSize + 2) * fuzzSegSize)
		}
		present := from + base.LSN((len(data)+fuzzSegSize-1)/fuzzSegSize*fuzzSegSize)

		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		next := from
		for r.Next() {
			rec := r.Record()
			if rec.LSN != next || rec.End <= rec.LSN || rec.End > present {
				t.Fatalf("record %s..%s after %s, input ends at %s", rec.LSN, rec.End, next, present)
			}
			next = rec.End
		}
		runtime.ReadMemStats(&after)
		if err := r.Err(); err != nil {
			if !errors.Is(err, base.ErrCorrupt) {
				t.Fatalf("reader error %v is not corruption", err)
			}
		} else if end := r.End(); end.LSN != next ||
			// Only a record that straddles mustReach may end the log below it.
			end.LSN < mustReach && end.Reason != EndBadCRC && end.Reason != EndMissingSegment && end.Reason != EndTooLong {
			t.Fatalf("clean end %v after %s with must-reach %s", end, next, mustReach)
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > 3*uint64(len(data))+4*fuzzSegSize+64<<10 {
			t.Fatalf("reader allocated %d bytes for %d bytes of input", n, len(data))
		}
	})
}

// FuzzRecover runs recovery over arbitrary bytes as segment 1 (and 2) of a
// data directory whose control file names a checkpoint at the start of
// segment 1 and the given MustReach (in words past it; 0: a version-1 control
// file). Recovery must succeed or fail without panicking; when it finds
// corruption it must leave the WAL files as they were; when it succeeds,
// the log must take a new record, and the next recovery must succeed and
// replay it.
func FuzzRecover(f *testing.F) {
	const segSize = MinSegmentSize
	fs := vfs.NewMemFS()
	l, err := Open(fs, testDir, Config{SegmentSize: segSize})
	if err != nil {
		f.Fatal(err)
	}
	l.RegisterRmgr(rmgrTest, "test", func(*Record, *RedoContext) error { return nil })
	if _, err := l.Recover(nil); err != nil {
		f.Fatal(err)
	}
	for i := range 20 {
		_, end, err := l.Insert(NewRecord(rmgrTest, 0, 1).SetPayload(bytes.Repeat([]byte{byte(i)}, i*37)))
		if err == nil {
			err = l.Flush(end)
		}
		if err != nil {
			f.Fatal(err)
		}
	}
	wal, _ := vfs.ReadFile(fs, testDir+"/wal/"+segmentName(1))
	l.Abandon()
	n := len(wal)
	for n > 0 && wal[n-1] == 0 {
		n--
	}
	wal = wal[:(n+7)&^7]
	f.Add(uint32(0), wal)
	f.Add(uint32(len(wal)/8), wal)
	f.Add(uint32(len(wal)/16), wal)
	cut := bytes.Clone(wal)
	clear(cut[len(cut)/2 : len(cut)/2+4])
	f.Add(uint32(0), cut)
	f.Add(uint32(len(wal)/8), cut)

	f.Fuzz(func(t *testing.T, reach uint32, data []byte) {
		data = data[:min(len(data), 2*segSize)]
		fs := vfs.NewMemFS()
		fs.MkdirAll(testDir + "/wal")
		for i := 0; i*segSize < len(data); i++ {
			f, _ := fs.Create(testDir + "/wal/" + segmentName(int64(i)+1))
			f.WriteAt(data[i*segSize:min(len(data), (i+1)*segSize)], 0)
			f.Close()
		}
		start := base.LSN(segSize)
		ctl := ControlData{SystemID: 1, CheckPoint: start, Redo: start, State: StateInProduction,
			SegmentSize: segSize, MustReach: start + base.LSN(reach%(4*segSize/8))*8}
		enc := ctl.Encode()
		if ctl.MustReach == start {
			enc = encodeControlV1(&ctl)
		}
		vfs.WriteFileAtomic(fs, testDir+"/control", enc)

		recoverOnce := func() (*Log, int, error) {
			l, err := Open(fs, testDir, Config{})
			if err != nil {
				return nil, 0, err
			}
			n := 0
			l.RegisterRmgr(rmgrTest, "test", func(*Record, *RedoContext) error { n++; return nil })
			_, err = l.Recover(nil)
			return l, n, err
		}
		before := walFiles(t, fs)
		l, n, err := recoverOnce()
		if l == nil {
			return // the control file did not decode
		}
		if err != nil {
			l.Abandon()
			if errors.Is(err, base.ErrCorrupt) && !sameFiles(before, walFiles(t, fs)) {
				t.Fatalf("recovery found corruption (%v) and changed the WAL files", err)
			}
			return
		}
		_, end, err := l.Insert(NewRecord(rmgrTest, 0, 1).SetPayload([]byte("after")))
		if err == nil {
			err = l.Flush(end)
		}
		if err != nil {
			t.Fatalf("write after recovery: %v", err)
		}
		l.Abandon()
		l, n2, err := recoverOnce()
		if err != nil {
			t.Fatalf("second recovery: %v", err)
		}
		l.Abandon()
		if n2 != n+1 {
			t.Fatalf("second recovery replayed %d records, first %d", n2, n)
		}
	})
}
