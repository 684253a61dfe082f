package kv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/heapkv/heapkv/internal/vfs"
)

func smallOpts() *Options {
	return &Options{SharedBuffers: 4 << 20, DeadlockTimeout: 20e6, walSegmentSize: 1 << 20}
}

func openMem(t testing.TB, fs vfs.FS, opts *Options) *DB {
	t.Helper()
	db, err := open(fs, "/db", opts)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func TestBasicPutGetScanReopen(t *testing.T) {
	fs := vfs.NewMemFS()
	db := openMem(t, fs, smallOpts())
	ctx := context.Background()
	err := db.Update(ctx, func(tx *Tx) error {
		for i := range 100 {
			if err := tx.Put(fmt.Appendf(nil, "k%03d", i), fmt.Appendf(nil, "v%d", i)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := db.Get([]byte("k042")); err != nil || string(v) != "v42" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	if err := db.Delete([]byte("k042")); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Get([]byte("k042")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of deleted: %v", err)
	}
	if err := db.Put([]byte("k001"), []byte("new")); err != nil {
		t.Fatal(err)
	}
	check := func(db *DB) {
		t.Helper()
		err := db.View(ctx, func(tx *Tx) error {
			it := tx.Scan([]byte("k000"), []byte("k050"), nil)
			n := 0
			for it.Next() {
				n++
				if bytes.Equal(it.Key(), []byte("k001")) && string(it.Value()) != "new" {
					t.Errorf("k001 = %q", it.Value())
				}
			}
			if n != 49 {
				t.Errorf("scan saw %d keys, want 49", n)
			}
			return it.Close()
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	check(db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openMem(t, fs, smallOpts())
	check(db)
	db.Close()
}
