package xlog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/vfs"
)

// Tests of "Recovery knows where the log must reach": MustReach in the
// control file, the look-ahead, and the torn-tail rule (doc.go).

// encodeControlV1 returns c as a version-1 control file, as the builds
// before MustReach wrote it.
func encodeControlV1(c *ControlData) []byte {
	b := c.Encode()[:controlSizeV1]
	binary.LittleEndian.PutUint32(b[4:], 1)
	clear(b[64:68])
	binary.LittleEndian.PutUint32(b[68:], crc32.Checksum(b[:68], castagnoli))
	return b
}

// walFiles returns the contents of every file in the WAL directory.
func walFiles(t *testing.T, fs vfs.FS) map[string][]byte {
	t.Helper()
	names, err := fs.List(testDir + "/wal")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string][]byte{}
	for _, n := range names {
		b, err := vfs.ReadFile(fs, testDir+"/wal/"+n)
		if err != nil {
			t.Fatal(err)
		}
		m[n] = b
	}
	return m
}

func sameFiles(a, b map[string][]byte) bool {
	return maps.EqualFunc(a, b, bytes.Equal)
}

// raiseReachNow raises MustReach to what is flushed, as the WAL writer
// does after a segment fills.
func raiseReachNow(t *testing.T, l *Log) {
	t.Helper()
	l.ctlMu.Lock()
	err := l.raiseReachLocked(l.FlushedLSN())
	l.ctlMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
}

// writeAcked inserts n records of size bytes of payload, flushing each.
func writeAcked(t *testing.T, l *Log, n, size int) []written {
	t.Helper()
	var recs []written
	for i := range n {
		p := taggedPayload(0, 0, i, size)
		s, e := insertPayload(t, l, 1, p)
		if err := l.Flush(e); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, written{s, e, p})
	}
	return recs
}

