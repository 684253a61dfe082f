package xlog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math/rand/v2"
	"testing"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/vfs"
	"github.com/heapkv/heapkv/pagecache"
)

// randomPage returns an initialised page with some tuples at the top and
// line pointers at the bottom; the hole between them is zero.
func randomPage(rng *rand.Rand) []byte {
	p := pagecache.Page(make([]byte, pagecache.BlockSize))
	p.Init(16)
	lower := pagecache.PageHeaderSize + 4*rng.IntN(200)
	upper := pagecache.BlockSize - 16 - rng.IntN(3000)
	p.SetLower(uint16(lower))
	p.SetUpper(uint16(upper))
	for i := pagecache.PageHeaderSize; i < lower; i++ {
		p[i] = byte(rng.Uint32())
	}
	for i := upper; i < pagecache.BlockSize; i++ {
		p[i] = byte(rng.IntN(4)) // compressible
	}
	return p
}

// mutatePage changes a few byte ranges of page in place, keeping the header
// and the hole as they are.
func mutatePage(rng *rand.Rand, page []byte) {
	p := pagecache.Page(page)
	lower, upper := int(p.Lower()), int(p.Upper())
	for range 1 + rng.IntN(4) {
		var lo, hi int
		if rng.IntN(2) == 0 && lower > pagecache.PageHeaderSize {
			lo, hi = pagecache.PageHeaderSize, lower
		} else {
			lo, hi = upper, pagecache.BlockSize
		}
		off := lo + rng.IntN(hi-lo)
		n := min(1+rng.IntN(64), hi-off)
		for i := range n {
			page[off+i] = byte(rng.Uint32())
		}
	}
}

func TestImageRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(uint64(baseSeed(t)), 2))
	for _, comp := range []Compression{CompressionNone, CompressionS2, CompressionZstd} {
		for i := range 50 {
			page := randomPage(rng)
			pagecache.Page(page).SetLSN(base.LSN(rng.Uint64()))
			if i%5 == 1 {
				// Very compressible: no line pointers, 4 KiB of tuples.
				p := pagecache.Page(page)
				p.SetLower(pagecache.PageHeaderSize)
				p.SetUpper(4096)
				clear(page[pagecache.PageHeaderSize:4096])
				for j := 4096; j < len(page); j++ {
					page[j] = byte(j % 3)
				}
			}
			if i%5 == 0 {
				// Incompressible, no hole: must be stored raw.
				for j := range page {
					page[j] = byte(rng.Uint32())
				}
			}
			data, h := appendImage(nil, page, comp)
			off, hl := pageHole(page)
			if h.holeOff != off || h.holeLen != hl {
				t.Fatalf("hole %d+%d, want %d+%d", h.holeOff, h.holeLen, off, hl)
			}
			if len(data) > pagecache.BlockSize-int(h.holeLen) {
				t.Fatalf("%v: image of %d bytes larger than raw", comp, len(data))
			}
			if i%5 == 0 && h.comp != CompressionNone {
				t.Fatalf("%v: incompressible page stored compressed", comp)
			}
			if i%5 == 1 && comp != CompressionNone && h.comp != comp {
				t.Fatalf("%v: compressible page (%d bytes) stored raw", comp, len(data))
			}
			ref := BlockRef{Kind: BlockImage, Compression: h.comp, HoleOffset: h.holeOff, HoleLength: h.holeLen, Data: data}
			if err := ref.validate(); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, pagecache.BlockSize)
			for j := range got {
				got[j] = 0xAA // the hole must come back zeroed
			}
			if err := ref.Apply(got); err != nil {
				t.Fatalf("%v: %v", comp, err)
			}
			if !bytes.Equal(got, page) {
				t.Fatalf("%v: image round trip differs", comp)
			}
		}
	}
}

func TestDeltaRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(uint64(baseSeed(t)), 3))
	for range 500 {
		before := randomPage(rng)
		after := bytes.Clone(before)
		mutatePage(rng, after)
		pagecache.Page(after).SetLSN(12345) // never part of a delta
		d := AppendDelta(nil, before, after)
		got := bytes.Clone(before)
		if err := ApplyDelta(got, d); err != nil {
			t.Fatal(err)
		}
		pagecache.Page(got).SetLSN(12345)
		if !bytes.Equal(got, after) {
			t.Fatal("delta round trip differs")
		}
		if len(d) > 2+4*64+4*64 && len(d) > pagecache.BlockSize/2 {
			t.Fatalf("delta of %d bytes for a few small changes", len(d))
		}
	}
	// Gaps of up to 4 equal bytes are merged into one run.
	a := make([]byte, 64)
	b := bytes.Clone(a)
	b[10], b[15], b[30] = 1, 1, 1
	d := AppendDelta(nil, a, b)
	if runs := int(d[0]) | int(d[1])<<8; runs != 2 {
		t.Fatalf("%d runs for changes at 10, 15, 30; want 2 (10..15 merged)", runs)
	}
	if d := AppendDelta(nil, a, a); len(d) != 2 {
		t.Fatalf("delta of equal pages is %d bytes", len(d))
	}
}

