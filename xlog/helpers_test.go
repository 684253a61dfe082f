package xlog

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/testutil"
	"github.com/heapkv/heapkv/internal/vfs"
	"github.com/heapkv/heapkv/pagecache"
)

// baseSeed returns the seed randomized tests start from and logs it.
func baseSeed(t testing.TB) int64 { return testutil.Seed(t) }

const testDir = "/db"

// smallConfig is a log with a 64 KiB ring and 64 KiB segments, so that ring
// wrap and segment crossing happen all the time.
func smallConfig() Config {
	return Config{
		WALBuffers:        64 << 10,
		SegmentSize:       64 << 10,
		CheckpointTimeout: time.Hour,
		MaxWALSize:        1 << 40,
	}
}

const (
	rmgrTest RmgrID = 100 // payload records, collected
	rmgrPage RmgrID = 101 // page records: images, deltas and add operations
)

// collector is a resource manager that remembers the records it replays.
type collector struct {
	mu   sync.Mutex
	recs []collected
}

type collected struct {
	lsn, end base.LSN
	xid      base.XID
	payload  []byte
}

func (c *collector) redo(rec *Record, ctx *RedoContext) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.recs = append(c.recs, collected{lsn: rec.LSN, end: rec.End, xid: rec.XID, payload: bytes.Clone(rec.Payload)})
	return GenericRedo(rec, ctx)
}

// openLog opens and recovers a log on fsys, with a collector for rmgrTest.
func openLog(t testing.TB, fsys vfs.FS, cfg Config, pages Pages) (*Log, *collector, RecoveryResult) {
	t.Helper()
	l, err := Open(fsys, testDir, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	c := &collector{}
	if err := l.RegisterRmgr(rmgrTest, "test", c.redo); err != nil {
		t.Fatal(err)
	}
	if err := l.RegisterRmgr(rmgrPage, "page", testPageRedo); err != nil {
		t.Fatal(err)
	}
	res, err := l.Recover(pages)
	if err != nil {
		l.Close()
		t.Fatalf("Recover: %v", err)
	}
	return l, c, res
}

func insertPayload(t testing.TB, l *Log, xid base.XID, payload []byte) (base.LSN, base.LSN) {
	t.Helper()
	start, end, err := l.Insert(NewRecord(rmgrTest, 0, xid).SetPayload(payload))
	if err != nil {
		t.Fatalf("Insert: %v", err)
	}
	return start, end
}

// pageKey names a page of the fake buffer pool.
type pageKey struct {
	rel base.RelFileNode
	blk base.BlockNum
}

// fakePages is an in-memory Pages: buffers in a map, and a "disk" that
// Checkpoint copies them to (after flushing the WAL to their LSNs, the
// WAL-before-data rule).
type fakePages struct {
	mu          sync.Mutex
	buf         map[pageKey][]byte
	disk        map[pageKey][]byte
	flushWAL    func(base.LSN) error
	checkpoints int
}

func newFakePages() *fakePages {
	return &fakePages{buf: map[pageKey][]byte{}, disk: map[pageKey][]byte{}}
}

// fromDisk returns a pool whose buffers start as p's disk: what a restart
// after a crash would see.
func (p *fakePages) fromDisk() *fakePages {
	p.mu.Lock()
	defer p.mu.Unlock()
	q := newFakePages()
	for k, v := range p.disk {
		q.buf[k] = bytes.Clone(v)
		q.disk[k] = bytes.Clone(v)
	}
	return q
}

func (p *fakePages) LockForRedo(rel base.RelFileNode, blk base.BlockNum, mode pagecache.ReadMode) ([]byte, func(bool), error) {
	p.mu.Lock()
	k := pageKey{rel, blk}
	pg := p.buf[k]
	if pg == nil {
		pg = make([]byte, pagecache.BlockSize)
		p.buf[k] = pg
	}
	if mode == pagecache.ReadZeroAndLock {
		clear(pg)
	}
	return pg, func(bool) { p.mu.Unlock() }, nil
}

func (p *fakePages) Checkpoint(progress func(done, total int)) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	keys := slices.SortedFunc(maps.Keys(p.buf), func(a, b pageKey) int {
		if a.rel != b.rel {
			return int(a.rel) - int(b.rel)
		}
		return int(a.blk) - int(b.blk)
	})
	for i, k := range keys {
		if p.flushWAL != nil {
			if err := p.flushWAL(pagecache.Page(p.buf[k]).LSN()); err != nil {
				return err
			}
		}
		p.disk[k] = bytes.Clone(p.buf[k])
		progress(i+1, len(keys))
	}
	p.checkpoints++
	return nil
}

// snapshot returns a copy of the buffers.
func (p *fakePages) snapshot() map[pageKey][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := make(map[pageKey][]byte, len(p.buf))
	for k, v := range p.buf {
		m[k] = bytes.Clone(v)
	}
	return m
}

func diffPages(want, got map[pageKey][]byte) string {
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			return fmt.Sprintf("page %v missing", k)
		}
		if !bytes.Equal(w, g) {
			i := 0
			for i < len(w) && w[i] == g[i] {
				i++
			}
			return fmt.Sprintf("page %v differs at byte %d: want %x got %x", k, i, w[i:min(i+8, len(w))], g[i:min(i+8, len(g))])
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			return fmt.Sprintf("unexpected page %v", k)
		}
	}
	return ""
}

// tagged payloads: writer, round, seq, then filler derived from them.
func taggedPayload(writer, round, seq, fill int) []byte {
	b := make([]byte, 12+fill)
	binary.LittleEndian.PutUint32(b[0:], uint32(writer))
	binary.LittleEndian.PutUint32(b[4:], uint32(round))
	binary.LittleEndian.PutUint32(b[8:], uint32(seq))
	for i := range fill {
		b[12+i] = byte(writer*31 + seq*7 + i)
	}
	return b
}

func parseTagged(b []byte) (writer, round, seq int, ok bool) {
	if len(b) < 12 {
		return 0, 0, 0, false
	}
	writer = int(binary.LittleEndian.Uint32(b[0:]))
	round = int(binary.LittleEndian.Uint32(b[4:]))
	seq = int(binary.LittleEndian.Uint32(b[8:]))
	return writer, round, seq, bytes.Equal(b, taggedPayload(writer, round, seq, len(b)-12))
}
