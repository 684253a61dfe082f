package txn

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"testing"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/vfs"
	"github.com/heapkv/heapkv/xlog"
)

// Fuzz targets for every decoder of bytes txn reads from disk. Each
// decoder must return an error matching base.ErrCorrupt on bad input,
// never panic, and never allocate more than the input can hold. The
// encodings are canonical, so whatever decodes re-encodes to the very
// input, and the seeds are valid encodings (decode(encode(x)) == x is
// checked on them by TestCodecRoundTrip).
//
//	go test ./txn -run XXX -fuzz FuzzDecodeXIDs -fuzztime 30s

// codecSamples are valid values of each encoding, the fuzz seeds.
var (
	sampleXIDLists = [][]base.XID{nil, {FirstNormalXID}, {10, 11, 12}, {1 << 40, 1<<63 + 5}}
	sampleGIDs     = []string{"g", "pay-42", string(bytes.Repeat([]byte{'x'}, maxGIDLen)), "ünï\x00code"}
	samplePreps    = [][]preparedRecord{
		nil,
		{{gid: "a", xid: 7}},
		{{gid: "alpha", xid: 100, subs: []base.XID{101, 105}}, {gid: "beta", xid: 200}},
	}
	samplePayloads = []struct {
		info uint8
		p    txnPayload
	}{
		{infoZeroPage, txnPayload{page: 0}},
		{infoZeroPage, txnPayload{page: 12345}},
		{infoZeroPage, txnPayload{page: maxCLOGPage}},
		{infoTruncate, txnPayload{oldest: 1 << 33}},
		{infoCommit, txnPayload{}},
		{infoCommit, txnPayload{subs: []base.XID{8, 9}}},
		{infoAbort, txnPayload{subs: []base.XID{8}}},
		{infoAbortSub, txnPayload{subs: []base.XID{20, 21, 22}}},
		{infoPrepare, txnPayload{gid: "g1", subs: []base.XID{31}}},
		{infoCommitPrepared, txnPayload{gid: "g1"}},
		{infoAbortPrepared, txnPayload{gid: "g2", subs: []base.XID{40, 41}}},
	}
)

// hugeCount is a count field claiming 2^32-1 entries.
func hugeCount(prefix []byte, size int) []byte {
	b := binary.LittleEndian.AppendUint32(slices.Clone(prefix), ^uint32(0))
	return append(b, make([]byte, size-len(b))...)
}

func mustCorrupt(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil && !errors.Is(err, base.ErrCorrupt) {
		t.Fatalf("%s: error %v does not match ErrCorrupt", what, err)
	}
}

func FuzzDecodeXIDs(f *testing.F) {
	for _, xs := range sampleXIDLists {
		f.Add(appendXIDs(nil, xs))
		f.Add(append(appendXIDs(nil, xs), 1, 2, 3)) // bytes after the list
	}
	f.Add(hugeCount(nil, 20))
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}) // xid 0
	f.Fuzz(func(t *testing.T, b []byte) {
		xids, rest, err := decodeXIDs(b)
		mustCorrupt(t, "decodeXIDs", err)
		if err != nil {
			return
		}
		if len(xids)*8+4+len(rest) != len(b) {
			t.Fatalf("decoded %d xids and %d rest from %d bytes", len(xids), len(rest), len(b))
		}
		if enc := appendXIDs(nil, xids); !bytes.Equal(enc, b[:len(b)-len(rest)]) {
			t.Fatalf("re-encoding %v gives %x, input %x", xids, enc, b)
		}
	})
}