// primary simulates the layers above: pages changed under the
// full-page-write rule and logged with Insert.
type primary struct {
	l     *Log
	rng   *rand.Rand
	pages map[pageKey][]byte
}

func (p *primary) change(rels, blks int) (base.LSN, error) {
	_, end, err := p.changeAt(rels, blks)
	return end, err
}

func (p *primary) changeAt(rels, blks int) (base.LSN, base.LSN, error) {
	b := NewRecord(rmgrPage, 0, 0)
	var afters [][]byte
	seen := map[pageKey]bool{}
	for range 1 + p.rng.IntN(3) {
		k := pageKey{base.RelFileNode(1 + p.rng.IntN(rels)), base.BlockNum(p.rng.IntN(blks))}
		if seen[k] {
			continue
		}
		seen[k] = true
		before := p.pages[k]
		if before == nil {
			before = make([]byte, pagecache.BlockSize)
		}
		var after []byte
		if !pagecache.Page(before).IsNew() && p.rng.IntN(3) == 0 {
			// A non-idempotent operation: add to a byte of the tuple area.
			// Only the LSN rule keeps a second replay from adding again.
			after = bytes.Clone(before)
			op := addOp(p.rng, after)
			b.PageOp(k.rel, k.blk, after, op)
		} else if pagecache.Page(before).IsNew() || p.rng.IntN(20) == 0 {
			after = randomPage(p.rng)
			copy(after, before[:8]) // old LSN stays until the record is in
			b.Image(k.rel, k.blk, after)
		} else {
			after = bytes.Clone(before)
			mutatePage(p.rng, after)
			b.Page(k.rel, k.blk, before, after)
		}
		p.pages[k] = after
		afters = append(afters, after)
	}
	start, end, err := p.l.Insert(b)
	for _, a := range afters {
		pagecache.Page(a).SetLSN(end)
	}
	return start, end, err
}

// addOp adds a random value to a random byte of page's tuple area and
// returns the operation: offset u16, addend u8.
func addOp(rng *rand.Rand, page []byte) []byte {
	off := int(pagecache.Page(page).Upper()) + rng.IntN(pagecache.BlockSize-int(pagecache.Page(page).Upper()))
	v := byte(1 + rng.IntN(255))
	page[off] += v
	return []byte{byte(off), byte(off >> 8), v}
}

// redoAdd is the redo of an addOp.
func redoAdd(page []byte, ref *BlockRef) error {
	if len(ref.Data) != 3 {
		return base.CorruptionErrorf("add op of %d bytes", len(ref.Data))
	}
	off := int(ref.Data[0]) | int(ref.Data[1])<<8
	if off >= len(page) {
		return base.CorruptionErrorf("add op at %d", off)
	}
	page[off] += ref.Data[2]
	return nil
}

// testPageRedo replays InfoPage-style records whose block references may
// also be add operations.
func testPageRedo(rec *Record, ctx *RedoContext) error {
	for i := range rec.Blocks {
		if _, err := ctx.RedoBlock(rec, i, func(page []byte, ref *BlockRef) error {
			if ref.Kind == BlockData {
				return redoAdd(page, ref)
			}
			return ref.Apply(page)
		}); err != nil {
			return err
		}
	}
	return nil
}

// readRecord reads the record at lsn and returns a deep copy.
func readRecord(t *testing.T, l *Log, lsn base.LSN) *Record {
	t.Helper()
	r := NewReader(l.fs, testDir, l.SegmentSize(), lsn, lsn+1)
	if !r.Next() {
		t.Fatalf("no record at %s: %v", lsn, r.Err())
	}
	rec := *r.Record()
	rec.Blocks = append([]BlockRef(nil), rec.Blocks...)
	for i := range rec.Blocks {
		rec.Blocks[i].Data = bytes.Clone(rec.Blocks[i].Data)
	}
	rec.Payload = bytes.Clone(rec.Payload)
	return &rec
}

