package xlog

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/vfs"
)

type written struct {
	start, end base.LSN
	payload    []byte
}

// TestRoundTrip writes records of 0 B to 3 MiB through a 64 KiB ring into
// 64 KiB segments and reads them back, with the Reader and with recovery
// after a restart.
func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(uint64(baseSeed(t)), 1))
	fs := vfs.NewMemFS()
	l, _, _ := openLog(t, fs, smallConfig(), nil)
	sizes := []int{0, 1, 7, 8, 9, 100, 8191, 8192, 65536 - HeaderSize, 65536, 65537, 100_000, 1 << 20, 3 << 20}
	for range 40 {
		sizes = append(sizes, rng.IntN(200_000))
	}
	var recs []written
	for i, n := range sizes {
		p := make([]byte, n)
		for j := range p {
			p[j] = byte(rng.Uint32())
		}
		s, e := insertPayload(t, l, base.XID(i+1), p)
		recs = append(recs, written{s, e, p})
		if e <= s || e%8 != 0 {
			t.Fatalf("record %d: start %s end %s", i, s, e)
		}
	}
	if err := l.Flush(recs[len(recs)-1].end); err != nil {
		t.Fatal(err)
	}
	if st := l.Stats(); st.BuffersFull == 0 || st.Records < uint64(len(sizes)) {
		t.Errorf("stats %+v: expected ring-full writes with a 64 KiB ring", st)
	}

	r := NewReader(fs, testDir, l.SegmentSize(), recs[0].start, recs[len(recs)-1].end)
	for i, w := range recs {
		if !r.Next() {
			t.Fatalf("record %d (%d bytes at %s) missing: err %v end %v", i, len(w.payload), w.start, r.Err(), r.End())
		}
		rec := r.Record()
		if rec.LSN != w.start || rec.End != w.end || rec.XID != base.XID(i+1) || !bytes.Equal(rec.Payload, w.payload) {
			t.Fatalf("record %d: got lsn %s end %s xid %d len %d; want %s %s %d %d",
				i, rec.LSN, rec.End, rec.XID, len(rec.Payload), w.start, w.end, i+1, len(w.payload))
		}
		if i > 0 && rec.Prev != recs[i-1].start {
			t.Fatalf("record %d: prev %s, want %s", i, rec.Prev, recs[i-1].start)
		}
	}
	if r.Next() {
		t.Fatalf("unexpected record at %s", r.Record().LSN)
	}
	if r.Err() != nil || r.End().LSN != recs[len(recs)-1].end {
		t.Fatalf("end: %v %v", r.Err(), r.End())
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l2, c, res := openLog(t, fs, Config{}, nil)
	defer l2.Close()
	if res.Crashed {
		t.Errorf("clean shutdown reported as crash")
	}
	// A clean shutdown's redo point is the shutdown checkpoint: nothing of
	// ours is replayed.
	if len(c.recs) != 0 {
		t.Errorf("replayed %d records after a shutdown checkpoint", len(c.recs))
	}
	if l2.SegmentSize() != 64<<10 {
		t.Errorf("segment size %d not taken from the control file", l2.SegmentSize())
	}
}

// buildTail writes n small records and one last record of lastLen bytes,
// placed across a segment boundary, and returns them.
func buildTail(t *testing.T, fs *vfs.MemFS, lastLen int) (*Log, []written) {
	t.Helper()
	l, _, _ := openLog(t, fs, smallConfig(), nil)
	var recs []written
	for i := range 30 {
		p := bytes.Repeat([]byte{byte(i)}, 37*i)
		s, e := insertPayload(t, l, 1, p)
		recs = append(recs, written{s, e, p})
	}
	// Fill up to half the last record before a segment boundary.
	seg := l.SegmentSize()
	pos := int64(l.InsertLSN())
	half := int64(HeaderSize+lastLen) / 2 &^ 7
	gap := (seg - pos%seg) - half - HeaderSize
	if gap < 0 {
		gap += seg
	}
	p := make([]byte, gap)
	s, e := insertPayload(t, l, 1, p)
	recs = append(recs, written{s, e, p})
	last := make([]byte, lastLen)
	for i := range last {
		last[i] = byte(i*13 + 5)
	}
	s, e = insertPayload(t, l, 2, last)
	recs = append(recs, written{s, e, last})
	if err := l.Flush(e); err != nil {
		t.Fatal(err)
	}
	if int64(s)/seg == int64(e-1)/seg {
		t.Fatalf("last record %s..%s does not cross a segment boundary", s, e)
	}
	return l, recs
}

