package heap

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/vfs"
	"github.com/heapkv/heapkv/txn"
	"github.com/heapkv/heapkv/xlog"
)

// TestValueSizes stores values of 0 B, 1 B, 2 KiB, 100 KiB and 64 MiB of
// random bytes (so compression cannot hide the chunking), and compressible
// ones, reads each back through a snapshot and by TID, and again after a
// clean restart; then checks the relation.
func TestValueSizes(t *testing.T) {
	rng := newRand(testSeed(t))
	fs := vfs.NewMemFS()
	e := openEnv(t, fs, envConfig{poolPages: 256, wal: xlog.Config{SegmentSize: 16 << 20, WALBuffers: 1 << 20}})
	type stored struct {
		name       string
		key, value []byte
		xid        base.XID
		tid        base.TID
		external   bool
		compressed bool
	}
	compressible := func(n int) []byte {
		s := strings.Repeat("heapkv stores versions newest to oldest; ", n/40+1)
		return []byte(s[:n])
	}
	// Random words from a vocabulary of 512: s2 saves a good part but not
	// so much that a large value fits inline.
	var vocab [][]byte
	for range 512 {
		w := randBytes(rng, 3+rng.IntN(8))
		for i := range w {
			w[i] = 'a' + w[i]%26
		}
		vocab = append(vocab, w)
	}
	letters := func(n int) []byte {
		b := make([]byte, 0, n+16)
		for len(b) < n {
			b = append(b, vocab[rng.IntN(len(vocab))]...)
			b = append(b, ' ')
		}
		return b[:n]
	}
	cases := []struct {
		name            string
		value           []byte
		external, compr bool
	}{
		{"0B", []byte{}, false, false},
		{"1B", randBytes(rng, 1), false, false},
		{"2KiB", randBytes(rng, 2048), true, false},
		{"100KiB", randBytes(rng, 100<<10), true, false},
		{"64MiB", randBytes(rng, MaxValueSize), true, false},
		{"3KiB-compressible", compressible(3 << 10), false, true},
		{"1MiB-compressible", letters(1 << 20), true, true},
		{"64MiB-compressible", letters(MaxValueSize), true, true},
		{"2KiB-key-1024", randBytes(rng, 900), false, false},
	}
	var all []stored
	for i, c := range cases {
		key := []byte(fmt.Sprintf("key-%02d-%s", i, c.name))
		if c.name == "2KiB-key-1024" {
			key = bytes.Repeat([]byte{'k'}, MaxKeySize)
		}
		xid := e.clog.newXID()
		tid, err := e.h.Insert(xid, key, c.value, base.InvalidTID)
		if err != nil {
			t.Fatalf("%s: Insert: %v", c.name, err)
		}
		e.clog.set(xid, txn.Committed, true)
		all = append(all, stored{c.name, key, c.value, xid, tid, c.external, c.compr})
	}
	st := e.h.Stats()
	t.Logf("stats after inserts: %+v", st)

	verify := func(h *Heap, when string) {
		t.Helper()
		for _, s := range all {
			f, ok, err := h.Get(s.tid, s.key, snapAll(), nil)
			if err != nil || !ok || f.TID != s.tid {
				t.Fatalf("%s: %s: Get = ok %v tid %v err %v", when, s.name, ok, f.TID, err)
			}
			got := f.Value
			if !bytes.Equal(got, s.value) {
				t.Fatalf("%s: %s: Get returned %d bytes, want %d (equal prefix %d)", when, s.name, len(got), len(s.value), commonPrefix(got, s.value))
			}
			tup, err := h.Fetch(s.tid)
			if err != nil {
				t.Fatalf("%s: %s: Fetch: %v", when, s.name, err)
			}
			if !bytes.Equal(tup.Key, s.key) || !bytes.Equal(tup.Value, s.value) || tup.XMin != s.xid {
				t.Fatalf("%s: %s: Fetch returned key %q xmin %d and %d value bytes", when, s.name, tup.Key[:min(20, len(tup.Key))], tup.XMin, len(tup.Value))
			}
			if tup.External != s.external || tup.Compressed != s.compressed {
				t.Fatalf("%s: %s: stored external=%v compressed=%v, want %v/%v", when, s.name, tup.External, tup.Compressed, s.external, s.compressed)
			}
		}
	}
	verify(e.h, "before restart")
	if err := Check(e.pool, testRel); err != nil {
		t.Fatalf("Check: %v", err)
	}
	e.mustClose(t)

	e = openEnv(t, fs, envConfig{poolPages: 256, clog: e.clog, wal: xlog.Config{SegmentSize: 16 << 20, WALBuffers: 1 << 20}})
	defer e.mustClose(t)
	verify(e.h, "after restart")
	if err := Check(e.pool, testRel); err != nil {
		t.Fatalf("Check after restart: %v", err)
	}
}

func commonPrefix(a, b []byte) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// TestBadInput checks that a value over 64 MiB and bad keys are refused
// with their errors and change nothing: no page, no WAL.
func TestBadInput(t *testing.T) {
	e := openEnv(t, vfs.NewMemFS(), envConfig{})
	defer e.mustClose(t)
	xid := e.clog.newXID()
	if _, err := e.h.Insert(xid, []byte("a"), []byte("x"), base.InvalidTID); err != nil {
		t.Fatal(err)
	}
	nb, _ := e.h.NBlocks()
	lsn := e.wal.InsertLSN()
	before := e.h.Stats()

	big := make([]byte, MaxValueSize+1)
	cases := []struct {
		key, value []byte
		want       error
	}{
		{[]byte("k"), big, ErrValueTooLarge},
		{nil, []byte("v"), ErrEmptyKey},
		{[]byte{}, []byte("v"), ErrEmptyKey},
		{make([]byte, MaxKeySize+1), []byte("v"), ErrKeyTooLarge},
		{make([]byte, MaxKeySize+1), big, ErrKeyTooLarge},
	}
	for i, c := range cases {
		tid, err := e.h.Insert(xid, c.key, c.value, base.InvalidTID)
		if !errors.Is(err, c.want) || tid != base.InvalidTID {
			t.Fatalf("case %d: Insert = %v, %v; want %v", i, tid, err, c.want)
		}
	}
	if nb2, _ := e.h.NBlocks(); nb2 != nb {
		t.Fatalf("relation grew from %d to %d blocks", nb, nb2)
	}
	if l := e.wal.InsertLSN(); l != lsn {
		t.Fatalf("WAL grew from %v to %v", lsn, l)
	}
	if after := e.h.Stats(); after.Inserts != before.Inserts || after.ToastChunks != before.ToastChunks {
		t.Fatalf("stats changed: %+v -> %+v", before, after)
	}
	// The largest key works.
	if _, err := e.h.Insert(xid, make([]byte, MaxKeySize), []byte("v"), base.InvalidTID); err != nil {
		t.Fatalf("key of %d bytes: %v", MaxKeySize, err)
	}
}