func (p *primary) snapshot() map[pageKey][]byte {
	m := map[pageKey][]byte{}
	for k, v := range p.pages {
		m[k] = bytes.Clone(v)
	}
	return m
}

// TestRedoIdempotent replays every prefix of a stream of images and deltas
// to random pages once and twice: the pages come out the same, and the
// whole stream reproduces the primary's pages.
func TestRedoIdempotent(t *testing.T) {
	seed := baseSeed(t)
	for _, comp := range []Compression{CompressionNone, CompressionZstd} {
		rng := rand.New(rand.NewPCG(uint64(seed), 4))
		fs := vfs.NewMemFS()
		cfg := smallConfig()
		cfg.WALCompression = comp
		l, _, _ := openLog(t, fs, cfg, nil)
		p := &primary{l: l, rng: rng, pages: map[pageKey][]byte{}}
		var recs []*Record
		ops := 0
		for i := range 300 {
			if i%70 == 69 {
				if err := l.Checkpoint(); err != nil {
					t.Fatal(err)
				}
			}
			start, end, err := p.changeAt(2, 8)
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Flush(end); err != nil {
				t.Fatal(err)
			}
			recs = append(recs, readRecord(t, l, start))
			for _, b := range recs[len(recs)-1].Blocks {
				if b.Kind == BlockData {
					ops++
				}
			}
		}
		if ops == 0 {
			t.Fatal("no operation records generated")
		}
		if st := l.Stats(); st.FPI == 0 || st.FPI == st.Records {
			t.Fatalf("stats %+v: want a mix of images and deltas", st)
		}
		l.Close()
		replay := func(pages *fakePages, recs []*Record) {
			ctx := &RedoContext{Pages: pages}
			for _, rec := range recs {
				if err := testPageRedo(rec, ctx); err != nil {
					t.Fatalf("redo %s: %v", rec.LSN, err)
				}
			}
		}
		for n := 0; n <= len(recs); n += 1 + rng.IntN(7) {
			once, twice := newFakePages(), newFakePages()
			replay(once, recs[:n])
			replay(twice, recs[:n])
			replay(twice, recs[:n])
			if d := diffPages(once.snapshot(), twice.snapshot()); d != "" {
				t.Fatalf("%v: prefix of %d records replayed twice: %s", comp, n, d)
			}
			// Interleaved: a longer replay followed by a shorter one
			// changes nothing either (later LSNs win).
			replay(twice, recs[:n/2])
			if d := diffPages(once.snapshot(), twice.snapshot()); d != "" && n/2 < n {
				// Images restore unconditionally (zero mode), so replaying
				// an older prefix on top may go back in time; the full
				// suffix after it must bring it forward again.
				replay(twice, recs[n/2:n])
				if d := diffPages(once.snapshot(), twice.snapshot()); d != "" {
					t.Fatalf("%v: replaying %d..%d again: %s", comp, n/2, n, d)
				}
			}
		}
		all := newFakePages()
		replay(all, recs)
		// Each record applied twice in a row is the same as once.
		doubled := newFakePages()
		for _, rec := range recs {
			replay(doubled, []*Record{rec, rec})
		}
		if d := diffPages(all.snapshot(), doubled.snapshot()); d != "" {
			t.Fatalf("%v: every record applied twice: %s", comp, d)
		}
		// Pages already newer than a suffix (as a checkpoint may write
		// them) come out of a replay of the suffix unchanged.
		for range 10 {
			from := rng.IntN(len(recs))
			again := newFakePages()
			replay(again, recs)
			replay(again, recs[from:])
			if d := diffPages(all.snapshot(), again.snapshot()); d != "" {
				t.Fatalf("%v: records %d.. replayed over newer pages: %s", comp, from, d)
			}
		}
		if d := diffPages(p.snapshot(), all.snapshot()); d != "" {
			t.Fatalf("%v: replayed pages differ from the primary's: %s", comp, d)
		}
	}
}

