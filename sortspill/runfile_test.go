package sortspill

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/heapkv/heapkv/internal/base"
	"github.com/heapkv/heapkv/internal/vfs"
)

// bytesSource is a run file held in memory.
type bytesSource []byte

func (b bytesSource) readAt(p []byte, off int64) error {
	if off < 0 || off+int64(len(p)) > int64(len(b)) {
		return fmt.Errorf("read of %d bytes at %d past the end of %d", len(p), off, len(b))
	}
	copy(p, b[off:])
	return nil
}

// encodeRun writes recs as a run file in blocks of blockSize and returns its
// bytes.
func encodeRun(t testing.TB, recs [][]byte, blockSize int) []byte {
	t.Helper()
	fs := vfs.NewMemFS()
	op := NewTempSpace(fs, "/tmp", TempOptions{Limit: -1, LogAbove: -1}).NewOp()
	defer op.Close()
	tf, err := op.create()
	if err != nil {
		t.Fatal(err)
	}
	w := newRunWriter(tf, blockSize, nil)
	for _, r := range recs {
		if err := w.add(r); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.finish(0); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, tf.size)
	if err := tf.readAt(data, 0); err != nil {
		t.Fatal(err)
	}
	return data
}

// decodeRun reads a run file of want records back.
func decodeRun(data []byte, want int64, blockSize int) ([][]byte, error) {
	r := newRunReader(bytesSource(data), "test", int64(len(data)), want, blockSize, nil)
	var out [][]byte
	for {
		ok, err := r.next()
		if err != nil {
			return out, err
		}
		if !ok {
			return out, nil
		}
		out = append(out, bytes.Clone(r.rec))
	}
}

func sampleRecords() [][]byte {
	recs := [][]byte{{}, []byte("a"), bytes.Repeat([]byte("xy"), 3000), {}, []byte("last")}
	for i := range 200 {
		recs = append(recs, fmt.Appendf(nil, "record %04d", i))
	}
	return recs
}

func TestRunFileRoundTrip(t *testing.T) {
	recs := sampleRecords()
	data := encodeRun(t, recs, minBlockSize)
	got, err := decodeRun(data, int64(len(recs)), minBlockSize)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(recs) {
		t.Fatalf("got %d records, want %d", len(got), len(recs))
	}
	for i := range recs {
		if !bytes.Equal(got[i], recs[i]) {
			t.Fatalf("record %d differs", i)
		}
	}
}

// Every damage a run file can take is reported as corruption, never as a
// different record set.
func TestRunFileDamageIsCorruption(t *testing.T) {
	recs := sampleRecords()
	data := encodeRun(t, recs, minBlockSize)
	n := int64(len(recs))
	cases := []struct {
		name string
		data []byte
		want int64
	}{
		{"truncated by one byte", data[:len(data)-1], n},
		{"truncated to a header", data[:blockHeaderSize-3], n},
		{"a record too many expected", data, n + 1},
		{"a record too few expected", data, n - 1},
	}
	for i := 0; i < len(data); i += 97 {
		d := bytes.Clone(data)
		d[i] ^= 0x5a
		cases = append(cases, struct {
			name string
			data []byte
			want int64
		}{fmt.Sprintf("byte %d flipped", i), d, n})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := decodeRun(c.data, c.want, minBlockSize)
			if !errors.Is(err, base.ErrCorrupt) {
				t.Fatalf("got %v, want an error matching ErrCorrupt", err)
			}
		})
	}
}

// FuzzRunFile feeds arbitrary bytes to the run-file decoder: it must return
// records or an error, never panic or run away, and what it accepts must
// encode and decode to the same records.
func FuzzRunFile(f *testing.F) {
	f.Add(encodeRun(f, sampleRecords(), minBlockSize), int64(len(sampleRecords())))
	f.Add(encodeRun(f, [][]byte{{}}, minBlockSize), int64(1))
	f.Add([]byte{}, int64(0))
	f.Fuzz(func(t *testing.T, data []byte, want int64) {
		got, err := decodeRun(data, want, minBlockSize)
		if err != nil {
			return
		}
		again, err := decodeRun(encodeRun(t, got, minBlockSize), int64(len(got)), minBlockSize)
		if err != nil {
			t.Fatalf("re-encoded records do not decode: %v", err)
		}
		if len(again) != len(got) {
			t.Fatalf("re-encoded %d records, got %d back", len(got), len(again))
		}
		for i := range got {
			if !bytes.Equal(again[i], got[i]) {
				t.Fatalf("record %d changed in a round trip", i)
			}
		}
	})
}
