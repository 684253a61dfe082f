package kv

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/heapkv/heapkv/internal/vfs"
)

// TestBadInput: each bad input gets its documented error and the stored
// data is unchanged.
func TestBadInput(t *testing.T) {
	fs := vfs.NewMemFS()
	db := openMem(t, fs, smallOpts())
	ctx := context.Background()
	if err := db.Put([]byte("keep"), []byte("safe")); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("v"), MaxValueSize+1)
	tests := []struct {
		name string
		op   func(tx *Tx) error
		want error
	}{
		{"empty key put", func(tx *Tx) error { return tx.Put(nil, []byte("x")) }, ErrEmptyKey},
		{"empty key get", func(tx *Tx) error { _, err := tx.Get([]byte{}); return err }, ErrEmptyKey},
		{"key of 1 KiB + 1", func(tx *Tx) error { return tx.Put(make([]byte, MaxKeySize+1), nil) }, ErrKeyTooLarge},
		{"value over 64 MiB", func(tx *Tx) error { return tx.Put([]byte("keep"), big) }, ErrValueTooLarge},
		{"write in View", func(tx *Tx) error {
			return db.View(ctx, func(tx *Tx) error { return tx.Put([]byte("keep"), []byte("no")) })
		}, ErrReadOnly},
		{"missing keyspace", func(tx *Tx) error { return tx.Keyspace("nope").Put([]byte("k"), nil) }, ErrNoKeyspace},
		{"serializable", func(tx *Tx) error { _, err := db.Begin(ctx, TxOptions{Isolation: Serializable}); return err }, ErrNotSupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tx, err := db.Begin(ctx, TxOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if err := tt.op(tx); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			if v, err := db.Get([]byte("keep")); err != nil || string(v) != "safe" {
				t.Fatalf("stored data changed: %q, %v", v, err)
			}
		})
	}

	// A key of exactly 1 KiB and a nil value (= empty) are fine.
	if err := db.Put(make([]byte, MaxKeySize), nil); err != nil {
		t.Fatal(err)
	}
	if v, err := db.Get(make([]byte, MaxKeySize)); err != nil || v == nil || len(v) != 0 {
		t.Fatalf("nil value read back as %v (nil: %v), %v", v, v == nil, err)
	}

	// Use after Commit / Rollback.
	tx, _ := db.Begin(ctx, TxOptions{})
	tx.Commit()
	for name, err := range map[string]error{
		"Get":      func() error { _, err := tx.Get([]byte("keep")); return err }(),
		"Put":      tx.Put([]byte("keep"), []byte("x")),
		"Commit":   tx.Commit(),
		"Rollback": tx.Rollback(),
		"Scan":     tx.Scan(nil, nil, nil).Err(),
	} {
		if !errors.Is(err, ErrTxDone) {
			t.Errorf("%s after Commit: %v, want ErrTxDone", name, err)
		}
	}
	// Commit and Rollback of a read-only transaction return nil.
	ro, _ := db.Begin(ctx, TxOptions{ReadOnly: true})
	if _, err := ro.Get([]byte("keep")); err != nil {
		t.Fatal(err)
	}
	if err := ro.Commit(); err != nil {
		t.Fatalf("commit of read-only tx: %v", err)
	}

	// A second Open of the same directory.
	if _, err := open(fs, "/db", smallOpts()); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	open2 := tx // a transaction left open over Close
	_ = open2
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// Use after Close.
	if _, err := db.Get([]byte("keep")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close: %v", err)
	}
	if err := db.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := db.Begin(ctx, TxOptions{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Begin after Close: %v", err)
	}
}

func TestBadDirectory(t *testing.T) {
	setup := func(t *testing.T) *vfs.MemFS {
		fs := vfs.NewMemFS()
		db := openMem(t, fs, smallOpts())
		db.Put([]byte("keep"), []byte("safe"))
		db.Close()
		return fs
	}
	stillThere := func(t *testing.T, fs *vfs.MemFS) {
		t.Helper()
		db := openMem(t, fs, smallOpts())
		defer db.Close()
		if v, err := db.Get([]byte("keep")); err != nil || string(v) != "safe" {
			t.Fatalf("data after the bad open: %q, %v", v, err)
		}
	}
	t.Run("bad conf line", func(t *testing.T) {
		fs := setup(t)
		vfs.WriteFileAtomic(fs, "/db/heapkv.conf", []byte("shared_buffers = 64MB\nwork_mem = lots\n"))
		_, err := open(fs, "/db", nil)
		if !errors.Is(err, ErrBadSetting) || !strings.Contains(err.Error(), "line 2") {
			t.Fatalf("open with bad conf: %v", err)
		}
		fs.Remove("/db/heapkv.conf")
		stillThere(t, fs)
	})
	t.Run("damaged control file", func(t *testing.T) {
		fs := setup(t)
		good, _ := vfs.ReadFile(fs, "/db/control")
		if err := fs.CorruptByte("/db/control", 20, 0xff); err != nil {
			t.Fatal(err)
		}
		_, err := open(fs, "/db", smallOpts())
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("open with damaged control file: %v, want ErrCorrupt", err)
		}
		vfs.WriteFileAtomic(fs, "/db/control", good)
		stillThere(t, fs)
	})
	t.Run("other format version", func(t *testing.T) {
		fs := setup(t)
		vfs.WriteFileAtomic(fs, "/db/format", []byte("heapkv 99\ndata_checksums on\n"))
		if _, err := open(fs, "/db", smallOpts()); !errors.Is(err, ErrIncompatible) {
			t.Fatalf("open of format 99: %v", err)
		}
	})
	t.Run("truncated WAL segment", func(t *testing.T) {
		fs := setup(t)
		// Put something that only the WAL holds, then cut the segment.
		db := openMem(t, fs, smallOpts())
		db.Put([]byte("late"), []byte("x"))
		clone := fs.Clone() // crash: no shutdown checkpoint
		db.Close()
		names, _ := clone.List("/db/wal")
		var seg string
		for _, n := range names {
			if len(n) == 16 {
				seg = n
			}
		}
		f, err := clone.Open("/db/wal/" + seg)
		if err != nil {
			t.Fatal(err)
		}
		f.Truncate(1000)
		f.Sync()
		f.Close()
		db, err = open(clone, "/db", smallOpts())
		if err != nil {
			// A clear error is acceptable; a wrong answer is not.
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("open with truncated WAL: %v", err)
			}
			return
		}
		defer db.Close()
		if v, err := db.Get([]byte("keep")); err != nil || string(v) != "safe" {
			t.Fatalf("checkpointed data after truncated WAL: %q, %v", v, err)
		}
	})
}