// TestFullPageWriteRule: the first change of a page after a checkpoint's
// redo point carries an image, later ones a delta; with FullPageWrites off,
// never an image.
func TestFullPageWriteRule(t *testing.T) {
	for _, fpw := range []base.Toggle{base.On, base.Off} {
		cfg := smallConfig()
		cfg.FullPageWrites = fpw
		l, _, _ := openLog(t, vfs.NewMemFS(), cfg, nil)
		page := randomPage(rand.New(rand.NewPCG(1, 1)))
		pagecache.Page(page).SetLSN(0)
		kinds := func() BlockKind {
			after := bytes.Clone(page)
			after[100]++
			start, end, err := l.Insert(NewRecord(RmgrXLOG, InfoPage, 0).Page(1, 2, page, after))
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Flush(end); err != nil {
				t.Fatal(err)
			}
			pagecache.Page(after).SetLSN(end)
			page = after
			r := NewReader(l.fs, testDir, l.SegmentSize(), start, 0)
			if !r.Next() {
				t.Fatal(r.Err())
			}
			return r.Record().Blocks[0].Kind
		}
		want := func(k BlockKind) BlockKind {
			if fpw == base.Off {
				return BlockDelta
			}
			return k
		}
		if k := kinds(); k != want(BlockImage) {
			t.Errorf("fpw %v: first change logged as %v", fpw, k)
		}
		if k := kinds(); k != BlockDelta {
			t.Errorf("fpw %v: second change logged as %v", fpw, k)
		}
		if err := l.Checkpoint(); err != nil {
			t.Fatal(err)
		}
		if k := kinds(); k != want(BlockImage) {
			t.Errorf("fpw %v: first change after checkpoint logged as %v", fpw, k)
		}
		if k := kinds(); k != BlockDelta {
			t.Errorf("fpw %v: second change after checkpoint logged as %v", fpw, k)
		}
		l.Close()
	}
}

// TestFullPageWriteRace: a record assembled before a checkpoint moved the
// redo pointer, but reserved after, is refused and assembled again with an
// image (PostgreSQL's RedoRecPtr re-check in XLogInsertRecord).
func TestFullPageWriteRace(t *testing.T) {
	l, _, _ := openLog(t, vfs.NewMemFS(), smallConfig(), nil)
	defer l.Close()
	page := randomPage(rand.New(rand.NewPCG(1, 2)))
	_, end := insertPayload(t, l, 1, nil)
	pagecache.Page(page).SetLSN(end) // logged after the redo point
	after := bytes.Clone(page)
	after[200]++
	b := NewRecord(RmgrXLOG, InfoPage, 0).Page(1, 1, page, after)
	var a assembled
	if err := b.assemble(l.RedoLSN(), true, CompressionNone, &a); err != nil {
		t.Fatal(err)
	}
	if a.fpis != 0 || a.fpwLSN != end {
		t.Fatalf("assembled %d images, fpwLSN %s", a.fpis, a.fpwLSN)
	}
	if err := l.Checkpoint(); err != nil { // redo moves past the page's LSN
		t.Fatal(err)
	}
	if _, _, ok, err := l.insertAssembled(&a, true); ok || err != nil {
		t.Fatalf("stale assembly accepted (ok %v, err %v)", ok, err)
	}
	before := l.Stats().FPI
	if _, _, err := l.Insert(b); err != nil {
		t.Fatal(err)
	}
	if l.Stats().FPI != before+1 {
		t.Fatal("Insert after the checkpoint did not log an image")
	}
}

// TestRecoveryFromCheckpoint changes pages, checkpoints (the fake pool
// writes its buffers), changes more, crashes, and recovers from the
// checkpoint's redo point: the pages come back as the primary had them,
// and records before the redo point are not replayed.
func TestRecoveryFromCheckpoint(t *testing.T) {
	seed := baseSeed(t)
	for round := range 20 {
		rng := rand.New(rand.NewPCG(uint64(seed), uint64(round)))
		fs := vfs.NewMemFS()
		pages := newFakePages()
		l, _, _ := openLog(t, fs, smallConfig(), pages)
		pages.flushWAL = l.Flush
		p := &primary{l: l, rng: rng, pages: map[pageKey][]byte{}}
		sync := func() {
			// The primary's pages go into the pool's buffers.
			pages.mu.Lock()
			for k, v := range p.pages {
				pages.buf[k] = bytes.Clone(v)
			}
			pages.mu.Unlock()
		}
		var end base.LSN
		var err error
		for range 50 + rng.IntN(100) {
			if end, err = p.change(3, 20); err != nil {
				t.Fatal(err)
			}
		}
		sync()
		redo := l.InsertLSN()
		if err := l.Checkpoint(); err != nil {
			t.Fatal(err)
		}
		if got := l.Control().Redo; got != redo {
			t.Fatalf("control redo %s, want %s", got, redo)
		}
		for range rng.IntN(100) {
			if _, err = p.change(3, 20); err != nil {
				t.Fatal(err)
			}
		}
		end = l.InsertLSN()
		if err := l.Flush(end); err != nil {
			t.Fatal(err)
		}
		crashed := fs.Clone()
		crashed.Crash(vfs.CrashOptions{Seed: seed})
		l.Close()

		pages2 := pages.fromDisk()
		l2, _, res := openLog(t, crashed, Config{}, pages2)
		if !res.Crashed || res.Control.Redo != redo || res.End.LSN != end {
			t.Fatalf("round %d: result %+v, want crash, redo %s, end %s", round, res, redo, end)
		}
		if d := diffPages(p.snapshot(), pages2.snapshot()); d != "" {
			t.Fatalf("round %d: recovered pages differ: %s", round, d)
		}
		// The log continues at the recovered end.
		if s, _ := insertPayload(t, l2, 1, []byte("after")); s != end {
			t.Fatalf("first record after recovery at %s, want %s", s, end)
		}
		l2.Close()
	}
}

