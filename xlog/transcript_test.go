package xlog

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/testutil"
	"github.com/heapkv/heapkv/internal/vfs"
)

// TestTornTailTranscript runs testdata/torn_tail: records written, the WAL
// damaged at an offset, and what the Reader returns and where it says the
// log ended.
//
//	new                       a fresh log: 64 KiB segments (smallConfig)
//	write                     one line per record: name payload-length;
//	                          inserts them, flushes, prints start and end
//	                          relative to the first record
//	cut rec=R off=N           zero the stream from N bytes into record R to
//	                          its end (a write cut short)
//	flip rec=R off=N          invert the byte N bytes into record R
//	remove-segment n=N        remove segment file N
//	restore                   undo every cut, flip and removal
//	read [must-reach=R]       read from the first record written; with
//	                          must-reach, the log is known durable up to the
//	                          end of record R
//
// Positions are printed relative to the first record written (+N), so that
// the transcript does not depend on what Open logs first.
func TestTornTailTranscript(t *testing.T) {
	type rec struct {
		name       string
		start, end base.LSN
		len        int
	}
	var (
		l        *Log
		pristine *vfs.MemFS
		fs       *vfs.MemFS
		recs     []rec
	)
	closeLog := func() {
		if l != nil {
			if err := l.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			l = nil
		}
	}
	defer closeLog()
	find := func(c *testutil.Case) rec {
		name := c.Str("rec", "")
		for _, r := range recs {
			if r.name == name {
				return r
			}
		}
		t.Fatalf("%s: no record %q", c.Pos, name)
		return rec{}
	}
	rel := func(lsn base.LSN) string {
		if len(recs) == 0 {
			return lsn.String()
		}
		for _, r := range recs {
			if r.start == lsn {
				return r.name
			}
		}
		return fmt.Sprintf("+%d", int64(lsn)-int64(recs[0].start))
	}
	testutil.RunTranscript(t, "testdata/torn_tail", func(t *testing.T, c *testutil.Case) string {
		var out strings.Builder
		switch c.Cmd {
		case "new":
			closeLog()
			fs = vfs.NewMemFS()
			l, _, _ = openLog(t, fs, smallConfig(), nil)
			recs = nil
		case "write":
			for _, line := range c.InputLines() {
				f := strings.Fields(line)
				n, err := strconv.Atoi(f[len(f)-1])
				if len(f) != 2 || err != nil {
					t.Fatalf("%s: write %q: want name length", c.Pos, line)
				}
				p := make([]byte, n)
				for i := range p {
					p[i] = byte(i*7 + len(recs))
				}
				s, e := insertPayload(t, l, 1, p)
				recs = append(recs, rec{f[0], s, e, HeaderSize + n})
			}
			if err := l.Flush(l.InsertLSN()); err != nil {
				t.Fatal(err)
			}
			// The log stays open (it would write a shutdown checkpoint on
			// Close); the reader reads a copy of the files as they are now,
			// without the segments after the last record's, which the WAL
			// writer may or may not have created ahead yet.
			pristine = fs.Clone()
			lastSeg := segmentName(int64(recs[len(recs)-1].end-1) / l.SegmentSize())
			names, err := pristine.List(testDir + "/wal")
			if err != nil {
				t.Fatal(err)
			}
			for _, name := range names {
				if name > lastSeg {
					if err := pristine.Remove(testDir + "/wal/" + name); err != nil {
						t.Fatal(err)
					}
				}
			}
			fs = pristine.Clone()
			for _, r := range recs {
				fmt.Fprintf(&out, "%s: +%d..+%d (%d bytes, segment %d offset %d)\n", r.name,
					r.start-recs[0].start, r.end-recs[0].start, r.len, int64(r.start)/l.SegmentSize(), int64(r.start)%l.SegmentSize())
			}
		case "cut", "flip":
			r := find(c)
			off := c.Int(t, "off", 0)
			if off < 0 || off >= r.len {
				t.Fatalf("%s: off %d outside record %s (%d bytes)", c.Pos, off, r.name, r.len)
			}
			at := r.start + base.LSN(off)
			if c.Cmd == "cut" {
				patchWAL(t, fs, l.SegmentSize(), at, int(r.end-at), 0, true)
			} else {
				patchWAL(t, fs, l.SegmentSize(), at, 1, 0xFF, false)
			}
		case "remove-segment":
			if err := fs.Remove(testDir + "/wal/" + segmentName(int64(c.Int(t, "n", 0)))); err != nil {
				return "error: " + err.Error()
			}
		case "restore":
			fs = pristine.Clone()
		case "read":
			var must base.LSN
			if c.Has("must-reach") {
				name := c.Str("must-reach", "")
				for _, r := range recs {
					if r.name == name {
						must = r.end
					}
				}
				if must == 0 {
					t.Fatalf("%s: no record %q", c.Pos, name)
				}
			}
			r := NewReader(fs, testDir, l.SegmentSize(), recs[0].start, must)
			var got []string
			for r.Next() {
				got = append(got, rel(r.Record().LSN))
			}
			fmt.Fprintf(&out, "records: %s\n", strings.Join(got, " "))
			if err := r.Err(); err != nil {
				msg := err.Error()
				for _, x := range recs {
					msg = strings.ReplaceAll(msg, " "+x.start.String(), " "+x.name)
				}
				fmt.Fprintf(&out, "error: %s\n", msg)
				break
			}
			end := r.End()
			fmt.Fprintf(&out, "end: at %s after %s: %s, %d bytes dropped\n", rel(end.LSN), rel(end.Prev), end.Reason, end.Dropped)
		default:
			t.Fatalf("%s: unknown command %q", c.Pos, c.Cmd)
		}
		return out.String()
	})
}