func FuzzDecodeGID(f *testing.F) {
	for _, g := range sampleGIDs {
		f.Add(appendGID(nil, g))
		f.Add(append(appendGID(nil, g), 9))
	}
	f.Add([]byte{0xff, 0xff, 'a'})
	f.Add([]byte{0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		gid, rest, err := decodeGID(b)
		mustCorrupt(t, "decodeGID", err)
		if err != nil {
			return
		}
		if len(gid) == 0 || len(gid) > maxGIDLen {
			t.Fatalf("decoded a gid of %d bytes", len(gid))
		}
		if enc := appendGID(nil, gid); !bytes.Equal(enc, b[:len(b)-len(rest)]) || len(enc)+len(rest) != len(b) {
			t.Fatalf("re-encoding %q gives %x, input %x", gid, enc, b)
		}
	})
}

func FuzzDecodeCheckpointState(f *testing.F) {
	for i, ps := range samplePreps {
		f.Add(appendCheckpointState(nil, base.XID(1000*i+3), ps))
	}
	f.Add(hugeCount(binary.LittleEndian.AppendUint64(nil, 5), 40))
	dup := []preparedRecord{{gid: "a", xid: 7}, {gid: "a", xid: 8}}
	f.Add(appendCheckpointState(nil, 3, dup))
	f.Fuzz(func(t *testing.T, b []byte) {
		oldest, preps, err := decodeCheckpointState(b)
		mustCorrupt(t, "decodeCheckpointState", err)
		if err != nil {
			return
		}
		if len(preps) > len(b)/minPreparedLen {
			t.Fatalf("%d prepared transactions from %d bytes", len(preps), len(b))
		}
		if enc := appendCheckpointState(nil, oldest, preps); !bytes.Equal(enc, b) {
			t.Fatalf("re-encoding gives %x, input %x", enc, b)
		}
	})
}

func FuzzDecodeTxnPayload(f *testing.F) {
	for _, s := range samplePayloads {
		f.Add(s.info, appendTxnPayload(nil, s.info, s.p))
	}
	f.Add(infoCommit, hugeCount(nil, 20))
	f.Add(infoPrepare, hugeCount(appendGID(nil, "g"), 20))
	f.Add(infoZeroPage, binary.LittleEndian.AppendUint64(nil, ^uint64(0)))
	f.Add(uint8(0x99), []byte{})
	f.Fuzz(func(t *testing.T, info uint8, p []byte) {
		r, err := decodeTxnPayload(info, p)
		mustCorrupt(t, "decodeTxnPayload", err)
		if err != nil {
			return
		}
		if len(r.subs)*8 > len(p) || r.page < 0 || r.page > maxCLOGPage {
			t.Fatalf("decoded %+v from %d bytes", r, len(p))
		}
		if enc := appendTxnPayload(nil, info, r); !bytes.Equal(enc, p) {
			t.Fatalf("re-encoding %+v gives %x, input %x", r, enc, p)
		}
	})
}