// TestCheckpointRecycles: segments wholly below the redo point are renamed
// to future numbers, and recovery starts from the new redo point.
func TestCheckpointRecycles(t *testing.T) {
	fs := vfs.NewMemFS()
	l, _, _ := openLog(t, fs, smallConfig(), nil)
	for i := range 200 {
		insertPayload(t, l, 1, bytes.Repeat([]byte{byte(i)}, 2000))
	}
	before, _ := listSegments(fs, testDir+"/wal")
	insertSeg := int64(l.InsertLSN()) / l.SegmentSize()
	var hookRedo base.LSN
	l.RegisterCheckpointHook("clog", func(redo base.LSN, cp *CheckpointData) error {
		hookRedo = redo
		cp.NextXID = 777
		cp.NextRelFileNode = 42
		cp.Sections["clog"] = []byte("clog state")
		return nil
	})
	redo := l.InsertLSN()
	if err := l.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	if hookRedo != redo {
		t.Fatalf("hook saw redo %s, want %s", hookRedo, redo)
	}
	after, _ := listSegments(fs, testDir+"/wal")
	if after[0] != insertSeg {
		t.Fatalf("segments before %v, after %v: want everything below %d recycled", before, after, insertSeg)
	}
	if len(after) < len(before) || after[len(after)-1] <= before[len(before)-1] {
		t.Fatalf("segments before %v, after %v: want old ones renamed ahead", before, after)
	}
	// More records go through the recycled (stale) segments; recovery
	// after a crash starts at the redo point and stops at the right end.
	var end base.LSN
	for i := range 100 {
		_, end = insertPayload(t, l, 1, bytes.Repeat([]byte{byte(i)}, 3000))
	}
	l.Flush(end)
	crashed := fs.Clone()
	crashed.Crash(vfs.CrashOptions{Seed: 1})
	l.Close()
	l2, c, res := openLog(t, crashed, Config{}, nil)
	defer l2.Close()
	if res.End.LSN != end || len(c.recs) != 100 || c.recs[0].lsn < redo {
		t.Fatalf("recovered %d records to %v; want 100 to %s", len(c.recs), res.End, end)
	}
	ctl := l2.Control()
	if ctl.NextXID != 777 || ctl.NextRelFileNode != 42 || ctl.Redo != redo {
		t.Fatalf("control %+v", ctl)
	}
	if string(res.Checkpoint.Sections["clog"]) != "clog state" || res.Checkpoint.NextXID != 777 {
		t.Fatalf("checkpoint data %+v", res.Checkpoint)
	}
}