// patchWAL XORs (or, with zero, clears) the stream bytes [at, at+n).
func patchWAL(t *testing.T, fs *vfs.MemFS, segSize int64, at base.LSN, n int, xor byte, zero bool) {
	t.Helper()
	for i := range n {
		pos := int64(at) + int64(i)
		name := testDir + "/wal/" + segmentName(pos/segSize)
		if zero {
			f, err := fs.Open(name)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt([]byte{0}, pos%segSize); err != nil {
				t.Fatal(err)
			}
			f.Close()
			continue
		}
		if err := fs.CorruptByte(name, pos%segSize, xor); err != nil {
			t.Fatal(err)
		}
	}
}

func readAll(fs vfs.FS, segSize int64, from, mustReach base.LSN) ([]base.LSN, *Reader) {
	r := NewReader(fs, testDir, segSize, from, mustReach)
	var got []base.LSN
	for r.Next() {
		got = append(got, r.Record().LSN)
	}
	return got, r
}

// checkTail asserts that the reader returned exactly recs[:len-1] and ended
// cleanly at the last record's start.
func checkTail(t *testing.T, what string, got []base.LSN, r *Reader, recs []written) {
	t.Helper()
	last := recs[len(recs)-1]
	if r.Err() != nil {
		t.Fatalf("%s: error %v", what, r.Err())
	}
	if len(got) != len(recs)-1 {
		t.Fatalf("%s: read %d records, want %d (end %v)", what, len(got), len(recs)-1, r.End())
	}
	for i := range got {
		if got[i] != recs[i].start {
			t.Fatalf("%s: record %d at %s, want %s", what, i, got[i], recs[i].start)
		}
	}
	if end := r.End(); end.LSN != last.start || end.Prev != recs[len(recs)-2].start {
		t.Fatalf("%s: end %v prev %s, want %s prev %s", what, end, end.Prev, last.start, recs[len(recs)-2].start)
	}
}

// TestTornTail cuts the last record at every byte offset: the reader returns
// every earlier record and reports the end at the last record's start.
func TestTornTail(t *testing.T) {
	fs := vfs.NewMemFS()
	l, recs := buildTail(t, fs, 500)
	defer l.Close()
	segSize := l.SegmentSize()
	last := recs[len(recs)-1]
	totLen := HeaderSize + len(last.payload)
	size := int64(last.end - last.start)
	orig := fs.Clone()
	for off := range totLen {
		fs2 := orig.Clone()
		patchWAL(t, fs2, segSize, last.start+base.LSN(off), totLen-off, 0, true)
		got, r := readAll(fs2, segSize, recs[0].start, 0)
		what := fmt.Sprintf("cut at %d", off)
		checkTail(t, what, got, r, recs)
		switch end := r.End(); {
		case off == 0:
			if end.Reason != EndZeros || end.Dropped != 0 {
				t.Fatalf("%s: end %v, want zeros, nothing dropped", what, end)
			}
		case off >= 4:
			if end.Reason != EndBadCRC || end.Dropped != size {
				t.Fatalf("%s: end %v, want CRC mismatch, %d bytes dropped", what, end, size)
			}
		case end.Reason != EndBadCRC && end.Reason != EndBadLength:
			t.Fatalf("%s: end %v", what, end)
		}
		// The same cut below a durable point is corruption.
		_, r = readAll(fs2, segSize, recs[0].start, last.end)
		if !errors.Is(r.Err(), base.ErrCorrupt) {
			t.Fatalf("cut at %d with mustReach: err %v", off, r.Err())
		}
	}
}