// FuzzCLOGPage writes arbitrary bytes as a CLOG segment file and reads its
// pages through the CLOG: every byte decodes (two bits per xid, each value
// a Status), a short file reads as zeros past its end, nothing panics;
// and statuses set, checkpointed and read back by a new CLOG round-trip.
// The file is size bytes of pattern repeated, so that small inputs reach
// every page.
func FuzzCLOGPage(f *testing.F) {
	f.Add([]byte{0x1b, 0xe4, 0x00, 0xff}, uint32(clogPageSize), uint8(0), uint16(0))
	f.Add([]byte{0x55}, uint32(100), uint8(1), uint16(7))
	f.Add([]byte{}, uint32(0), uint8(3), uint16(8191))
	f.Add([]byte{0xff}, uint32(3*clogPageSize+17), uint8(2), uint16(5000))
	f.Add([]byte{0xaa, 0x01}, uint32(pagesPerSegment*clogPageSize+5), uint8(31), uint16(65535))
	f.Fuzz(func(t *testing.T, pattern []byte, size uint32, pageInSeg uint8, at uint16) {
		data := make([]byte, size%(pagesPerSegment*clogPageSize+clogPageSize))
		if len(pattern) > 0 {
			for i := 0; i < len(data); i += len(pattern) {
				copy(data[i:], pattern)
			}
		}
		pageno := int64(pageInSeg % pagesPerSegment)
		fs := vfs.NewMemFS()
		if err := fs.MkdirAll("/db/clog"); err != nil {
			t.Fatal(err)
		}
		if err := vfs.WriteFileAtomic(fs, "/db/clog/0000", data); err != nil {
			t.Fatal(err)
		}
		c, err := OpenCLOG(fs, "/db/clog", 2, nil)
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, clogPageSize)
		if err := c.readPage(pageno, got); err != nil {
			t.Fatal(err)
		}
		want := make([]byte, clogPageSize)
		if off := pageno * clogPageSize; off < int64(len(data)) {
			copy(want, data[off:])
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("page %d read differs from the file's bytes", pageno)
		}
		byteAt := int64(at) % clogPageSize
		for i := range base.XID(4) {
			x := base.XID(pageno*xidsPerPage+byteAt*4) + i
			st, err := c.Status(x)
			if err != nil {
				t.Fatal(err)
			}
			if wantSt := Status(want[byteAt]>>(2*i)) & 3; st != wantSt {
				t.Fatalf("xid %d: %v, want %v", x, st, wantSt)
			}
		}
		// Round trip: overwrite one xid's status, checkpoint, reopen.
		x := base.XID(pageno*xidsPerPage + byteAt*4 + int64(at%4))
		newSt := Status(at>>14) & 3
		if err := c.SetStatus([]base.XID{x}, newSt, 0); err != nil {
			t.Fatal(err)
		}
		if err := c.Checkpoint(); err != nil {
			t.Fatal(err)
		}
		c2, err := OpenCLOG(fs, "/db/clog", 2, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, y := range []base.XID{x - 1, x, x + 1} {
			if y < base.XID(pageno*xidsPerPage) || y >= base.XID((pageno+1)*xidsPerPage) {
				continue
			}
			want := pageStatus(want, y)
			if y == x {
				want = newSt
			}
			if st, err := c2.Status(y); err != nil || st != want {
				t.Fatalf("after checkpoint, xid %d is %v (%v), want %v", y, st, err, want)
			}
		}
	})
}

// FuzzCLOGSegmentName: the names in the CLOG directory are read from disk
// too. parseSegName accepts exactly the names segName makes, so Truncate
// never takes a stray file (say "-1" or "+0001") for a segment to remove.
func FuzzCLOGSegmentName(f *testing.F) {
	for _, s := range []int64{0, 1, 0xABC, 0xFFFF, 0x10000, 1<<62 + 3} {
		f.Add(segName(s))
	}
	for _, s := range []string{"", "-1", "+0001", "0abc", "00001", "GGGG", "0000.tmp", "7FFFFFFFFFFFFFFFF"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		seg, ok := parseSegName(name)
		if !ok {
			return
		}
		if seg < 0 || segName(seg) != name {
			t.Fatalf("parseSegName(%q) = %d, which segName writes %q", name, seg, segName(seg))
		}
	})
}

// TestCodecRoundTrip: decode(encode(x)) == x for the seeds of the fuzz
// targets, which are therefore valid encodings.
func TestCodecRoundTrip(t *testing.T) {
	for _, xs := range sampleXIDLists {
		got, rest, err := decodeXIDs(appendXIDs(nil, xs))
		if err != nil || !slices.Equal(got, xs) || len(rest) != 0 {
			t.Fatalf("xids %v: decoded %v, rest %x, %v", xs, got, rest, err)
		}
	}
	for _, g := range sampleGIDs {
		got, rest, err := decodeGID(appendGID(nil, g))
		if err != nil || got != g || len(rest) != 0 {
			t.Fatalf("gid %q: decoded %q, rest %x, %v", g, got, rest, err)
		}
	}
	for i, ps := range samplePreps {
		oldest, got, err := decodeCheckpointState(appendCheckpointState(nil, base.XID(i+3), ps))
		if err != nil || oldest != base.XID(i+3) || fmt.Sprint(got) != fmt.Sprint(ps) && !(len(got) == 0 && len(ps) == 0) {
			t.Fatalf("checkpoint state %v: decoded %d %v, %v", ps, oldest, got, err)
		}
	}
	for _, s := range samplePayloads {
		got, err := decodeTxnPayload(s.info, appendTxnPayload(nil, s.info, s.p))
		if err != nil || got.page != s.p.page || got.oldest != s.p.oldest || got.gid != s.p.gid || !slices.Equal(got.subs, s.p.subs) {
			t.Fatalf("payload %#x %+v: decoded %+v, %v", s.info, s.p, got, err)
		}
	}
	for _, s := range []int64{0, 1, 0xFFFF, 0x10000, 1 << 62} {
		if got, ok := parseSegName(segName(s)); !ok || got != s {
			t.Fatalf("segment %d: name %q parses as %d, %v", s, segName(s), got, ok)
		}
	}
}