func TestControlRoundTrip(t *testing.T) {
	c := ControlData{SystemID: 0xdeadbeef, CheckPoint: 0x2000100, Redo: 0x2000000, NextXID: 99,
		NextRelFileNode: 7, State: StateInProduction, SegmentSize: 1 << 20, CheckpointTime: 1234567,
		MustReach: 0x2000180}
	b := c.Encode()
	got, err := DecodeControl(b)
	if err != nil || got != c {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	// Version 1, written by the builds before MustReach, still reads.
	old := c
	old.MustReach = 0
	if got, err := DecodeControl(encodeControlV1(&c)); err != nil || got != old {
		t.Fatalf("version 1: %+v, %v", got, err)
	}
	// MustReach 0 (unknown, as in version 1) is written and read back.
	if got, err := DecodeControl(old.Encode()); err != nil || got != old {
		t.Fatalf("version 2 without must-reach: %+v, %v", got, err)
	}
	// A sound file of an unknown version is a configuration error.
	v3 := bytes.Clone(b)
	binary.LittleEndian.PutUint32(v3[4:], 3)
	binary.LittleEndian.PutUint32(v3[76:], crc32.Checksum(v3[:76], castagnoli))
	if _, err := DecodeControl(v3); !errors.Is(err, ErrBadConfig) || errors.Is(err, base.ErrCorrupt) {
		t.Fatalf("version 3: %v", err)
	}
	// MustReach at or below the checkpoint record's start cannot be.
	bad := c
	bad.MustReach = c.CheckPoint
	if _, err := DecodeControl(bad.Encode()); !errors.Is(err, base.ErrCorrupt) {
		t.Fatalf("must-reach at the checkpoint: %v", err)
	}
	for i := range b {
		b[i] ^= 0x01
		if _, err := DecodeControl(b); !errors.Is(err, base.ErrCorrupt) {
			t.Fatalf("bit flip at byte %d not detected: %v", i, err)
		}
		b[i] ^= 0x01
	}
	for n := range len(b) {
		if _, err := DecodeControl(b[:n]); !errors.Is(err, base.ErrCorrupt) {
			t.Fatalf("truncation to %d not detected", n)
		}
	}
	// A corrupt control file stops Open.
	fs := vfs.NewMemFS()
	l, _, _ := openLog(t, fs, smallConfig(), nil)
	l.Close()
	if err := fs.CorruptByte(testDir+"/control", 30, 0x10); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(fs, testDir, Config{}); !errors.Is(err, base.ErrCorrupt) {
		t.Fatalf("Open with a corrupt control file: %v", err)
	}
	// A different segment size is refused.
	fs.CorruptByte(testDir+"/control", 30, 0x10)
	if _, err := Open(fs, testDir, Config{SegmentSize: 1 << 20}); !errors.Is(err, ErrBadConfig) {
		t.Fatalf("Open with another segment size: %v", err)
	}
}

func TestControlStates(t *testing.T) {
	fs := vfs.NewMemFS()
	l, _, res := openLog(t, fs, smallConfig(), nil)
	if res.Crashed {
		t.Fatal("fresh log reported as crashed")
	}
	if s := l.Control().State; s != StateInProduction {
		t.Fatalf("state after recovery %v", s)
	}
	insertPayload(t, l, 1, []byte("x"))
	l.Close()
	ctl, err := DecodeControl(mustRead(t, fs, testDir+"/control"))
	if err != nil || ctl.State != StateShutdown {
		t.Fatalf("after Close: %+v %v", ctl, err)
	}
	if _, _, err := l.Insert(NewRecord(rmgrTest, 0, 0)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Insert after Close: %v", err)
	}
	if err := l.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	l2, err := Open(fs, testDir, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := l2.Insert(NewRecord(rmgrTest, 0, 0)); !errors.Is(err, ErrNotRecovered) {
		t.Fatalf("Insert before Recover: %v", err)
	}
	if _, err := l2.Recover(nil); err != nil {
		t.Fatal(err)
	}
	if _, err := l2.Recover(nil); !errors.Is(err, ErrAlreadyRecovered) {
		t.Fatalf("second Recover: %v", err)
	}
	if err := l2.Flush(l2.InsertLSN() + 8); !errors.Is(err, ErrFlushBeyondEnd) {
		t.Fatalf("Flush beyond the end: %v", err)
	}
	l2.Close()
}

func mustRead(t *testing.T, fs vfs.FS, name string) []byte {
	t.Helper()
	b, err := vfs.ReadFile(fs, name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestUnknownRmgr(t *testing.T) {
	fs := vfs.NewMemFS()
	l, _, _ := openLog(t, fs, smallConfig(), nil)
	_, end := insertPayload(t, l, 1, []byte("x"))
	l.Flush(end)
	crashed := fs.Clone()
	l.Close()
	l2, err := Open(crashed, testDir, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	if _, err := l2.Recover(nil); !errors.Is(err, ErrUnknownRmgr) {
		t.Fatalf("Recover with an unregistered rmgr: %v", err)
	}
	if err := l2.RegisterRmgr(RmgrXLOG, "again", nil); !errors.Is(err, ErrRmgrRegistered) {
		t.Fatalf("registering rmgr 0: %v", err)
	}
}