// TestFlippedTail flips each byte of the last record in turn.
func TestFlippedTail(t *testing.T) {
	fs := vfs.NewMemFS()
	l, recs := buildTail(t, fs, 300)
	defer l.Close()
	segSize := l.SegmentSize()
	last := recs[len(recs)-1]
	totLen := HeaderSize + len(last.payload)
	for off := range totLen {
		at := last.start + base.LSN(off)
		patchWAL(t, fs, segSize, at, 1, 0xFF, false)
		got, r := readAll(fs, segSize, recs[0].start, 0)
		checkTail(t, fmt.Sprintf("flip at %d", off), got, r, recs)
		patchWAL(t, fs, segSize, at, 1, 0xFF, false)
	}
	got, r := readAll(fs, segSize, recs[0].start, 0)
	if len(got) != len(recs) || r.Err() != nil {
		t.Fatalf("after restoring: %d records, err %v", len(got), r.Err())
	}
}

// TestCorruptMiddle damages a record that valid records follow: the reader
// stops with an error naming its LSN instead of treating it as the end.
func TestCorruptMiddle(t *testing.T) {
	fs := vfs.NewMemFS()
	l, recs := buildTail(t, fs, 100)
	defer l.Close()
	segSize := l.SegmentSize()
	for _, victim := range []int{0, 5, 17, len(recs) - 2} {
		for _, off := range []int{HeaderSize + 1, 5, 20, 26} { // payload, CRC, prev, nblocks
			if off >= int(recs[victim].end-recs[victim].start) || (off == HeaderSize+1 && len(recs[victim].payload) < 2) {
				continue
			}
			at := recs[victim].start + base.LSN(off)
			patchWAL(t, fs, segSize, at, 1, 0x40, false)
			got, r := readAll(fs, segSize, recs[0].start, 0)
			patchWAL(t, fs, segSize, at, 1, 0x40, false)
			if !errors.Is(r.Err(), base.ErrCorrupt) {
				t.Fatalf("victim %d off %d: err %v, end %v", victim, off, r.Err(), r.End())
			}
			if !strings.Contains(r.Err().Error(), recs[victim].start.String()) {
				t.Fatalf("victim %d: error %q does not name %s", victim, r.Err(), recs[victim].start)
			}
			if len(got) != victim {
				t.Fatalf("victim %d: %d records before the error", victim, len(got))
			}
		}
	}
	// Recovery refuses too.
	patchWAL(t, fs, segSize, recs[5].start+HeaderSize+1, 1, 0x40, false)
	l2, err := Open(fs.Clone(), testDir, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	l2.RegisterRmgr(rmgrTest, "test", func(*Record, *RedoContext) error { return nil })
	if _, err := l2.Recover(nil); !errors.Is(err, base.ErrCorrupt) {
		t.Fatalf("Recover over a corrupt middle record: %v", err)
	}
}

// TestCheckpointSectionsOutliveTheReader: the sections recovery returns
// must not alias the reader's buffer, which later records overwrite.
func TestCheckpointSectionsOutliveTheReader(t *testing.T) {
	fs := vfs.NewMemFS()
	l, _, _ := openLog(t, fs, smallConfig(), newFakePages())
	want := []byte("section bytes that must survive")
	l.RegisterCheckpointHook("t", func(_ base.LSN, cp *CheckpointData) error {
		if cp.Sections == nil {
			cp.Sections = map[string][]byte{}
		}
		cp.Sections["t"] = want
		return nil
	})
	if err := l.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	for i := range 50 { // later, smaller records reuse the reader's buffer
		insertPayload(t, l, base.XID(i+1), bytes.Repeat([]byte{0xEE}, 60)) // no longer than the checkpoint record
	}
	if err := l.Flush(l.InsertLSN()); err != nil {
		t.Fatal(err)
	}
	crashed := fs.Clone()
	l.Close()
	crashed.Crash(vfs.CrashOptions{})
	l2, _, res := openLog(t, crashed, smallConfig(), newFakePages())
	defer l2.Close()
	if got := res.Checkpoint.Sections["t"]; !bytes.Equal(got, want) {
		t.Fatalf("checkpoint section after recovery = %q, want %q", got, want)
	}
}