// TestDecodersRejectHugeCounts: a count field that claims 2^32-1 entries
// in a few bytes is rejected before anything is allocated for them (a
// decoder that believed it would ask for 32 GiB).
func TestDecodersRejectHugeCounts(t *testing.T) {
	inputs := []struct {
		name   string
		decode func() error
	}{
		{"xid list", func() error { _, _, err := decodeXIDs(hugeCount(nil, 20)); return err }},
		{"checkpoint state", func() error {
			_, _, err := decodeCheckpointState(hugeCount(binary.LittleEndian.AppendUint64(nil, 5), 40))
			return err
		}},
		{"commit payload", func() error { _, err := decodeTxnPayload(infoCommit, hugeCount(nil, 20)); return err }},
		{"prepare payload", func() error {
			_, err := decodeTxnPayload(infoPrepare, hugeCount(appendGID(nil, "g"), 20))
			return err
		}},
	}
	for _, in := range inputs {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		err := in.decode()
		runtime.ReadMemStats(&after)
		if !errors.Is(err, base.ErrCorrupt) {
			t.Fatalf("%s: %v, want ErrCorrupt", in.name, err)
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > 64<<10 {
			t.Fatalf("%s: decoding allocated %d bytes", in.name, n)
		}
	}
}

// TestRedoRejectsDamagedPayloads: recovery stops with ErrCorrupt at a txn
// record whose payload is damaged in a way the CRC cannot see (a bug of
// the writer, or a record of another version), rather than replay it:
// a zero-page record past the xid space (its page's successor would wrap
// the xid counter), bytes after a commit's subxids, an empty gid, a
// commit of xid 0.
func TestRedoRejectsDamagedPayloads(t *testing.T) {
	cases := []struct {
		name    string
		info    uint8
		xid     base.XID
		payload []byte
	}{
		{"zero page past the xid space", infoZeroPage, 0, binary.LittleEndian.AppendUint64(nil, uint64(maxCLOGPage)+1)},
		{"bytes after the subxids", infoCommit, 50, append(appendXIDs(nil, []base.XID{51}), 0xAA)},
		{"empty gid", infoPrepare, 50, appendXIDs(appendGID(nil, ""), nil)},
		{"commit of xid 0", infoCommit, 0, appendXIDs(nil, nil)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fs := vfs.NewMemFS()
			l, _ := openManager(t, fs, walConfig())
			_, end, err := l.Insert(xlog.NewRecord(RmgrTxn, tc.info, tc.xid).SetPayload(tc.payload))
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Flush(end); err != nil {
				t.Fatal(err)
			}
			c := fs.Clone()
			l.Close()
			c.Crash(vfs.CrashOptions{})
			l, err = xlog.Open(c, testDir, walConfig())
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			if _, err := NewManager(c, testDir, l, Config{}); err != nil {
				t.Fatal(err)
			}
			if _, err := l.Recover(nil); !errors.Is(err, base.ErrCorrupt) {
				t.Fatalf("Recover = %v, want ErrCorrupt", err)
			}
		})
	}
}