// recoverCrashed opens and recovers fs and abandons the log again (no
// shutdown checkpoint); it returns the records replayed and Recover's result
// and error.
func recoverCrashed(t *testing.T, fs vfs.FS) (*collector, RecoveryResult, error) {
	t.Helper()
	l, err := Open(fs, testDir, Config{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	c := &collector{}
	l.RegisterRmgr(rmgrTest, "test", c.redo)
	res, err := l.Recover(nil)
	if aerr := l.Abandon(); aerr != nil {
		t.Fatalf("Abandon: %v", aerr)
	}
	return c, res, err
}

// wantCorrupt checks that err is corruption naming every string in names,
// and that recovery left the WAL files as they were.
func wantCorrupt(t *testing.T, what string, err error, fs vfs.FS, before map[string][]byte, names ...string) {
	t.Helper()
	if !errors.Is(err, base.ErrCorrupt) {
		t.Fatalf("%s: Recover returned %v, want corruption", what, err)
	}
	for _, n := range names {
		if !strings.Contains(err.Error(), n) {
			t.Fatalf("%s: error %q does not name %s", what, err, n)
		}
	}
	if !sameFiles(before, walFiles(t, fs)) {
		t.Fatalf("%s: recovery changed the WAL files after finding corruption", what)
	}
}

// TestRecoverDamagedLength damages the length field of a record in the
// middle of the log, with acknowledged commits after it, above and below
// MustReach: recovery fails with corruption naming the record and its
// segment, and leaves every WAL file as it found it. (It used to take the
// record for the end of the log and zero everything after it.)
func TestRecoverDamagedLength(t *testing.T) {
	damages := []struct {
		name string
		off  int64
		xor  byte
		zero bool
	}{
		{"zeroed", 0, 0, true},           // tot_len 0
		{"plausible", 1, 0x40, false},    // tot_len + 16 KiB: CRC fails
		{"impossible", 3, 0xFF, false},   // beyond MaxRecordSize
		{"too short", 0, 0x3F, false},    // below HeaderSize (for a short record)
		{"off by eight", 0, 0x08, false}, // the next record's start moves
	}
	for _, below := range []bool{false, true} {
		for _, d := range damages {
			what := fmt.Sprintf("%s, below must-reach %v", d.name, below)
			fs := vfs.NewMemFS()
			l, _, _ := openLog(t, fs, smallConfig(), nil)
			recs := writeAcked(t, l, 20, 150)
			victim := recs[8]
			if below {
				raiseReachNow(t, l)
			}
			if r := l.Control().MustReach; below != (r > victim.start) {
				t.Fatalf("%s: must-reach %s, victim at %s", what, r, victim.start)
			}
			crashed := fs.Clone()
			l.Close()
			patchWAL(t, crashed, 64<<10, victim.start+base.LSN(d.off), 1, d.xor, d.zero)
			before := walFiles(t, crashed)
			_, _, err := recoverCrashed(t, crashed)
			wantCorrupt(t, what, err, crashed, before, victim.start.String(), testDir+"/wal/"+segmentName(1))
		}
	}
}

// spanSegments writes acknowledged 3000-byte records until the flushed end
// lies in segment last.
func spanSegments(t *testing.T, l *Log, last int64) []written {
	t.Helper()
	var recs []written
	for int64(l.FlushedLSN())/l.SegmentSize() < last {
		recs = append(recs, writeAcked(t, l, 1, 3000)...)
	}
	return recs
}

// TestRecoverMissingSegment deletes a segment in the middle of the log:
// recovery fails naming it, whether MustReach says the log reached past it
// or (a version-1 control file) the look-ahead finds the records after it.
// The reader alone, with no bound at all, finds it too.
func TestRecoverMissingSegment(t *testing.T) {
	fs := vfs.NewMemFS()
	l, _, _ := openLog(t, fs, smallConfig(), nil)
	spanSegments(t, l, 6)
	orig := fs.Clone()
	l.Close()
	if err := orig.Remove(testDir + "/wal/" + segmentName(3)); err != nil {
		t.Fatal(err)
	}
	name := testDir + "/wal/" + segmentName(3)

	crashed := orig.Clone()
	before := walFiles(t, crashed)
	_, _, err := recoverCrashed(t, crashed)
	wantCorrupt(t, "must-reach", err, crashed, before, name, "missing")

	crashed = orig.Clone()
	ctl, err := DecodeControl(mustRead(t, crashed, testDir+"/control"))
	if err != nil {
		t.Fatal(err)
	}
	if err := vfs.WriteFileAtomic(crashed, testDir+"/control", encodeControlV1(&ctl)); err != nil {
		t.Fatal(err)
	}
	before = walFiles(t, crashed)
	_, _, err = recoverCrashed(t, crashed)
	wantCorrupt(t, "version-1 control file", err, crashed, before, name, "links back")

	_, r := readAll(orig, 64<<10, ctl.Redo, 0)
	if !errors.Is(r.Err(), base.ErrCorrupt) || !strings.Contains(r.Err().Error(), name) {
		t.Fatalf("reader without a bound: %v", r.Err())
	}
}

// TestRecoverLostNewestSegments loses the newest segments whole while the
// control file says the log reached into them.
func TestRecoverLostNewestSegments(t *testing.T) {
	for _, lost := range []int64{1, 2} {
		fs := vfs.NewMemFS()
		l, _, _ := openLog(t, fs, smallConfig(), nil)
		spanSegments(t, l, 6)
		raiseReachNow(t, l)
		crashed := fs.Clone()
		l.Close()
		for seg := int64(6) - lost + 1; seg <= 6; seg++ {
			if err := crashed.Remove(testDir + "/wal/" + segmentName(seg)); err != nil {
				t.Fatal(err)
			}
		}
		before := walFiles(t, crashed)
		_, _, err := recoverCrashed(t, crashed)
		wantCorrupt(t, fmt.Sprintf("%d lost", lost), err, crashed, before, testDir+"/wal/"+segmentName(7-lost))
	}
}

// gateFS holds the next Sync of a WAL segment opened with Open (the WAL
// writes) until released, so that a copy can be taken with that write
// unsynced.
type gateFS struct {
	*vfs.MemFS
	armed   atomic.Bool
	hit     chan struct{}
	release chan struct{}
}

type gateFile struct {
	vfs.File
	g *gateFS
}

func (g *gateFS) Open(name string) (vfs.File, error) {
	f, err := g.MemFS.Open(name)
	if err != nil || !strings.HasPrefix(name, testDir+"/wal/") {
		return f, err
	}
	return &gateFile{File: f, g: g}, nil
}

func (f *gateFile) Sync() error {
	if f.g.armed.CompareAndSwap(true, false) {
		f.g.hit <- struct{}{}
		<-f.g.release
	}
	return f.File.Sync()
}

// TestTornLastWrite crashes while the last WAL write is unsynced: torn (a
// prefix of its sectors survives) or lost (zeros). Recovery cuts it off
// cleanly, replays everything acknowledged, zeroes what it cut off, and the
// log goes on from there.
func TestTornLastWrite(t *testing.T) {
	g := &gateFS{MemFS: vfs.NewMemFS(), hit: make(chan struct{}), release: make(chan struct{})}
	l, _, _ := openLog(t, g, smallConfig(), nil)
	acked := writeAcked(t, l, 10, 200)
	var batch []written
	for i := range 3 {
		p := taggedPayload(1, 0, i, 2000)
		s, e := insertPayload(t, l, 2, p)
		batch = append(batch, written{s, e, p})
	}
	g.armed.Store(true)
	flushed := make(chan error)
	go func() { flushed <- l.Flush(batch[2].end) }()
	<-g.hit
	snap := g.Clone() // the batch's one write is unsynced here
	g.release <- struct{}{}
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	l.Close()

	for seed := range int64(12) {
		crashed := snap.Clone()
		tear := 1.0
		if seed == 0 {
			tear = 0 // the write is lost whole: zeros
		}
		crashed.Crash(vfs.CrashOptions{Seed: seed, TearProbability: tear})
		c, res, err := recoverCrashed(t, crashed)
		if err != nil {
			t.Fatalf("seed %d: Recover: %v", seed, err)
		}
		if len(c.recs) < len(acked) || len(c.recs) >= len(acked)+len(batch) {
			t.Fatalf("seed %d: replayed %d records, want the %d acknowledged and part of the batch", seed, len(c.recs), len(acked))
		}
		for i, r := range c.recs {
			want := append(acked, batch...)[i]
			if r.lsn != want.start || !bytes.Equal(r.payload, want.payload) {
				t.Fatalf("seed %d: record %d at %s, want %s", seed, i, r.lsn, want.start)
			}
		}
		if seed == 0 && (res.End.LSN != batch[0].start || res.End.Reason != EndZeros) {
			t.Fatalf("lost write: end %v, want zeros at %s", res.End, batch[0].start)
		}
		// Nothing of the torn write is left past the end.
		seg := walFiles(t, crashed)[segmentName(1)]
		if off := int64(res.End.LSN) % (64 << 10); !base.IsZero(seg[off:]) {
			t.Fatalf("seed %d: bytes past the end %v survive recovery", seed, res.End)
		}
		// The log goes on at the end, and a second crash keeps it all.
		l2, _, _ := openLog(t, crashed, Config{}, nil)
		more := writeAcked(t, l2, 5, 2500)
		again := crashed.Clone()
		l2.Close()
		again.Crash(vfs.CrashOptions{Seed: seed})
		c2, _, err := recoverCrashed(t, again)
		if err != nil {
			t.Fatalf("seed %d: second Recover: %v", seed, err)
		}
		if n := len(c2.recs); n != len(c.recs)+len(more) || c2.recs[n-1].lsn != more[len(more)-1].start {
			t.Fatalf("seed %d: second recovery replayed %d records, want %d", seed, n, len(c.recs)+len(more))
		}
	}
}

// TestRecoveryLowersMustReach: a flush that fills a segment may raise
// MustReach into the middle of a record whose rest is then lost. Recovery
// ends the log at that record and must bring MustReach down to the end,
// before it zeroes the dead record: the new log writes over those bytes,
// and a crash before it has rewritten all of them must not look like lost
// WAL.
func TestRecoveryLowersMustReach(t *testing.T) {
	fs := vfs.NewMemFS()
	l, _, _ := openLog(t, fs, smallConfig(), nil)
	writeAcked(t, l, 5, 100)
	big := bytes.Repeat([]byte{0xAB}, 150_000) // three segments
	s, e := insertPayload(t, l, 1, big)
	if err := l.Flush(e); err != nil {
		t.Fatal(err)
	}
	mid := (s + 100_000) &^ 7
	if err := l.updateControl(func(c *ControlData) { c.MustReach = mid }); err != nil {
		t.Fatal(err)
	}
	crashed := fs.Clone()
	l.Close()
	patchWAL(t, crashed, 64<<10, mid, int(e-mid), 0, true) // the rest never reached the disk

	l2, c, res := openLog(t, crashed, Config{}, nil)
	if len(c.recs) != 5 || res.End.LSN != s {
		t.Fatalf("replayed %d, end %v; want 5 and the big record's start %s", len(c.recs), res.End, s)
	}
	if r := l2.Control().MustReach; r != s {
		t.Fatalf("must-reach %s after recovery, want the end %s", r, s)
	}
	if ctl, err := DecodeControl(mustRead(t, crashed, testDir+"/control")); err != nil || ctl.MustReach != s {
		t.Fatalf("control file after recovery: %+v %v", ctl, err)
	}
	more := writeAcked(t, l2, 3, 100) // far short of mid
	again := crashed.Clone()
	l2.Close()
	c2, _, err := recoverCrashed(t, again)
	if err != nil || len(c2.recs) != 5+len(more) {
		t.Fatalf("after a second crash: %d records, %v", len(c2.recs), err)
	}
}

// TestMustReachFollowsTheLog: MustReach in the control file is raised as
// segments fill, never past what is flushed, and no segment s is written
// before it reaches the start of segment s-1 (rule 8 in doc.go).
func TestMustReachFollowsTheLog(t *testing.T) {
	fs := vfs.NewMemFS()
	l, _, _ := openLog(t, fs, smallConfig(), nil)
	defer l.Close()
	segSize := l.SegmentSize()
	for range 200 {
		writeAcked(t, l, 1, 2000+int(l.InsertLSN())%9000)
		flushed := l.FlushedLSN()
		ctl, err := DecodeControl(mustRead(t, fs, testDir+"/control"))
		if err != nil {
			t.Fatal(err)
		}
		if ctl.MustReach > flushed {
			t.Fatalf("must-reach %s past flushed %s", ctl.MustReach, flushed)
		}
		if last := int64(flushed-1) / segSize; int64(ctl.MustReach) < (last-1)*segSize {
			t.Fatalf("segment %d written with must-reach %s in the control file", last, ctl.MustReach)
		}
	}
	// The WAL writer catches up with the last full segment.
	full := base.LSN(int64(l.FlushedLSN()) / segSize * segSize)
	deadline := time.Now().Add(5 * time.Second)
	for l.Control().MustReach < full && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if r := l.Control().MustReach; r < full {
		t.Fatalf("must-reach %s; the WAL writer did not raise it to %s", r, full)
	}
}

// TestOldControlFileOpens: a directory whose control file is of version 1
// (no MustReach) opens and recovers, and gets a version-2 file.
func TestOldControlFileOpens(t *testing.T) {
	fs := vfs.NewMemFS()
	l, _, _ := openLog(t, fs, smallConfig(), nil)
	recs := spanSegments(t, l, 3)
	crashed := fs.Clone()
	l.Close()
	ctl, err := DecodeControl(mustRead(t, crashed, testDir+"/control"))
	if err != nil {
		t.Fatal(err)
	}
	if err := vfs.WriteFileAtomic(crashed, testDir+"/control", encodeControlV1(&ctl)); err != nil {
		t.Fatal(err)
	}
	c, res, err := recoverCrashed(t, crashed)
	if err != nil || len(c.recs) != len(recs) {
		t.Fatalf("recovered %d of %d records: %v", len(c.recs), len(recs), err)
	}
	data := mustRead(t, crashed, testDir+"/control")
	got, err := DecodeControl(data)
	if err != nil || len(data) != controlSize || got.MustReach < res.End.LSN {
		t.Fatalf("control file after recovery: %d bytes, %+v, %v", len(data), got, err)
	}
}

// TestReaderAllocation: a garbage length at the end of the log does not
// make the reader allocate it.
func TestReaderAllocation(t *testing.T) {
	fs := vfs.NewMemFS()
	l, _, _ := openLog(t, fs, smallConfig(), nil)
	recs := writeAcked(t, l, 5, 100)
	l.Close()
	last := recs[len(recs)-1]
	// The shutdown checkpoint follows last; give it a huge length.
	patchWAL(t, fs, 64<<10, last.end+3, 1, 0x0F, false)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, r := readAll(fs, 64<<10, recs[0].start, 0)
	runtime.ReadMemStats(&after)
	if r.Err() != nil || r.End().LSN != last.end {
		t.Fatalf("end %v, err %v", r.End(), r.Err())
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Fatalf("reader allocated %d bytes for a garbage length", n)
	}
}

// TestLookAheadIgnoresRecycledSegments: stale records in recycled
// segments past the end of the log link far below it and are not taken
// for a log that went on.
func TestLookAheadIgnoresRecycledSegments(t *testing.T) {
	fs := vfs.NewMemFS()
	cfg := smallConfig()
	l, _, _ := openLog(t, fs, cfg, nil)
	spanSegments(t, l, 5)
	if err := l.Checkpoint(); err != nil { // recycles 1..4 to 7..10 or so
		t.Fatal(err)
	}
	recs := writeAcked(t, l, 5, 100)
	crashed := fs.Clone()
	l.Close()
	names := slices.Sorted(maps.Keys(walFiles(t, crashed)))
	if last, _ := parseSegmentName(names[len(names)-1]); last < int64(recs[4].end)/l.SegmentSize()+2 {
		t.Fatalf("only %v: nothing recycled", names)
	}
	for _, mustReach := range []bool{true, false} {
		fs2 := crashed.Clone()
		if !mustReach {
			ctl, _ := DecodeControl(mustRead(t, fs2, testDir+"/control"))
			vfs.WriteFileAtomic(fs2, testDir+"/control", encodeControlV1(&ctl))
		}
		c, res, err := recoverCrashed(t, fs2)
		if err != nil || res.End.LSN != recs[len(recs)-1].end {
			t.Fatalf("must-reach %v: end %v, %d records, %v", mustReach, res.End, len(c.recs), err)
		}
	}
}
